"""The authors' code (TBI805/RecGRELA at commit 608a39b, MIT) beside ours: find a checkout,
check it against the committed hashes, import a model class from it, and wrap it in this
suite's model contract for the cost grid.

Nothing of the authors' code is copied into this project: a checkout is read at run time.

    where     $RECGRELA_REFERENCE (a checkout you already have), else resources/RecGRELA (what
              rule reference_code fetches), else ../shared/ref/RecGRELA beside the clone.
    check     config/reference_code.sha256: sha256 of every file the suite reads at that commit;
              a checkout that differs is refused, naming the file.
    import    `reference_class("RecGRELA")` imports model/RecGRELA.py. What it imports but a CPU
              machine lacks gets a stand-in, and only when the real package is missing:
                causal_conv1d   `causal_conv1d_fn(x, w, b, activation)`: the depthwise causal
                                conv + SiLU that the CUDA kernel computes. This is the CPU conv
                                fix: the reference's own non-CUDA branch returns [B, D, L]
                                where [B, L, D] is added (it crashes for L != D) and omits the
                                SiLU (docs/fidelity.md), so the kernel's path is the one run;
                timm            DropPath: per-sample stochastic depth, scaled by 1/keep (ours);
                parallel_scan   RecBLR's Triton scan h_t = a_t h_{t-1} + x_t as a loop over time;
                einops, turtle  imported but unused on the CPU path;
                matplotlib      imported but unused by layers_LinRec.py (RecBole's env lacks it);
                recbole         (the cost grid runs in the suite's env, without RecBole) the
                                part of SequentialRecommender the models use, and BPRLoss.
    contract  `ReferenceModel` (models/base.py's calculate_loss / full_sort_predict signatures)
              feeds the reference's RecBole-style methods a dict in place of an Interaction.

Models that need CUDA kernels with no CPU path (mamba_ssm: Mamba4Rec, EchoMamba4Rec, SIGMA)
are listed in NEEDS_CUDA and never imported here.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from models.recgrela import DropPath
from recbench.external.catalogue import COMMIT, MODELS, NEEDS_CUDA, PREFIX, REPOSITORY  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "config" / "reference_code.sha256"
FETCHED = ROOT / "resources" / "RecGRELA"          # rule reference_code writes it here
# keys of the reference configs that are not model options: the data, training and evaluation
# settings, which the suite sets itself (the same for ours and theirs)
NOT_MODEL_KEYS = {
    "gpu_id", "log_wandb", "dataset", "MAX_ITEM_LIST_LENGTH", "USER_ID_FIELD", "ITEM_ID_FIELD",
    "TIME_FIELD", "load_col", "user_inter_num_interval", "item_inter_num_interval", "epochs",
    "train_batch_size", "learner", "learning_rate", "eval_step", "stopping_step",
    "train_neg_sample_args", "metrics", "valid_metric", "eval_batch_size", "weight_decay", "topk",
    "metric_decimal_place", "eval_args", "seed", "reproducibility", "show_progress"}


class ReferenceError(RuntimeError):
    """No checkout, or one that is not the pinned commit."""


def manifest() -> dict[str, str]:
    """{relative path: sha256} of config/reference_code.sha256."""
    lines = [s.split() for s in MANIFEST.read_text().splitlines() if s and not s.startswith("#")]
    return {path: digest for digest, path in lines}


def verify(checkout) -> Path:
    """`checkout` if every file of the manifest is there with its hash; else ReferenceError
    naming the first file that is missing or differs."""
    checkout = Path(checkout)
    for path, digest in manifest().items():
        file = checkout / path
        if not file.is_file():
            raise ReferenceError(f"{checkout}: {path} is missing; expected a checkout of "
                                 f"{REPOSITORY} at {COMMIT[:7]}")
        if hashlib.sha256(file.read_bytes()).hexdigest() != digest:
            raise ReferenceError(f"{file}: sha256 differs from {MANIFEST.name}; expected "
                                 f"{REPOSITORY} at commit {COMMIT[:7]}")
    return checkout


def candidates() -> list[Path]:
    """Where a checkout is looked for, in order."""
    given = os.environ.get("RECGRELA_REFERENCE")
    if given:
        return [Path(given)]
    return [FETCHED, ROOT.parent / "shared" / "ref" / "RecGRELA"]


def find_checkout() -> Path | None:
    """The first candidate that holds the reference code (checked), or None."""
    for path in candidates():
        if (path / "model" / "RecGRELA.py").is_file():
            return verify(path)
    return None


class _RecBoleLoader(yaml.SafeLoader):
    """YAML as RecBole's Config reads it: `1e-12` is a float (YAML 1.1 wants `1.0e-12`)."""


_RecBoleLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?)$"),
    list("-+0123456789."))


def reference_options(checkout, class_name: str) -> dict:
    """The model options of the reference config config/<class_name>.yaml (data, training and
    evaluation keys left out: the suite sets those)."""
    text = (Path(checkout) / "config" / f"{class_name}.yaml").read_text()
    options = yaml.load(text, Loader=_RecBoleLoader)
    return {k: v for k, v in options.items() if k not in NOT_MODEL_KEYS}


# --- stand-ins for what a CPU machine lacks ------------------------------------------------

def causal_conv1d_fn(x, weight, bias=None, activation=None):
    """What causal_conv1d's kernel computes: x [B, D, L], weight [D, K] -> causal depthwise conv
    (left-padded by K-1) [B, D, L], then SiLU if asked."""
    y = F.conv1d(F.pad(x, (weight.shape[1] - 1, 0)), weight.unsqueeze(1), bias,
                 groups=weight.shape[0])
    return F.silu(y) if activation in ("silu", "swish") else y


def parallel_scan(gates, tokens):
    """h_t = a_t * h_{t-1} + x_t over the last axis (gates, tokens [B, E, L]), h_0 = 0."""
    h, out = torch.zeros_like(tokens[..., 0]), []
    for t in range(tokens.shape[-1]):
        h = gates[..., t] * h + tokens[..., t]
        out.append(h)
    return torch.stack(out, dim=-1)


class RecBoleSequential(nn.Module):
    """The part of RecBole 1.2's SequentialRecommender that the reference models use."""

    def __init__(self, config, dataset):
        super().__init__()
        self.ITEM_ID, self.ITEM_SEQ, self.ITEM_SEQ_LEN = "item_id", "item_id_list", "item_length"
        self.POS_ITEM_ID, self.NEG_ITEM_ID = "item_id", "neg_item_id"
        self.max_seq_length = config["MAX_ITEM_LIST_LENGTH"]
        self.n_items = dataset.num(self.ITEM_ID)
        self.device = config["device"]

    def gather_indexes(self, output, gather_index):
        return output[torch.arange(output.shape[0], device=output.device), gather_index]

    def get_attention_mask(self, item_seq, bidirectional=False):
        mask = (item_seq != 0).unsqueeze(1).unsqueeze(2)                 # (B, 1, 1, L)
        if not bidirectional:
            mask = torch.tril(mask.expand((-1, -1, item_seq.size(-1), -1)))
        return torch.where(mask, 0.0, -10000.0)


class _Config(dict):
    """RecBole's Config as the reference reads it: config["key"] and config.key, None when
    absent."""

    def __getitem__(self, key):
        return self.get(key)

    __getattr__ = __getitem__


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _stand_ins(class_name: str) -> dict[str, types.ModuleType | None]:
    """{module name: stand-in} for each package the reference imports that is missing here
    (None: the import fails, so the file takes its own fallback)."""
    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        return m

    found = {}
    if not (_has("causal_conv1d") and torch.cuda.is_available()):
        # RecGRELA's own fallback is broken (module docstring); RecBLR's is a correct conv
        found["causal_conv1d"] = module("causal_conv1d", causal_conv1d_fn=causal_conv1d_fn) \
            if class_name == "RecGRELA" else None
    if not _has("timm"):
        found |= {"timm": module("timm"), "timm.models": module("timm.models"),
                  "timm.models.layers": module("timm.models.layers", DropPath=DropPath)}
    if not (_has("triton") and torch.cuda.is_available()):
        found["parallel_scan"] = module("parallel_scan", parallel_scan=parallel_scan)
    for unused in ("einops", "turtle"):
        if not _has(unused):
            found[unused] = module(unused, rearrange=None, forward=None)
    if not _has("matplotlib"):
        found |= {"matplotlib": module("matplotlib"),
                  "matplotlib.pyplot": module("matplotlib.pyplot")}
    if not _has("recbole"):
        found |= {"recbole": module("recbole"), "recbole.model": module("recbole.model"),
                  "recbole.model.abstract_recommender": module(
                      "recbole.model.abstract_recommender",
                      SequentialRecommender=RecBoleSequential),
                  "recbole.model.loss": module("recbole.model.loss", BPRLoss=object),
                  "recbole.utils": module("recbole.utils", FeatureType=None,
                                          FeatureSource=None)}
    return found


