"""The small HTML toolkit every page uses: one inline stylesheet, escaped text, tables. No JavaScript and
nothing from a CDN, so a page opens offline, from a mail attachment or a CI artefact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2125; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.muted { color: #68707a; }
table { border-collapse: collapse; margin: .6rem 0; }
th, td { border-bottom: 1px solid #dde1e5; padding: .3rem .7rem; text-align: left; vertical-align: top; }
th { background: #f4f6f8; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.good { color: #18794e; } .bad { color: #c4320a; }
.warning { background: #fff4e5; border-left: 4px solid #f5a623; padding: .4rem .8rem; margin: .4rem 0; }
img { max-width: 100%; }
"""


@dataclass(frozen=True)
class Cell:
    """A table cell: `text` is escaped when the page is built; `css` names classes from STYLE."""

    text: object
    css: str = ""
    numeric: bool = False


def page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><main>\n{body}\n</main></body></html>\n"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows of plain values (numbers right-aligned) or `Cell`s; no header row when every header is empty."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_td(value) for value in row) + "</tr>" for row in rows)
    thead = f"<thead><tr>{head}</tr></thead>" if any(headers) else ""
    return f"<table>{thead}<tbody>{body}</tbody></table>"


def _td(value: object) -> str:
    c = value if isinstance(value, Cell) else Cell(value, numeric=isinstance(value, int | float))
    classes = " ".join(x for x in (c.css, "num" if c.numeric else "") if x)
    text = escape("" if c.text is None else str(c.text))
    return f'<td class="{classes}">{text}</td>' if classes else f"<td>{text}</td>"
