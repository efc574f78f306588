"""Personal link tokens: 256 random bits in the URL, only their SHA-256 in the database."""

from __future__ import annotations

import hashlib
import re
import secrets

# secrets.token_urlsafe(32): 32 random bytes in URL-safe base64, unpadded, 43 characters.
_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def new_token() -> tuple[str, str]:
    """A fresh (token, sha256-hex) pair: the token goes in an email and is never stored."""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def well_formed(token: str) -> bool:
    return bool(_SHAPE.fullmatch(token))
