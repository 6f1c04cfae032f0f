"""The figure functions (recbench/reporting/figures.py) on hand-made tables and profile cells: files are
written, each model keeps its colour across figures, the paper's series is drawn where it
exists, and a cell that ran out of memory is drawn as such."""
from __future__ import annotations

import json

import matplotlib.colors as mcolors
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.container import BarContainer

from recbench.cost.cells import memory_claim, read_cells
from recbench.reporting import figures
from recbench.reporting.cost_tables import cost_tables


@pytest.fixture
def drawn(monkeypatch):
    """Every figure passed to figures.save, kept open for inspection (and still saved)."""
    kept = []
    original = figures.save

    def keep(fig, png, svg):
        kept.append(fig)
        fig.savefig(png)
        fig.savefig(svg)
    monkeypatch.setattr(figures, "save", keep)
    yield kept
    monkeypatch.setattr(figures, "save", original)


def write_cell(root, model, max_len, memory, seconds, status="ok", policy="stored",
               variant="default", reason=None, batch=32):
    path = root / "cpu" / policy / model / variant / f"L{max_len}" / f"B{batch}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    cell = {"model": model, "policy": policy, "max_len": max_len, "batch_size": batch,
            "device": "cpu", "status": status, "overrides": {}}
    if status == "ok":
        cell |= {"peak_rss_mb": memory, "seconds_per_step": seconds,
                 "flops_per_sequence": 1e6 * max_len}
    else:
        cell["reason"] = reason
    path.write_text(json.dumps(cell))
    return path


@pytest.fixture
def cells(tmp_path):
    paths = []
    for L in (50, 200, 800):
        paths.append(write_cell(tmp_path, "recgrela", L, 2.0 * L, 0.001 * L))
        paths.append(write_cell(tmp_path, "recgrela", L, 1.0 * L, 0.0012 * L, policy="recompute"))
        paths.append(write_cell(tmp_path, "sasrec", L, 0.01 * L * L, 1e-5 * L * L))
    paths.append(write_cell(tmp_path, "recgrela", 3200, 6400, 3.2))
    paths.append(write_cell(tmp_path, "sasrec", 3200, None, None, status="oom",
                            reason="out of memory (4 GB address space)"))
    return read_cells(paths)


def colours_of(fig) -> dict[str, tuple]:
    """{legend label (slope text cut): RGBA} of every labelled series in the figure."""
    found = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            line = handle.lines[0] if hasattr(handle, "lines") else handle   # errorbar or line
            found[label.split(" (slope")[0]] = mcolors.to_rgba(line.get_color())
    return found


def test_scaling_figure_writes_files_marks_oom_and_states_the_claim(cells, tmp_path, drawn):
    png, svg = tmp_path / "s.png", tmp_path / "s.svg"
    claim = figures.scaling_figure(cells, png, svg, title="length")
    assert png.stat().st_size > 10_000 and svg.stat().st_size > 10_000
    fig = drawn[0]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(t.startswith("OOM") and "4 GB address space" in t for t in texts)
    # memory slopes in the legend: recgrela linear (1.00), sasrec quadratic (2.00)
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "RecGRELA (slope 1.00)" in labels and "SASRec (slope 2.00)" in labels
    # recompute drawn dashed in the same colour as the model
    lines = {line.get_label().split(" (slope")[0]: line for line in fig.axes[0].get_lines()}
    assert lines["RecGRELA [recompute]"].get_linestyle() == "--"
    assert lines["RecGRELA [recompute]"].get_color() == lines["RecGRELA"].get_color()
    # the claim at the longest common length, 800 (SASRec is OOM at 3200): 1600 vs 6400 MB;
    # at 50: 100 vs 25 MB
    assert "at max_len 800 RecGRELA uses 1,600 MB and the others SASRec 4.00x" in claim
    assert "the claim holds; at max_len 50 (SASRec 0.25x) it does not hold" in claim
    assert "Did not finish: SASRec (OOM at L=3200)" in claim