@contextmanager
def _importable(checkout: Path, class_name: str):
    """The checkout on sys.path (its files import `model.layers...` and `parallel_scan`) and
    the stand-ins in sys.modules, both undone afterwards (the imported classes keep what they
    bound); the checkout's own modules are dropped too, so two checkouts never mix."""
    stand_ins = _stand_ins(class_name)
    before = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update(stand_ins)
    sys.path.insert(0, str(checkout))
    try:
        yield
    finally:
        sys.path.remove(str(checkout))
        for name in [n for n in sys.modules if n.split(".")[0] in ("model", "parallel_scan")]:
            del sys.modules[name]
        for name, module in before.items():
            sys.modules.pop(name, None)
            if module is not None:
                sys.modules[name] = module


def reference_class(class_name: str, checkout=None) -> type:
    """The class `class_name` of model/<class_name>.py in the (checked) checkout."""
    checkout = Path(checkout) if checkout else find_checkout()
    if checkout is None:
        raise ReferenceError(f"no checkout of {REPOSITORY} found (looked in "
                             f"{[str(p) for p in candidates()]}); run `snakemake "
                             f"resources/RecGRELA/.verified` or set RECGRELA_REFERENCE")
    verify(checkout)
    with _importable(checkout, class_name):
        module = importlib.import_module(f"model.{class_name}")
    return getattr(module, class_name)


class ReferenceModel(nn.Module):
    """A reference model behind models/base.py's training and scoring signatures, for the cost
    grid: `reference-recgrela` etc., built with the reference config's options."""

    learned, causal = True, False

    def __init__(self, name: str, n_items: int, max_len: int, checkout=None, device="cpu"):
        super().__init__()
        checkout = Path(checkout) if checkout else find_checkout()
        class_name = MODELS[name.removeprefix(PREFIX)]
        cls = reference_class(class_name, checkout)
        config = _Config(reference_options(checkout, class_name), MAX_ITEM_LIST_LENGTH=max_len,
                         device=torch.device(device), USER_ID_FIELD="user_id",
                         ITEM_ID_FIELD="item_id")
        dataset = types.SimpleNamespace(n_items=n_items, num=lambda field: n_items)
        self.inner = cls(config, dataset)

    def calculate_loss(self, item_seq, seq_len, target):
        return self.inner.calculate_loss({"item_id_list": item_seq, "item_length": seq_len,
                                          "item_id": target})

    def full_sort_predict(self, item_seq, seq_len):
        return self.inner.full_sort_predict({"item_id_list": item_seq, "item_length": seq_len})


# --- rule reference_code: a checked copy under resources/ ------------------------------------

def archive_url(commit: str = COMMIT) -> str:
    return f"{REPOSITORY.replace('github.com', 'codeload.github.com')}/tar.gz/{commit}"


def install(dest=FETCHED, source=None, retries: int = 3) -> Path:
    """Copy the manifest's files of the pinned commit into `dest`, checked file by file, from
    `source` (a checkout: $RECGRELA_REFERENCE) or GitHub's archive of the commit. `dest`
    appears complete or not at all (built beside it, renamed when checked)."""
    import tarfile
    import tempfile
    import time
    import urllib.request

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".reference-") as tmp:
        staged = Path(tmp) / "RecGRELA"
        if source:
            for path in manifest():
                (staged / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(source) / path, staged / path)
        else:
            archive = Path(tmp) / "archive.tar.gz"
            for attempt in range(1, retries + 1):
                try:
                    urllib.request.urlretrieve(archive_url(), archive)
                    break
                except OSError as err:
                    if attempt == retries:
                        raise ReferenceError(f"cannot download {archive_url()} ({err}); offline, "
                                             f"set RECGRELA_REFERENCE to a checkout") from None
                    time.sleep(2 ** attempt)
            wanted = set(manifest())
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    path = member.name.split("/", 1)[-1]       # drop "RecGRELA-<commit>/"
                    if member.isfile() and path in wanted:
                        (staged / path).parent.mkdir(parents=True, exist_ok=True)
                        (staged / path).write_bytes(tar.extractfile(member).read())
        verify(staged)
        shutil.rmtree(dest, ignore_errors=True)
        staged.rename(dest)
    return dest
