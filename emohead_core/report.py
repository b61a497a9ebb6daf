"""Pages of the Snakemake report: a paper table, as rule ``tables`` writes it in Markdown
(``results/tables/{table}.md``: a bold title line, a pipe table, a legend), rendered as a
standalone HTML page that the report shows inline (rule ``tables_html``)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from .io import atomic_path

_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_SEPARATOR = re.compile(r"^\|(\s*:?-{3,}:?\s*\|)+$")


@dataclass
class MarkdownTable:
    title: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _cells(line: str) -> list[str]:
    inner = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    return [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(inner)]


def parse_markdown_table(text: str) -> MarkdownTable:
    """The title (``**...**``), header, body rows and the text lines after the table."""
    out = MarkdownTable()
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("|"):
            if _SEPARATOR.match(s.replace(" ", "")):
                continue
            if not out.header:
                out.header = _cells(s)
            else:
                out.rows.append(_cells(s))
        elif not out.header and not out.title and s.startswith("**") and s.endswith("**") and len(s) > 4:
            out.title = s[2:-2]
        else:
            out.notes.append(s)
    if not out.header:
        raise ValueError("no Markdown table found")
    return out


_STYLE = """
body { font-family: sans-serif; font-size: 13px; margin: 1em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; position: sticky; top: 0; }
tr.paper td { color: #555; background: #fafafa; }
td.na { color: #999; font-size: 11px; max-width: 14em; }
p.note { color: #444; max-width: 60em; }
"""


def table_html(table: MarkdownTable) -> str:
    """A standalone HTML page: rows whose Source is ``paper`` (the published numbers) are set off
    from the measured ones, and cells that could not be measured (``n/a: reason``) are muted."""
    esc = html.escape
    src = table.header.index("Source") if "Source" in table.header else None
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{esc(table.title or 'table')}</title><style>{_STYLE}</style></head><body>",
    ]
    if table.title:
        parts.append(f"<h2>{esc(table.title)}</h2>")
    head = "".join(f"<th>{esc(c)}</th>" for c in table.header)
    parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>")
    for row in table.rows:
        cls = ' class="paper"' if src is not None and src < len(row) and row[src] == "paper" else ""
        cells = "".join(
            f'<td class="na">{esc(c)}</td>' if c.startswith("n/a") else f"<td>{esc(c)}</td>" for c in row
        )
        parts.append(f"<tr{cls}>{cells}</tr>")
    parts.append("</tbody></table>")
    parts += [f'<p class="note">{esc(n)}</p>' for n in table.notes]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_table_html(markdown_path: str | Path, html_path: str | Path) -> MarkdownTable:
    table = parse_markdown_table(Path(markdown_path).read_text(encoding="utf-8"))
    with atomic_path(html_path) as tmp:
        tmp.write_text(table_html(table), encoding="utf-8")
    return table
