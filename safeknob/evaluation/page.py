"""Markdown once, HTML from it: the report's :class:`Document` writes Markdown (tables through
pandas' ``DataFrame.to_markdown``); :func:`html_page` renders it with the ``markdown`` package
and inlines the figures, so the HTML file stands alone."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence

import markdown
import pandas as pd

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.5; }
h1, h2, h3 { line-height: 1.2; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; border-radius: 4px; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .92em; }
figure { margin: 1em 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
"""


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown (pipe) table of already formatted cells (numbers are not reparsed)."""
    df = pd.DataFrame([list(r) for r in rows], columns=list(header), dtype=object)
    return df.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)


class Document:
    """Markdown blocks under a title, joined by blank lines. Inline markup in text:
    ``**bold**`` and ```code```."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.lines = [f"# {title}", ""]

    def heading(self, text: str, level: int = 2) -> None:
        self.lines += ["#" * level + " " + text, ""]

    def para(self, text: str) -> None:
        self.lines += [text, ""]

    def bullets(self, items: Sequence[str]) -> None:
        self.lines += [f"- {x}" for x in items] + [""]

    def code(self, text: str, lang: str = "") -> None:
        fence = "````" if "```" in text else "```"
        self.lines += [fence + lang, text.rstrip("\n"), fence, ""]

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.lines += [md_table(header, rows), ""]

    def image(self, name: str, alt: str) -> None:
        self.lines += [f"![{alt}]({name})", ""]

    def markdown(self) -> str:
        return "\n".join(self.lines).rstrip("\n") + "\n"

    def html(self, images: dict[str, bytes]) -> str:
        """The page as self-contained HTML (see :func:`html_page`)."""
        return html_page(self.markdown(), self.title, images)


def html_page(md: str, title: str, images: dict[str, bytes]) -> str:
    """A self-contained HTML page of the Markdown ``md``; every image whose name is in
    ``images`` (file name -> PNG bytes) is inlined as a data URI."""
    body = markdown.markdown(md, extensions=["tables", "fenced_code"])

    def inline(m: re.Match[str]) -> str:
        data = images.get(html.unescape(m.group(1)))
        if data is None:
            return m.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}"'

    body = re.sub(r'src="([^"]+)"', inline, body)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + body
        + "\n</body>\n</html>\n"
    )
