"""Rule group_table: the runs of one experiment group -> reports/tables/{group}.*.

The group's `paper` block decides the layout (recbench/reporting/tables.py): `table2` is Table 2's
(models as columns, ours beside the paper's, paired tests from the per-user test ranks),
`table3` Table 3's, anything else one table per sweep and (dataset, model): rows = variants,
or max_len values when only the window length varies. Every run and its per-user ranks are
checked against the results contract (recbench/results.py) whatever rule wrote them.
"""
from recbench.names import declare
from recbench.reporting.paper_numbers import paper_numbers
from recbench.reporting.paper_tables import group_table, layers_table, main_table
from recbench.reporting.render import write_table
from recbench.reporting.tables import Table, run_key
from recbench.results import read_run, read_test_ranks
from recbench.rule_script import run_rule


def section_tables(block, members, runs, ranks, paper, deterministic=()) -> list[Table]:
    unique = lambda key: list(dict.fromkeys(m[key] for m in members))
    datasets, max_lens, variants = unique("dataset"), sorted(unique("max_len")), unique("variant")
    pairs = list(dict.fromkeys((m["dataset"], m["model"]) for m in members))
    own = {p: list(dict.fromkeys(m["variant"] for m in members
                                 if (m["dataset"], m["model"]) == p)) for p in pairs}
    if block == "table2":   # every variant of a model in a main group: a column each
        shown = {model: list(dict.fromkeys(v for (_, m), vs in own.items() if m == model
                                           for v in vs)) for _, model in pairs}
        return [main_table(runs, paper, max_len=L, test_ranks=ranks, datasets=datasets,
                           variants=shown, deterministic=deterministic) for L in max_lens]
    if block == "table3":
        return [layers_table(runs, paper, dataset=d, model=m, max_len=L)
                for d, m in pairs for L in max_lens]
    if len(max_lens) > 1 and len(variants) == 1:
        return [group_table(runs, paper, dataset=d, model=m, by="max_len", rows=max_lens,
                            variant=variants[0], block=block, deterministic=deterministic)
                for d, m in pairs]
    return [group_table(runs, paper, dataset=d, model=m, max_len=L, rows=own[d, m],
                        block=block, deterministic=deterministic)
            for d, m in pairs for L in max_lens]


def main(group: str, layout: dict, metrics_files: list[str], paper_yaml: str, out,
         category: str = "") -> None:
    runs = [read_run(f) for f in metrics_files]
    ranks = {run_key(run): read_test_ranks(f, run)
             for run, f in zip(runs, metrics_files) if run["status"] == "ok"}
    paper = paper_numbers(paper_yaml)
    tables = []
    for section, members in layout["sections"].items():
        for table in section_tables(layout["paper"], members, runs, ranks, paper,
                                    layout.get("deterministic", ())):
            table.title = f"{group}{f' ({section})' if section else ''}: {table.title}"
            table.data = table.data.assign(section=section)   # figures split sweeps by it
            tables.append(table)
    head = f"{layout['description']}\n\n" if layout["description"] else ""
    write_table(tables, out.md, out.csv, out.tex, head=head, html_path=out.html,
                title=f"{category}: group {group}" if category else group)


declare(snakemake.params.models)   # display names, the figures' models (recbench/names.py)
run_rule(snakemake, lambda: main(snakemake.wildcards.group, snakemake.params.layout,
                                 snakemake.input.metrics, snakemake.input.paper,
                                 snakemake.output, snakemake.params.category))
