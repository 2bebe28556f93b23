"""HTML building blocks of the report: one self-contained page (inline CSS, images as base64 PNG ``data:`` URIs,
no script, no external address), accessible (a language, a heading per section, alt text on every image, tables
with captions and header scopes) and printable (``@media print``).

Every text that comes from outside (paths, class names, configuration values, messages) goes through
:func:`esc`; only :class:`Raw` strings, built here from escaped parts, are inserted as they are.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CSS", "Cell", "Raw", "code", "esc", "figure", "img", "missing", "page", "section", "table", "write_page"]


class Raw(str):
    """HTML that is inserted as it is (built by these helpers from escaped parts)."""


def esc(value: object) -> Raw:
    """``value`` as text safe inside HTML elements and quoted attributes (``<``, ``&``, quotes escaped)."""
    return value if isinstance(value, Raw) else Raw(html.escape(str(value), quote=True))


@dataclass
class Cell:
    """A table cell: ``content`` (text, escaped, or :class:`Raw`), an optional CSS ``cls``, inline ``style``, and
    ``header`` for a row header (``<th scope="row">``)."""

    content: object
    cls: str = ""
    style: str = ""
    header: bool = False


def _attrs(cls: str = "", style: str = "") -> str:
    return (f' class="{esc(cls)}"' if cls else "") + (f' style="{esc(style)}"' if style else "")


def img(png: bytes, alt: str, *, cls: str = "") -> Raw:
    """An ``<img>`` holding ``png`` as a ``data:`` URI, with alt text (required: the page is read aloud too)."""
    if not alt:
        raise ValueError("every image needs alt text")
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return Raw(f'<img src="{uri}" alt="{esc(alt)}"{_attrs(cls)}>')


def figure(png: bytes, alt: str, caption: str | Raw, *, cls: str = "") -> Raw:
    """An image with a visible caption."""
    return Raw(f"<figure{_attrs(cls)}>{img(png, alt)}<figcaption>{esc(caption)}</figcaption></figure>")


def code(text: str) -> Raw:
    """A command or path, set in monospace."""
    return Raw(f"<code>{esc(text)}</code>")


def missing(text: str | Raw) -> Raw:
    """What is missing and the command that produces it (a section never stays blank)."""
    return Raw(f'<p class="missing"><strong>Not available:</strong> {esc(text)}</p>')


def table(
    columns: Sequence[str | Raw],
    rows: Iterable[Sequence[object | Cell]],
    *,
    caption: str | Raw,
    row_headers: bool = True,
    row_classes: Sequence[str] | None = None,
    cls: str = "",
) -> Raw:
    """A ``<table>`` with a ``<caption>``, column headers (``scope="col"``) and, with ``row_headers``, the first
    cell of each row as its header (``scope="row"``). Cells are text, :class:`Raw` or :class:`Cell`;
    ``row_classes`` gives each ``<tr>`` a CSS class."""
    head = "".join(f'<th scope="col">{esc(c)}</th>' for c in columns)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, value in enumerate(row):
            cell = value if isinstance(value, Cell) else Cell(value, header=row_headers and j == 0)
            tag, scope = ("th", ' scope="row"') if cell.header else ("td", "")
            cells.append(f"<{tag}{scope}{_attrs(cell.cls, cell.style)}>{esc(cell.content)}</{tag}>")
        row_cls = row_classes[i] if row_classes else ""
        body.append(f"<tr{_attrs(row_cls)}>{''.join(cells)}</tr>")
    return Raw(
        f'<div class="table-wrap"><table{_attrs(cls)}><caption>{esc(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def section(id_: str, title: str, body: str | Raw) -> Raw:
    """A ``<section>`` with an ``<h2>`` heading it is labelled by."""
    return Raw(
        f'<section id="{esc(id_)}" aria-labelledby="{esc(id_)}-h"><h2 id="{esc(id_)}-h">{esc(title)}</h2>'
        f"{body}</section>"
    )


def page(title: str, intro: str | Raw, sections: Sequence[tuple[str, str, str | Raw]]) -> str:
    """The whole document: ``<h1>`` title, an introduction, a table of contents and the ``(id, title, body)``
    sections in order."""
    toc = "".join(f'<li><a href="#{esc(i)}">{esc(t)}</a></li>' for i, t, _ in sections)
    body = "".join(section(i, t, b) for i, t, b in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{esc(title)}</h1>{esc(intro)}</header>\n"
        f'<nav aria-label="Contents"><h2 class="toc-h">Contents</h2><ol>{toc}</ol></nav>\n'
        f"<main>{body}</main>\n</body>\n</html>\n"
    )


CSS = """
:root { color-scheme: light; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --accent: #0b5cad;
        --bad: #b3261e; --good: #1a7f37; --bg-soft: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1180px; padding: 1.5rem 1.25rem 3rem; color: var(--fg); background: #fff;
       font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 1.9rem; margin: 0 0 .25rem; }
