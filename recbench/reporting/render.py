"""A `Table` (recbench/reporting/tables.py) as Markdown, LaTeX and the long-form CSV."""
from __future__ import annotations

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


def write_table(table: Table | Sequence[Table], md_path, csv_path, tex_path,
                head: str = "") -> None:
    """One table, or a list of them one after another (the CSV then gains a `table` column
    naming each), as Markdown (after `head`), CSV (the numbers) and LaTeX, each atomically."""
    tables = [table] if isinstance(table, Table) else list(table)
    data = (table.data if isinstance(table, Table) else
            pd.concat([t.data.assign(table=t.title) for t in tables]))
    write_text_atomic(md_path, head + "\n\n".join(to_markdown(t) for t in tables))
    write_text_atomic(csv_path, data.to_csv(index=False))
    write_text_atomic(tex_path, "\n\n".join(to_latex(t) for t in tables))
