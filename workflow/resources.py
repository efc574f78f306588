"""Where the shipped files (templates, migrations, policies, examples) live.

Installed from a wheel they sit inside the package; in a source checkout they sit at the top level.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def path(name: str) -> Path:
    inside = _PACKAGE / name
    return inside if inside.exists() else _PACKAGE.parent / name
