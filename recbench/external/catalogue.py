"""The authors' code the suite runs beside its own (TBI805/RecGRELA, MIT): the pinned commit,
which of their models it runs and under what name. Names only, so that tables and the cost grid
can read them without importing a model (recbench/external/authors_code.py runs the code)."""

COMMIT = "608a39b1da8fbd855f4099226e0f6d9fb890e83b"
REPOSITORY = "https://github.com/TBI805/RecGRELA"
# our model name -> the reference's class (= its file model/<Class>.py and config/<Class>.yaml)
MODELS = {"recgrela": "RecGRELA", "linrec": "LinRec", "lrurec": "LRURec",
          "eulerformer": "EulerFormer", "recblr": "RecBLR"}
NEEDS_CUDA = {"mamba4rec": "Mamba4Rec", "echomamba4rec": "EchoMamba4Rec", "sigma": "SIGMA"}
PREFIX = "reference-"           # reference-recgrela: the authors' RecGRELA in tables and cells