def test_option_sets_of_one_model_differ_and_failed_cells_share_one_label(tmp_path, drawn):
    paths = []
    for L in (200, 800):
        paths.append(write_cell(tmp_path, "sasrec", L, 0.01 * L * L, 1e-5 * L * L))
        paths.append(write_cell(tmp_path, "sasrec", L, 0.005 * L * L, 1e-5 * L * L,
                                variant="attention=sdpa"))
    for model, variant in (("sasrec", "default"), ("sasrec", "attention=sdpa"),
                           ("linrec", "default")):
        paths.append(write_cell(tmp_path, model, 3200, None, None, status="oom",
                                variant=variant, reason="out of memory (4 GB address space)"))
    paths.append(write_cell(tmp_path, "linrec", 800, 8.0, 0.1))
    figures.scaling_figure(read_cells(paths), tmp_path / "v.png", tmp_path / "v.svg",
                           title="variants")
    ax = drawn[0].axes[0]
    lines = {line.get_label().split(" (slope")[0]: line for line in ax.get_lines()
             if not line.get_label().startswith("_")}
    first, second = lines["SASRec"], lines["SASRec (attention=sdpa)"]
    assert first.get_color() == second.get_color()
    assert (first.get_linestyle(), first.get_fillstyle()) != (second.get_linestyle(),
                                                              second.get_fillstyle())
    # three cells failed at 3200: three crosses, one label naming the limit once
    crosses = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert len(crosses) == 3
    assert len({line.get_transform().transform((3200, 1))[1] for line in crosses}) == 3
    labels = [t.get_text() for t in ax.texts if t.get_text().startswith("OOM")]
    assert labels == ["OOM\n4 GB address space"]


def test_a_model_keeps_its_colour_across_figures(cells, tmp_path, drawn):
    figures.scaling_figure(cells, tmp_path / "a.png", tmp_path / "a.svg", title="a")
    sweep = pd.DataFrame([
        {"dataset": "ml-1m", "model": m, "max_len": L, "metric": "ndcg@10",
         "ours_mean": v, "ours_std": 0.01}
        for m, base in (("sasrec", 0.1), ("recgrela", 0.12)) for L, v in
        ((50, base), (200, base + 0.02))])
    figures.accuracy_length_figure(sweep, tmp_path / "b.png", tmp_path / "b.svg")
    first, second = colours_of(drawn[0]), colours_of(drawn[1])
    assert first["RecGRELA"] == second["RecGRELA"]
    assert first["SASRec"] == second["SASRec"]
    assert first["RecGRELA"] != first["SASRec"]
    assert figures.model_style("brand-new-model") == figures.model_style("brand-new-model")


def group_csv(with_paper: bool) -> pd.DataFrame:
    rows = []
    for variant, label, paper in (("default", "RecGRELA (Full Model)", 0.1959),
                                  ("position_encoding=none", "w/o RoPE", 0.1916),
                                  ("gate=false", None, None)):
        for metric in ("ndcg@10", "mrr@10"):
            rows.append({"dataset": "ml-1m", "model": "recgrela", "variant": variant,
                         "label": label, "metric": metric, "ours_mean": 0.15, "ours_std": 0.01,
                         "paper": paper if with_paper else None})
    return pd.DataFrame(rows)


def test_bars_draw_the_papers_series_where_it_exists(tmp_path, drawn):
    figures.bars_figure(group_csv(True), tmp_path / "f.png", tmp_path / "f.svg", title="Fig. 4")
    ax = drawn[0].axes[0]
    ours, paper = [c for c in ax.containers if isinstance(c, BarContainer)]
    heights = [bar.get_height() for bar in paper]
    assert heights[:2] == pytest.approx([0.1959, 0.1916])
    assert paper[0].get_hatch() == "//"
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["RecGRELA (Full Model)", "w/o RoPE", "gate=false"]
    assert any(t.get_text() == "n/a" for t in ax.texts)       # no paper bar for gate=false
    assert [b.get_height() for b in ours] == pytest.approx([0.15] * 3)


