"""How a model looks in every figure: one colour and one marker each (`model_style`), line
styles for a model's option sets and a figure's batch sizes, the colour of the paper's values."""
from __future__ import annotations

import seaborn as sns

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


def model_style(model: str) -> dict:
    """{'color', 'marker'} of a model, the same in every figure; models outside MODEL_ORDER
    get a colour and marker from their name (stable across runs and figures)."""
    colours = (sns.color_palette("tab10") + sns.color_palette("Dark2")
               + sns.color_palette("Set1"))          # 27: one each for MODEL_ORDER, and spares
    if model in MODEL_ORDER:
        i = MODEL_ORDER.index(model)
    else:
        i = len(MODEL_ORDER) + sum(map(ord, model)) % (len(colours) - len(MODEL_ORDER))
    return {"color": colours[i % len(colours)], "marker": MARKERS[i % len(MARKERS)]}
