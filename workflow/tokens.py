"""Personal link tokens: 256 random bits in the URL, only their SHA-256 in the database."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

# 32 random bytes in URL-safe base64, unpadded: 43 characters of [A-Za-z0-9_-].
_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def new_tokens(count: int) -> list[tuple[str, str]]:
    """`count` fresh (token, sha256-hex) pairs; each token goes in an email and is never stored.
    Their random bits are read from the system in one call (a batch of claims makes fifty)."""
    bits = secrets.token_bytes(32 * count)
    made = [base64.urlsafe_b64encode(bits[i:i + 32]).rstrip(b"=").decode("ascii")
            for i in range(0, 32 * count, 32)]
    return [(token, digest(token)) for token in made]


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def well_formed(token: str) -> bool:
    return bool(_SHAPE.fullmatch(token))