def test_sensitivity_panels_per_sweep(tmp_path, drawn):
    rows = []
    for section, variants in (("num_heads", ["num_heads=2", "default", "num_heads=8"]),
                              ("dropout", ["dropout=0.2", "dropout=0.3"])):
        for i, variant in enumerate(variants):
            for metric in ("ndcg@10", "mrr@10"):
                rows.append({"dataset": "ml-1m", "model": "recgrela", "variant": variant,
                             "max_len": None, "metric": metric, "ours_mean": 0.1 + 0.01 * i,
                             "ours_std": 0.0, "section": section})
    figures.sensitivity_figure(pd.DataFrame(rows), {"num_heads": 4, "dropout": 0.1},
                               tmp_path / "s.png", tmp_path / "s.svg", title="Fig. 8")
    fig = drawn[0]
    assert [ax.get_xlabel() for ax in fig.axes] == ["num_heads", "dropout"]
    xs = sorted(fig.axes[0].get_lines()[0].get_xdata())
    assert xs == [2, 4, 8]                                   # default read as 4 heads


def test_cost_accuracy_needs_cells_at_the_tables_max_len(cells, tmp_path):
    main = pd.DataFrame([{"dataset": "ml-1m", "model": "recgrela", "metric": "ndcg@10",
                          "ours_mean": 0.2, "ours_std": 0.01}])
    paper = pd.DataFrame(columns=["block", "dataset", "metric", "value"])
    figures.cost_accuracy_figure(main, cells, paper, tmp_path / "c.png", tmp_path / "c.svg",
                                 max_len=200)
    assert (tmp_path / "c.png").stat().st_size > 5_000
    with pytest.raises(ValueError, match="max_len 30"):
        figures.cost_accuracy_figure(main, cells, paper, tmp_path / "d.png",
                                     tmp_path / "d.svg", max_len=30)


def test_no_memory_claim_where_a_study_varies_options_not_max_len(tmp_path, drawn):
    # a layers study (Fig. 6): one max_len, option sets 1, 2 and 4 (= default) blocks for
    # RecGRELA and SIGMA: the claim (RecGRELA the lowest along max_len) does not apply
    paths = []
    for model in ("recgrela", "sigma"):
        for variant, blocks in (("num_layers=1", 1), ("num_layers=2", 2), ("default", 4)):
            paths.append(write_cell(tmp_path, model, 100, 100.0 * blocks, 0.01 * blocks,
                                    variant=variant))
    cells = read_cells(paths)
    claim = figures.scaling_figure(cells, tmp_path / "l.png", tmp_path / "l.svg",
                                   x="num_layers", title="layers", loglog=False)
    assert claim == ""
    assert not any("Paper:" in t.get_text() for t in drawn[0].texts)
    assert memory_claim(cells) == ""
    assert not any("Paper:" in n for t in cost_tables(cells, "layers") for n in t.notes)
    # a RecGRELA-only study (the causal streaming variant): nothing to compare either
    alone = read_cells([write_cell(tmp_path / "s", "recgrela", L, 2.0 * L, 0.001 * L,
                                   variant="causal=true") for L in (200, 800)])
    assert memory_claim(alone) == ""


