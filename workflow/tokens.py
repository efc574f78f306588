"""Personal link tokens: 256 random bits in the URL, only their SHA-256 in the database."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

# token_urlsafe(32) gives 43 characters of [A-Za-z0-9_-].
_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def new_token() -> tuple[str, str]:
    """A fresh (token, sha256-hex) pair; the token goes in the email and is never stored."""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


def new_tokens(count: int) -> list[tuple[str, str]]:
    """`count` new_token() pairs, their random bits read from the system in one call rather
    than one each (a batch of claims makes fifty)."""
    bits = secrets.token_bytes(32 * count)
    made = [base64.urlsafe_b64encode(bits[i:i + 32]).rstrip(b"=").decode("ascii")
            for i in range(0, 32 * count, 32)]
    return [(token, digest(token)) for token in made]


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def well_formed(token: str) -> bool:
    return bool(_SHAPE.fullmatch(token))
