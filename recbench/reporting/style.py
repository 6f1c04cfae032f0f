"""How a model looks in every figure: one colour and one marker each (`model_style`), line
styles for a model's option sets and a figure's batch sizes, the colour of the paper's values.

The paper's models (MODEL_ORDER) have fixed slots. Every other model takes a free slot, given
out in sorted order of the names among the figure's models and the workflow's (those a
reporting rule declares: recbench/names.py `declare`), so that no two models of a figure share
a colour and marker, and a model keeps its look across the figures of one workflow."""
from __future__ import annotations

from collections.abc import Iterable

import seaborn as sns

from recbench.names import declared_models

# The fixed order that assigns colours and markers: the paper's models (each followed by its
# authors' code run by RecBole, reference-<model>), then the others.
MODEL_ORDER = ["recgrela", "reference-recgrela", "linrec", "reference-linrec", "lrurec",
               "reference-lrurec", "mamba4rec", "echomamba4rec", "eulerformer",
               "reference-eulerformer", "recblr", "reference-recblr", "sigma", "sasrec",
               "bert4rec", "gru4rec", "popularity", "recbole-sasrec", "recbole-gru4rec"]
VARIANT_LINESTYLES = ["-", ":", "-."]   # a model's 1st, 2nd, 3rd option set ([recompute]: "--")
BATCH_LINESTYLES = [(0, (6, 2, 1, 2, 1, 2)), (0, (1, 3))]   # the 2nd, 3rd batch size of a figure
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "d", "8"]
PAPER_COLOUR = "0.55"
# 27 colours: one each for MODEL_ORDER, and 8 spares
PALETTE = sns.color_palette("tab10") + sns.color_palette("Dark2") + sns.color_palette("Set1")


def _style(slot: int) -> dict:
    # slots are distinct integers; (slot % 27, slot % 14) differ for any two slots below 378,
    # so two models never share both colour and marker
    return {"color": PALETTE[slot % len(PALETTE)], "marker": MARKERS[slot % len(MARKERS)]}


def model_styles(models: Iterable[str]) -> dict[str, dict]:
    """{model: {'color', 'marker'}} for `models` and the declared ones, no two alike: a paper
    model its fixed slot; the others, in sorted order, the spare colours first, then the slots
    of paper models absent here, then further slots (a colour again, with another marker)."""
    models = set(models) | set(declared_models())
    slots = {m: MODEL_ORDER.index(m) for m in models if m in MODEL_ORDER}
    free = ([i for i in range(len(MODEL_ORDER), len(PALETTE))]
            + [i for i in range(len(MODEL_ORDER)) if i not in slots.values()])
    others = sorted(models - set(slots))
    free += range(len(PALETTE), len(PALETTE) + max(0, len(others) - len(free)))
    slots |= dict(zip(others, free))
    return {m: _style(slot) for m, slot in slots.items()}


def model_style(model: str, among: Iterable[str] = ()) -> dict:
    """{'color', 'marker'} of a model: fixed for the paper's models; for another, its slot
    among `among` (the figure's models) and the declared ones (model_styles)."""
    return model_styles([model, *among])[model]