def test_memory_claim_says_when_recgrela_itself_runs_out_of_memory(tmp_path, drawn):
    paths = [write_cell(tmp_path, "recgrela", 3200, None, None, status="oom",
                        reason="out of memory (4 GB address space)")]
    for L in (50, 200, 800):
        paths.append(write_cell(tmp_path, "sasrec", L, 4.0 * L, 0.001 * L))
        paths.append(write_cell(tmp_path, "recgrela", L, 2.0 * L, 0.001 * L))
    paths.append(write_cell(tmp_path, "sasrec", 3200, 12800.0, 3.2))
    claim = figures.scaling_figure(read_cells(paths), tmp_path / "o.png", tmp_path / "o.svg",
                                   title="length")
    assert "RecGRELA itself did not finish at L=3200 (OOM: out of memory (4 GB address " \
           "space)), where SASRec finished" in claim
    assert "the claim does not hold" in claim and "the claim holds" not in claim
    assert any("RecGRELA itself" in t.get_text() for t in drawn[0].texts)


def single_seed_texts(fig) -> list:
    return [t for ax in fig.axes for t in ax.texts if t.get_text() == "n=1"]


def test_single_seed_cells_say_n_1_and_draw_no_error_bar(tmp_path, drawn):
    group = group_csv(True)
    one = group["variant"] == "gate=false"                     # one seed: no std
    group.loc[one, "ours_std"] = None
    group["n_seeds"] = [1 if o else 3 for o in one]
    figures.bars_figure(group, tmp_path / "b.png", tmp_path / "b.svg", title="Fig. 4")
    assert len(single_seed_texts(drawn[-1])) == 2               # one bar per metric panel
    ours = [c for c in drawn[-1].axes[0].containers if isinstance(c, BarContainer)][0]
    bars = ours.errorbar.lines[2][0].get_segments()            # the vertical error bars
    assert len(bars[2]) == 0 and len(bars[0]) == 2              # none drawn for n=1
    sweep = pd.DataFrame([
        {"dataset": "ml-1m", "model": "sasrec", "max_len": L, "metric": "ndcg@10",
         "ours_mean": 0.1, "ours_std": None if L == 200 else 0.01,
         "n_seeds": 1 if L == 200 else 2} for L in (50, 200)])
    figures.accuracy_length_figure(sweep, tmp_path / "a.png", tmp_path / "a.svg")
    assert len(single_seed_texts(drawn[-1])) == 1
    rows = [{"dataset": "ml-1m", "model": "recgrela", "variant": v, "max_len": None,
             "metric": m, "ours_mean": 0.1, "ours_std": None, "n_seeds": 1,
             "section": "num_heads"} for v in ("num_heads=2", "default")
            for m in ("ndcg@10", "mrr@10")]
    figures.sensitivity_figure(pd.DataFrame(rows), {"num_heads": 4}, tmp_path / "s.png",
                               tmp_path / "s.svg", title="Fig. 8")
    assert len(single_seed_texts(drawn[-1])) == 4


def two_batches(tmp_path):
    """RecGRELA and SASRec at max_len 50, 200, 800, each at batch 32 and batch 64."""
    return read_cells([write_cell(tmp_path, m, L, k * b * L / 32, 1e-3 * b * L / 32, batch=b)
                       for m, k in (("recgrela", 1.0), ("sasrec", 3.0))
                       for L in (50, 200, 800) for b in (32, 64)])


def test_fig3_two_batch_sizes_and_several_max_lens(tmp_path, drawn):
    cells = two_batches(tmp_path)
    main = pd.DataFrame([{"dataset": "ml-1m", "model": m, "variant": "default", "max_len": L,
                          "metric": "ndcg@10", "ours_mean": v + (0.05 if L == 200 else 0),
                          "ours_std": 0.01 if m == "recgrela" else None,
                          "n_seeds": 2 if m == "recgrela" else 1}
                         for m, v in (("recgrela", 0.2), ("sasrec", 0.1)) for L in (50, 200)])
    paper = pd.DataFrame(columns=["block", "dataset", "metric", "value"])
    figures.cost_accuracy_figure(main, cells, paper, tmp_path / "c.png", tmp_path / "c.svg",
                                 max_len=200)
    axes = drawn[0].axes
    assert len(axes) == 2                                       # one panel per batch size
    assert [ax.get_title() for ax in axes] == ["ML-1M, batch 32", "ML-1M, batch 64"]
    for ax, batch in zip(axes, (32, 64)):
        points = [tuple(c.get_offsets()[0]) for c in ax.collections
                  if isinstance(c, PathCollection)]
        # one bubble per model, at the max_len-200 accuracy and that batch's memory
        assert sorted(t.get_text() for t in ax.texts) == ["RecGRELA", "SASRec (n=1)"]
        expected = sorted([(200 * batch / 32, 0.25), (600 * batch / 32, 0.15)])
        assert len(points) == 2
        for got, want in zip(sorted(points), expected):
            assert got == pytest.approx(want)


