"""A page as a PDF, made by WeasyPrint; Flask-WeasyPrint hands it the page's stylesheets from the
app itself. WeasyPrint needs the Pango system library: where it cannot load, `missing` says why
and the console offers the printable page alone."""

from __future__ import annotations

import contextlib
import functools
import importlib
import io

from flask import Response, request


@functools.cache
def missing() -> str | None:
    """Why WeasyPrint cannot make a PDF in this process, in one line; None when it can. Tried
    once: importing it loads Pango, and a library installed later needs a restart anyway."""
    try:
        # Where a library is missing, WeasyPrint prints a paragraph of installation advice to
        # stdout before it raises; the console logs the reason in one line instead.
        with contextlib.redirect_stdout(io.StringIO()):
            importlib.import_module("weasyprint")
    except (ImportError, OSError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def response(html: str) -> Response:
    """`html` (a page of this app, rendered) as a PDF. Its stylesheets are fetched from the app,
    and nothing from anywhere else."""
    from flask_weasyprint import make_url_fetcher, render_pdf
    from weasyprint import HTML

    document = HTML(string=html, base_url=request.url,
                    url_fetcher=make_url_fetcher(next_fetcher=False))
    answer = render_pdf(document)
    answer.headers["Cache-Control"] = "no-store"  # everyone's names: kept in no cache
    return answer