h2 { font-size: 1.4rem; margin: 2.2rem 0 .6rem; padding-bottom: .25rem; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.1rem; margin: 1.4rem 0 .4rem; }
header p { color: var(--muted); margin: .2rem 0; }
nav { background: var(--bg-soft); border: 1px solid var(--line); border-radius: 6px; padding: .5rem 1rem;
      margin: 1rem 0; }
nav .toc-h { font-size: 1rem; border: 0; margin: .2rem 0; padding: 0; }
nav ol { margin: .2rem 0; padding-left: 1.4rem; columns: 2 16rem; }
a { color: var(--accent); }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: .88em;
       background: var(--bg-soft); padding: .05em .3em; border-radius: 3px; overflow-wrap: anywhere; }
.table-wrap { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-size: .9rem; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; color: var(--muted); }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; text-align: left; vertical-align: top; }
thead th { background: var(--bg-soft); }
td.num { text-align: right; }
tr.differs th, tr.differs td { background: #fff8c5; }
table.confusion td { text-align: right; min-width: 2.6rem; }
table.confusion td.diag { font-weight: 700; outline: 2px solid var(--fg); outline-offset: -2px; }
table.confusion thead th { font-size: .75rem; }
figure { margin: .5rem 0 1.2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figure.grid img { width: min(100%, 912px); image-rendering: pixelated; }
ul.samples img { image-rendering: pixelated; }
td.acc { white-space: nowrap; }
.bar { display: inline-block; height: .65rem; width: calc(6rem * var(--w)); background: var(--accent);
       margin-right: .4rem; vertical-align: middle; }
figcaption { font-size: .9rem; color: var(--muted); }
.pair { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.pair > .table-wrap { margin-top: 0; }
.pair figure { flex: 1 1 300px; }
ul.samples { list-style: none; padding: 0; display: grid; gap: .6rem;
             grid-template-columns: repeat(auto-fill, minmax(10.5rem, 1fr)); }
ul.samples > li { border: 2px solid var(--line); border-radius: 6px; padding: .4rem; font-size: .8rem;
                break-inside: avoid; }
ul.samples > li.wrong { border-color: var(--bad); background: #fff5f5; }
ul.samples img { width: 84px; height: 84px; display: block; margin: 0 auto .3rem; }
ul.samples ol { margin: .2rem 0 0; padding-left: 1.3rem; }
.verdict { font-weight: 700; }
.wrong .verdict { color: var(--bad); }
.right .verdict { color: var(--good); }
p.missing { border-left: 4px solid #bf8700; background: #fff8e6; padding: .5rem .8rem; }
p.note { color: var(--muted); font-size: .9rem; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  nav { display: none; }
  a { color: inherit; text-decoration: none; }
  h2 { break-after: avoid; }
  figure, table, ul.samples > li, p.missing { break-inside: avoid; }
  .table-wrap { overflow: visible; }
  tr.differs th, tr.differs td, ul.samples > li.wrong, p.missing, code, thead th, .bar, table.confusion td {
    -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
@page { margin: 1.5cm; }
"""


def write_page(document: str, out: str | Path) -> Path:
    """Write ``document`` to ``out`` (UTF-8) atomically: a temporary file beside it, then renamed over it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(document)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