def test_scaling_figure_separates_batch_sizes(tmp_path, drawn):
    claim = figures.scaling_figure(two_batches(tmp_path), tmp_path / "s.png",
                                   tmp_path / "s.svg", title="two batches")
    # the claim compares within one batch size: SASRec 3.00x at each
    assert claim.startswith("Batch 32: Paper: RecGRELA needs") and " Batch 64: " in claim
    assert "at max_len 800 RecGRELA uses 800 MB and the others SASRec 3.00x" in claim
    assert "at max_len 800 RecGRELA uses 1,600 MB and the others SASRec 3.00x" in claim
    lines = [line for line in drawn[0].axes[0].get_lines()
             if not line.get_label().startswith("_")]
    labels = [line.get_label().split(" (slope")[0] for line in lines]
    assert sorted(labels) == ["RecGRELA, batch 32", "RecGRELA, batch 64", "SASRec, batch 32",
                              "SASRec, batch 64"]
    for line in lines:                                          # one point per max_len
        assert list(line.get_xdata()) == [50, 200, 800]
    styles = {line.get_label().split(" (slope")[0]: line.get_linestyle() for line in lines}
    assert styles["RecGRELA, batch 32"] != styles["RecGRELA, batch 64"]


def overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_bars_legend_does_not_sit_over_the_title(tmp_path, drawn):
    figures.bars_figure(group_csv(True), tmp_path / "f.png", tmp_path / "f.svg",
                        title="Fig. 4: RecGRELA's core components on ML-1M, a long title")
    fig = drawn[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = fig.get_suptitle() and fig._suptitle.get_window_extent(renderer)
    legend = fig.legends[0].get_window_extent(renderer)
    assert not overlap(title, legend)
    for ax in fig.axes:                          # nor over a panel
        assert not overlap(ax.get_window_extent(renderer), legend)


def test_ablation_axis_uses_the_papers_names_on_any_dataset(tmp_path, drawn):
    from recbench.reporting.paper_numbers import paper_numbers
    from recbench.reporting.paper_tables import group_table

    paper = paper_numbers(figures.Path(__file__).resolve().parents[1] / "reports"
                          / "paper_numbers.yaml")
    variants = ["default", "position_encoding=none", "local_shortcut=false", "gate=false"]
    runs = [{"dataset": "synthetic", "model": "recgrela", "variant": v, "max_len": 30,
             "seed": 1, "status": "ok", "test": {"ndcg@10": 0.1, "mrr@10": 0.05}}
            for v in variants]
    table = group_table(runs, paper, dataset="synthetic", model="recgrela", max_len=30,
                        rows=variants, block="fig4", metrics=["ndcg@10", "mrr@10"])
    figures.bars_figure(table.data, tmp_path / "a.png", tmp_path / "a.svg", title="Fig. 4")
    ticks = [t.get_text() for t in drawn[0].axes[0].get_xticklabels()]
    # the names are fig4's labels in reports/paper_numbers.yaml; its numbers stay ML-1M's
    expected = paper[(paper.block == "fig4") & (paper.metric == "ndcg@10")].set_index(
        "variant")["label"]
    assert ticks == [expected[v] for v in variants]
    assert ticks[1] == "w/o RoPE"
    assert table.data["paper"].isna().all()                   # no paper number on synthetic


def test_layers_figure_spells_out_the_default(tmp_path, drawn):
    from recbench.plan.groups import model_defaults
    from recbench.reporting.paper_numbers import paper_numbers
    from recbench.reporting.paper_tables import layers_table

    paper = paper_numbers(figures.Path(__file__).resolve().parents[1] / "reports"
                          / "paper_numbers.yaml")
    runs = [{"dataset": "ml-1m", "model": "recgrela", "variant": v, "max_len": 200,
             "seed": 1, "status": "ok", "test": {"ndcg@10": 0.1, "mrr@10": 0.05}}
            for v in ("num_layers=1", "num_layers=2", "default")]
    group = layers_table(runs, paper).data
    defaults = model_defaults("recgrela")
    figures.bars_figure(group, tmp_path / "l.png", tmp_path / "l.svg", title="Table 3",
                        defaults=defaults)
    ticks = [t.get_text() for t in drawn[0].axes[0].get_xticklabels()]
    assert ticks == ["num_layers=1", "num_layers=2", "num_layers=3",
                     f"num_layers={defaults['num_layers']} (default)", "num_layers=5",
                     "num_layers=6"]
    assert defaults["num_layers"] == 4                       # the reference configuration


def curves_runs(models=("recgrela", "popularity"), epochs=2):
    return [({"dataset": "ml-1m", "model": m, "variant": "default", "seed": s},
             pd.DataFrame({"epoch": range(1 if m == "popularity" else epochs),
                           "valid_ndcg@10": [0.1 + 0.01 * e for e in
                                             range(1 if m == "popularity" else epochs)]}))
            for m in models for s in (1, 2)]


def test_training_curves_leave_out_the_popularity_baseline(tmp_path, drawn):
    figures.training_curves_figure(curves_runs(), tmp_path / "c.png", tmp_path / "c.svg")
    ax = drawn[0].axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["RecGRELA"]
    assert len(ax.get_lines()) == 2                      # RecGRELA's two seeds, nothing else


def tick_texts(ax, axis="x") -> list[str]:
    labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    minor = ax.get_xticklabels(minor=True) if axis == "x" else ax.get_yticklabels(minor=True)
    return [t.get_text() for t in labels + minor if t.get_text()]


def test_log_axes_have_plain_number_ticks(cells, tmp_path, drawn):
    figures.scaling_figure(cells, tmp_path / "s.png", tmp_path / "s.svg", title="length")
    sweep = pd.DataFrame([{"dataset": "ml-1m", "model": "sasrec", "max_len": L,
                           "metric": "ndcg@10", "ours_mean": 0.1, "ours_std": 0.01}
                          for L in (50, 200, 800, 3200)])
    figures.accuracy_length_figure(sweep, tmp_path / "a.png", tmp_path / "a.svg")
    for fig in drawn:
        fig.canvas.draw()
    axes = drawn[0].axes[:2] + drawn[1].axes[:1]
    for ax in axes:
        assert tick_texts(ax, "x") == ["50", "200", "800", "3200"]     # the measured lengths
    for ax in drawn[0].axes[:2]:                                       # memory, time: log y
        shown = tick_texts(ax, "y")
        assert shown and all(float(t) > 0 for t in shown), shown       # 100, 0.01, ...


def test_epoch_axes_have_integer_ticks(tmp_path, drawn):
    figures.training_curves_figure(curves_runs(("recgrela",), epochs=2), tmp_path / "c.png",
                                   tmp_path / "c.svg")
    fig = drawn[0]
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    shown = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert shown and all(float(t).is_integer() for t in shown), shown   # 1, 2; not 1.25


@pytest.mark.parametrize("model,name", [
    ("recgrela", "RecGRELA"), ("linrec", "LinRec"), ("lrurec", "LRURec"),
    ("eulerformer", "EulerFormer"), ("recblr", "RecBLR")])
def test_authors_code_models_are_named_and_ordered_after_their_own(model, name):
    from recbench.names import display_name

    assert display_name(f"reference-{model}") == f"{name} (authors' code)"
    order = figures.MODEL_ORDER
    assert order.index(f"reference-{model}") == order.index(model) + 1
    colours = [tuple(figures.model_style(m)["color"]) for m in order]
    assert len(set(colours)) == len(order)                    # every model its own colour
    assert tuple(figures.model_style("brand-new")["color"]) not in colours


# --- issue 27 item 7: no two models of a figure look alike; declared display names ------------

@pytest.fixture
def declared():
    """recbench.names.declare, undone after the test (a reporting rule declares once)."""
    from recbench import names

    yield names.declare
    names.declare({})


def look(style) -> tuple:
    return tuple(style["color"]), style["marker"]


def test_models_outside_the_palette_never_share_a_look(declared):
    from recbench.reporting.style import model_styles

    # narm and itemknn collided (sum of the letters' codes, modulo 8)
    assert look(figures.model_style("narm", among=["itemknn"])) != \
        look(figures.model_style("itemknn", among=["narm"]))
    new = [f"baseline{i:02d}" for i in range(40)] + ["narm", "itemknn"]
    styles = model_styles(new + ["recgrela", "sasrec", "popularity"])
    assert len({look(s) for s in styles.values()}) == len(styles)         # 45 models, 45 looks
    # the paper's models keep their fixed look whatever else is drawn
    assert look(styles["recgrela"]) == look(figures.model_style("recgrela"))
    assert look(styles["sasrec"]) == look(figures.model_style("sasrec", among=["narm"]))
    # a few new models take colours no paper model has
    fixed = {tuple(figures.model_style(m)["color"]) for m in figures.MODEL_ORDER}
    few = model_styles(["narm", "itemknn", "recgrela"])
    assert not {tuple(few[m]["color"]) for m in ("narm", "itemknn")} & fixed
    # a model keeps its look across the figures of one workflow (the declared models)
    declared({"narm": {}, "itemknn": {}, "recgrela": {}})
    assert look(figures.model_style("narm")) == look(figures.model_style("narm", ["itemknn"]))


def test_two_new_models_are_told_apart_in_a_figure(tmp_path, drawn):
    sweep = pd.DataFrame([
        {"dataset": "ml-1m", "model": m, "max_len": L, "metric": "ndcg@10",
         "ours_mean": v, "ours_std": 0.01}
        for m, base in (("narm", 0.1), ("itemknn", 0.12)) for L, v in
        ((50, base), (200, base + 0.02))])
    figures.accuracy_length_figure(sweep, tmp_path / "b.png", tmp_path / "b.svg")
    colours = colours_of(drawn[0])
    assert set(colours) == {"narm", "itemknn"} and colours["narm"] != colours["itemknn"]


def test_a_declared_display_name_names_the_model_in_legends(tmp_path, drawn, declared):
    declared({"narm": {"display_name": "NARM"}, "recgrela": {"display_name": None}})
    figures.training_curves_figure(curves_runs(models=("recgrela", "narm")),
                                   tmp_path / "c.png", tmp_path / "c.svg")
    assert drawn[0].axes[0].get_legend_handles_labels()[1] == ["RecGRELA", "NARM"]


def test_training_curves_skip_a_run_without_history_and_say_so(tmp_path, drawn):
    without = [{"dataset": "ml-1m", "model": "itemknn", "variant": "default", "seed": 1}]
    note = figures.training_curves_figure(curves_runs(), tmp_path / "c.png",
                                          tmp_path / "c.svg", without_history=without)
    assert note == "Not drawn, no history.csv beside metrics.json: itemknn (1 run)."
    assert note in [t.get_text().replace("\n", " ") for t in drawn[0].texts]
    assert drawn[0].axes[0].get_legend_handles_labels()[1] == ["RecGRELA"]
