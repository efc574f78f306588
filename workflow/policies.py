"""Policy texts: their SHA-256 (each distinct text is a version), and their Markdown as HTML."""

from __future__ import annotations

import hashlib
from functools import cache

from markupsafe import Markup
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from .models import PolicyVersion, Setting


@cache
def _markdown():
    """The Markdown parser, made when a page first needs it (commands never do). Raw HTML in a
    policy file is shown as text, never run: the page's CSP would block it anyway."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table")


# Each policy text as HTML, by its SHA-256. A text never changes under its hash, so each is read
# from the database and rendered once per process: every GET of the confirmation page shows one of
# a few texts, and fetching and parsing the whole policy each time cost more than the rest of the
# page together. One entry per distinct text ever served, so it stays small.
_html: dict[tuple[str, str], Markup] = {}


def html(conn: Connection, version_id: int, text_sha256: str, title: str = "") -> Markup:
    """The text of policy version `version_id` (whose SHA-256 is `text_sha256`) as HTML, for a
    page whose <h1> is `title`."""
    found = _html.get((text_sha256, title))
    if found is None:
        text = conn.scalars(select(PolicyVersion.content).filter_by(id=version_id)).one()
        found = _html[sha256(text), title] = _render(text, title)
    return found


def _render(text: str, title: str = "") -> Markup:
    """Markdown to HTML, headings one level down: the page's own <h1> is the policy's title, and a
    page has one <h1> (screen readers list the headings as the page's outline). An opening heading
    that only repeats `title` is left out: the page would begin with the title twice."""
    markdown = _markdown()
    tokens = markdown.parse(text)
    if (len(tokens) >= 3 and tokens[0].type == "heading_open"
            and _folded(tokens[1].content) == _folded(title)):
        tokens = tokens[3:]
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 1, 6)}"
    return Markup(markdown.renderer.render(tokens, markdown.options, {}))


# The files a policy's text may come from, by how their name ends.
TEXT_FILES = (".md", ".markdown", ".txt")
WORD_FILES = (".docx",)


class UnreadableText(ValueError):
    """A file that is not a policy's text; the message says why, for the person who gave it."""


def text_of_file(name: str, raw: bytes) -> str:
    """A policy's Markdown from a file: a Markdown or text file as it is (UTF-8), or a Word file
    converted by mammoth, keeping its headings, lists, emphasis and links."""
    lower = name.lower()
    if lower.endswith(WORD_FILES):
        import io

        import mammoth  # only when a Word file comes: no command needs it otherwise

        try:
            text = mammoth.convert_to_markdown(io.BytesIO(raw)).value
        except Exception as exc:  # noqa: BLE001 — a damaged or mislabelled file: say so, once
            raise UnreadableText(f"{name} could not be read as a Word document "
                                 f"({type(exc).__name__}). Save it again as .docx and retry.")
    elif lower.endswith(TEXT_FILES):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise UnreadableText(f"{name} is not UTF-8 text. Save it as UTF-8 (or paste its "
                                 "text) and try again.") from None
    else:
        raise UnreadableText(f"{name}: give a Word (.docx), Markdown (.md) or text (.txt) file.")
    text = text.replace("\r\n", "\n").replace("\x00", "").strip() + "\n"
    if not text.strip():
        raise UnreadableText(f"{name} has no text in it.")
    return text


_changes: dict[tuple[str, str], list[tuple[str, str]]] = {}


def changes(older: str, newer: str) -> list[tuple[str, str]]:
    """The passages (paragraphs of the Markdown) a new text removed and added, in order, as
    ("removed" | "added", passage): what the page shows a person asked again. difflib's, by
    paragraph; each pair of texts is worked out once per process."""
    key = (sha256(older), sha256(newer))
    if key not in _changes:
        import difflib

        def paragraphs(text: str) -> list[str]:
            return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]

        a, b = paragraphs(older), paragraphs(newer)
        found = []
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b,
                                                          autojunk=False).get_opcodes():
            if op != "equal":
                found += [("removed", p) for p in a[i1:i2]] + [("added", p) for p in b[j1:j2]]
        _changes[key] = found
    return _changes[key]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def setting_id(session: Session) -> int | None:
    """The setting this installation serves (one, for now)."""
    return session.scalar(select(Setting.id).order_by(Setting.id).limit(1))


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()
