"""A `Table` (recbench/reporting/tables.py) as Markdown, LaTeX, HTML and the long-form CSV.

The HTML page is the table as published, for the HTML report (`snakemake --report`): the same
cells, marks and notes as the Markdown (bold best, underlined second, the paper's row in grey,
the significance marks in the cells), as one self-contained page."""
from __future__ import annotations

import html
import re
from collections.abc import Sequence

import pandas as pd

from recbench.io import write_text_atomic
from recbench.reporting.tables import Table


def to_markdown(table: Table) -> str:
    """# title, the table (repeated leading row labels left blank), then the notes."""
    names = list(table.cells.index.names)
    head = names + list(table.cells.columns)
    lines = [f"# {table.title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    previous: tuple = ()
    for key, texts, marks in zip(table.cells.index, table.cells.to_numpy(),
                                 table.marks.to_numpy()):
        key = key if isinstance(key, tuple) else (key,)
        shown = ["" if key[:i + 1] == previous[:i + 1] else _md(str(k))
                 for i, k in enumerate(key)]
        previous = key
        body = [_md_mark(_md(str(t)), m) for t, m in zip(texts, marks)]
        lines.append("| " + " | ".join(shown + body) + " |")
    return "\n".join(lines + [""] + [f"{n}\n" for n in table.notes])


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("<", "&lt;")


def _md_mark(text: str, mark: str) -> str:
    return {"best": f"**{text}**", "second": f"<u>{text}</u>"}.get(mark, text)


def to_latex(table: Table) -> str:
    """A table environment: caption, the tabular (pandas Styler; booktabs rules), the notes."""
    css = table.marks.replace({"best": "textbf: --rwrap;", "second": "underline: --rwrap;"})
    styler = (table.cells.style.format(_latex_escape).format_index(_latex_escape, axis=0)
              .format_index(_latex_escape, axis=1).apply(lambda _: css, axis=None))
    tabular = styler.to_latex(hrules=True, multirow_align="naive")
    notes = "\n\n".join(_latex_escape(n) for n in table.notes)
    return ("% needs \\usepackage{booktabs}\n\\begin{table}[t]\n\\centering\n"
            f"\\caption{{{_latex_escape(table.title)}}}\n\\small\n{tabular}"
            f"\\par\\smallskip\n{{\\footnotesize {notes}\\par}}\n\\end{{table}}\n")


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
          "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
          "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
          "±": r"$\pm$"}


def _latex_escape(text) -> str:
    """Text as LaTeX prints it literally (one pass, so no escape is escaped again)."""
    return re.sub("|".join(map(re.escape, _LATEX)), lambda m: _LATEX[m.group()], str(text))


_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; font-size: 11.5px;
       color: #222; margin: 12px; }
h1 { font-size: 17px; margin: 0 0 8px; }
h2 { font-size: 15px; margin: 22px 0 6px; }
p.head { margin: 0 0 10px; color: #444; }
table { border-collapse: collapse; margin: 4px 0 8px; }
th, td { padding: 2px 4px; text-align: right; }
th { font-weight: 600; text-align: center; white-space: nowrap; }
thead th { border-top: 1.5px solid #222; border-bottom: 1px solid #222; }
tbody tr:last-child td, tbody tr:last-child th { border-bottom: 1.5px solid #222; }
tbody th { text-align: left; font-weight: normal; }
tr.block td, tr.block th { border-top: 1px solid #ddd; }
tr.group td, tr.group th { border-top: 1px solid #888; }
tr.paper td, tr.paper th.source { color: #777; }
td.best { font-weight: 700; }
td.second { text-decoration: underline; }
ol.notes { color: #444; font-size: 12px; max-width: 1100px; padding-left: 20px; }
ol.notes li { margin: 3px 0; }
"""


def to_html(table: Table | Sequence[Table], head: str = "", title: str = "") -> str:
    """One or several tables as a self-contained HTML page: `title` (h1), `head` (a
    paragraph), then each table with its title (h2), its rows (a leading label repeated from
    the row above left blank, the paper's row in grey, best bold, second underlined) and its
    notes."""
    tables = [table] if isinstance(table, Table) else list(table)
    body = [f"<h1>{html.escape(title)}</h1>"] if title else []
    if head.strip():
        body.append(f'<p class="head">{html.escape(head.strip())}</p>')
    body += [_html_table(t) for t in tables]
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title or (tables[0].title if tables else ''))}</title>"
            f"<style>{_STYLE}</style></head>\n<body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def _html_table(table: Table) -> str:
    names = [str(n) for n in table.cells.index.names]
    columns = [str(c) for c in table.cells.columns]
    rows = [f"<h2>{html.escape(table.title)}</h2>", "<table>", "<thead><tr>"
            + "".join(f"<th>{html.escape(h) if h != 'None' else ''}</th>"
                      for h in names + columns) + "</tr></thead>", "<tbody>"]
    previous: tuple = ()
    for key, texts, marks in zip(table.cells.index, table.cells.to_numpy(),
                                 table.marks.to_numpy()):
        key = key if isinstance(key, tuple) else (key,)
        source = str(key[-1]) if names and names[-1] == "source" else ""
        new_group = bool(previous) and key[0] != previous[0]
        new_block = bool(previous) and len(key) > 1 and key[:-1] != previous[:-1]
        classes = [c for c in ("paper" if source == "paper" else "",
                               "group" if new_group else "block" if new_block else "") if c]
        shown = ["" if key[:i + 1] == previous[:i + 1] else html.escape(str(k))
                 for i, k in enumerate(key)]
        previous = key
        heads = "".join(f'<th class="{"source" if i == len(key) - 1 else "label"}">{k}</th>'
                        for i, k in enumerate(shown))
        cells = "".join(f'<td class="{m}">{_cell(t)}</td>' if m else f"<td>{_cell(t)}</td>"
                        for t, m in zip(texts, marks))
        cls = f' class="{" ".join(classes)}"' if classes else ""
        rows.append(f"<tr{cls}>{heads}{cells}</tr>")
    rows += ["</tbody>", "</table>"]
    if table.notes:
        rows.append('<ol class="notes">' + "".join(f"<li>{html.escape(n)}</li>"
                                                  for n in table.notes) + "</ol>")
    return "\n".join(rows)


def _cell(text) -> str:
    """A cell's text, escaped (it wraps at its spaces, so that a wide table fits a window)."""
    return html.escape(str(text))


def write_table(table: Table | Sequence[Table], md_path, csv_path, tex_path,
                head: str = "", html_path=None, title: str = "") -> None:
    """One table, or a list of them one after another (the CSV then gains a `table` column
    naming each), as Markdown (after `head`), CSV (the numbers), LaTeX and, given `html_path`,
    the HTML page of the report (`title` and `head` above the tables), each atomically."""
    tables = [table] if isinstance(table, Table) else list(table)
    data = (table.data if isinstance(table, Table) else
            pd.concat([t.data.assign(table=t.title) for t in tables]))
    write_text_atomic(md_path, head + "\n\n".join(to_markdown(t) for t in tables))
    write_text_atomic(csv_path, data.to_csv(index=False))
    write_text_atomic(tex_path, "\n\n".join(to_latex(t) for t in tables))
    if html_path is not None:
        write_text_atomic(html_path, to_html(tables, head=head, title=title))
