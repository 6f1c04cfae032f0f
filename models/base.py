"""The one model contract every recommender in this suite follows.

A model is an `nn.Module` built from `(n_items, config)`:

    n_items  number of item ids INCLUDING the padding id 0 (RecBole's `item_num`), so
             scores have `n_items` columns and column 0 is padding (never ranked: the
             evaluator masks it, see recbench/evaluation/metrics.py).
    config   the model file's own `Config` dataclass (reference hyperparameters as defaults).

`forward(item_seq, seq_len) -> hidden [B, L, D]` encodes right-padded item sequences
(item_seq [B, L] long, 0 = padding, seq_len [B] long = number of real items). Everything
after `forward` (read-out, scoring against the tied item embedding, the loss) lives here,
once, so models differ only in their encoders. A model overrides a helper only when its
paper says so (BERT4Rec's cloze loss, LRURec's output bias, Popularity's counts).

`causal = True` promises that hidden[:, t] depends on item_seq[:, :t+1] only (neither a later
item nor the window length moves it: RecBLR's phantom steps break the latter); the engine's
fast `sequence` training mode is allowed for causal models alone. `padding_invariant = True`
promises that more right padding (a longer window) leaves the prediction unchanged; causal
models keep that promise by construction, non-causal ones declare it (BERT4Rec masks padding
keys; the RecGRELA and LinRec references attend over the whole padded window and do not).
tests/test_model_contract.py checks both promises both ways: a false declaration fails.

Shared layers, so that each model file holds only what is its own: `recbole_init`, the
activation table `ACTIVATIONS`, `Dropout` (nn.Dropout with a cheaper mask draw on CPU),
the post-LN `FeedForward` block (and, in
models/linear_attention.py, the chunked causal linear attention).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def recbole_init(module: nn.Module, std: float = 0.02) -> None:
    """RecBole's Transformer-family init, used by the reference models (`model.apply(...)`):
    N(0, std) for every Linear and Embedding weight (the padding row too: it gets no input
    gradient, but it is drawn, and scored as column 0), zero Linear biases, LayerNorm (1, 0).
    Other modules (Conv1d, GRU) keep PyTorch's defaults."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def recbole_init_except(model: nn.Module, kept: list[nn.Module] = ()) -> None:
    """`recbole_init` over every module of `model` except those inside `kept` (blocks that keep
    their own init, e.g. mamba_ssm's inside a Mamba block)."""
    keep = {id(m) for block in kept for m in block.modules()}
    for module in model.modules():
        if id(module) not in keep:
            recbole_init(module)


def recbole_gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU spelled out as RecBole's FeedForward.gelu writes it. The same function
    as F.gelu, rounded differently (the two differ in the last bits of ~1/3 of float32 values)."""
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def recbole_swish(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x) as RecBole's FeedForward.swish writes it (F.silu up to rounding)."""
    return x * torch.sigmoid(x)


# Activations by name, for every model. Where a reference spells a function out instead of
# calling torch's kernel, both spellings are here, so that each model computes what its
# reference computes, bit for bit: RecBole's Transformers (SASRec, BERT4Rec's encoder, LinRec's
# reference) use `gelu_recbole` / `swish`; nn.GELU / nn.SiLU users (LRURec, Mamba4Rec, RecBLR,
# RecGRELA, BERT4Rec's output head) use `gelu` / `silu`.
ACTIVATIONS = {
    "gelu": F.gelu,                  # exact erf GELU, torch's kernel (= nn.GELU())
    "gelu_recbole": recbole_gelu,    # the same, RecBole's spelling
    "relu": F.relu,
    "silu": F.silu,                  # torch's kernel (= nn.SiLU())
    "swish": recbole_swish,          # the same, RecBole's spelling
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}


def get_activation(name: str, owner: str):
    """ACTIVATIONS[name], or an error naming the model and the option (`owner`, e.g.
    'sasrec Config.hidden_act')."""
    if name not in ACTIVATIONS:
        raise ValueError(f"{owner}: unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


# --- dropout with a cheaper mask draw (CPU) ------------------------------------------------
# nn.Dropout on CPU draws one Bernoulli number per element (aten::bernoulli_, serial), then
# divides and multiplies: at p = 0.1 most of the draws say "keep". The same mask, in
# distribution, is the set of dropped positions of a Bernoulli(p) process, whose gaps are
# i.i.d. Geometric(p): position_k = (G_1 + ... + G_k) - 1. Drawing the gaps costs ~p * n
# random numbers instead of n, and applying the mask is one scaling pass plus sparse writes.
# Same distribution (independent Bernoulli(p) drops, kept values scaled by 1 / (1 - p)), same
# guarantees: the draw comes from torch's default generator (torch.manual_seed reproduces it,
# checkpoint's RNG replay redraws it), eval mode is the identity. Used where p <= GAP_MAX_P
# on CPU; elsewhere (p > GAP_MAX_P, where gaps stop saving draws, and CUDA, whose fused
# dropout kernel is already one pass) it is F.dropout itself.
GAP_MAX_P = 0.25


def geometric_gaps(m: int, p: float, device=None) -> torch.Tensor:
    """m i.i.d. Geometric(p) draws on {1, 2, ...} (int64), by inversion: 1 + floor(log(V) /
    log(1 - p)) with V = 1 - U uniform on (0, 1], U float64 (so the tail is cut only beyond
    probability 2^-53). The distribution of torch's `geometric_`, at half its cost on a CPU
    (its sampler is scalar; rand, log1p and the division here are vectorised)."""
    u = torch.rand(m, dtype=torch.float64, device=device)                     # [0, 1)
    return torch.log1p(u.neg_()).div_(math.log1p(-p)).floor_().add_(1).long()


def dropped_positions(n: int, p: float, device=None) -> torch.Tensor:
    """Sorted flat indices in [0, n) of the elements a Bernoulli(p) process drops: cumulative
    sums of Geometric(p) gaps (int64, exact), drawn in blocks until the process passes n."""
    parts, end = [], -1
    while end < n - 1:
        left = n - 1 - end
        # enough gaps for the rest of the window with overwhelming probability (mean + 8 sd);
        # if not, the loop draws another block, so the result never depends on this guess
        m = int(left * p + 8 * math.sqrt(left * p * (1 - p)) + 16)
        pos = geometric_gaps(m, p, device).cumsum_(0).add_(end)                # (m,) increasing
        parts.append(pos)
        end = int(pos[-1])
    pos = torch.cat(parts) if len(parts) > 1 else parts[0]
    return pos[: int(torch.searchsorted(pos, n))]                             # those < n


def _masked(t: torch.Tensor, scale: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """t * scale, written row-major whatever t's layout (an FFT's output, a transpose's
    gradient), with the elements at `positions` (flat indices in that order) set to 0."""
    out = torch.mul(t, scale, out=torch.empty_like(t, memory_format=torch.contiguous_format))
    out.view(-1).index_fill_(0, positions, 0)
    return out


class _GapDropout(torch.autograd.Function):
    """y = x * scale with the elements at `positions` set to 0; dy/dx the same mask."""

    @staticmethod
    def forward(ctx, x, p: float):
        positions = dropped_positions(x.numel(), p, x.device)
        # the scale as F.dropout computes it: 1 / (1 - p) in x's dtype
        scale = torch.ones((), dtype=x.dtype).div_(1 - p)
        ctx.save_for_backward(positions, scale)
        return _masked(x, scale, positions)

    @staticmethod
    def backward(ctx, grad):
        positions, scale = ctx.saved_tensors
        return _masked(grad, scale, positions), None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """F.dropout(x, p, training) in distribution; cheaper mask draw on CPU (see above)."""
    if not training or p == 0.0:
        return x
    if x.is_cuda or p > GAP_MAX_P:
        return F.dropout(x, p, training)
    return _GapDropout.apply(x, p)


class Dropout(nn.Dropout):
    """nn.Dropout (same module, same state dict) that masks with `dropout` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def linear_halves(layer: nn.Linear, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """layer(x).chunk(2, dim=-1), as two products with the two halves of its weight (and
    bias): the same values, and a cheaper backward. The backward of chunk concatenates the
    halves' gradients into a new (..., 2 * out) tensor before one product; here each half's
    gradient goes through its own product and the two input gradients are added (issue 28:
    43-57 -> 28-30 ms a Mamba block's in_proj forward + backward at batch 256, L 200, two
    threads)."""
    biases = (None, None) if layer.bias is None else layer.bias.chunk(2)
    first, second = (F.linear(x, w, b) for w, b in zip(layer.weight.chunk(2), biases))
    return first, second


class FeedForward(nn.Module):
    """The post-LN position-wise feed-forward block of every post-LN model here:

        LN(x + Dropout(W_2 act(W_1 x)))                    inner_dropout=False (RecBole: SASRec,
                                                           BERT4Rec, LinRec)
        LN(x + Dropout(W_2 Dropout(act(W_1 x))))           inner_dropout=True (the LRURec,
                                                           Mamba4Rec and RecBLR reference code)

    W_1: hidden_size -> inner_size, W_2: back. One Dropout module serves both places (as in the
    references). `activation` is a key of ACTIVATIONS.
    """

    def __init__(self, hidden_size: int, inner_size: int, dropout: float, *, activation: str,
                 layer_norm_eps: float, inner_dropout: bool):
        super().__init__()
        self.act = get_activation(activation, "FeedForward")
        self.inner_dropout = inner_dropout
        self.w_1 = nn.Linear(hidden_size, inner_size)
        self.w_2 = nn.Linear(inner_size, hidden_size)
        self.dropout = Dropout(dropout)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = self.act(self.w_1(x))                                  # (B, L, inner_size)
        if self.inner_dropout:
            inner = self.dropout(inner)
        return self.layer_norm(x + self.dropout(self.w_2(inner)))      # (B, L, hidden_size)


def check_window(model: str, length: int, max_len: int) -> None:
    """A learned position table has `max_len` rows (the engine sets it to the run's max_len):
    a longer window is an error that says so, not an index error deep in an embedding."""
    if length > max_len:
        raise ValueError(f"{model}: sequence length {length} exceeds Config.max_len {max_len} "
                         "(rows of the learned position table)")


class SequentialRecommender(nn.Module):
    causal: bool = False       # hidden[:, t] sees items <= t only
    learned: bool = True       # False: fitted from counts (Popularity), no optimiser
    # how tables and legends name the model (None: recbench/names.py's spelling, else the
    # registry name); the workflow hands it to the reporting rules (recbench/workflow.py)
    display_name: str | None = None

    @property
    def padding_invariant(self) -> bool:
        return self.causal

    def __init__(self, n_items: int, config):
        super().__init__()
        self.n_items = n_items
        self.config = config

    # --- the encoder: each model implements this -------------------------------------
    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- shared read-out, scoring and loss ---------------------------------------------
    def output_item_embeddings(self) -> torch.Tensor:
        """[n_items, D] item vectors that hidden states are scored against (tied)."""
        return self.item_embedding.weight[: self.n_items]

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., D] -> logits [..., n_items] (dot product with the tied embedding)."""
        return hidden @ self.output_item_embeddings().T

    @staticmethod
    def gather_last(hidden: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """hidden [B, L, D] -> hidden at the last real position `seq_len - 1`, [B, D]."""
        return hidden[torch.arange(hidden.size(0), device=hidden.device), seq_len - 1]

    def full_sort_predict(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Scores of every item as the next one: [B, n_items]."""
        return self.score(self.gather_last(self.forward(item_seq, seq_len), seq_len))

    def calculate_loss(self, item_seq, seq_len, target, reduction: str = "mean") -> torch.Tensor:
        """`prefix` mode: one next-item CE term per example (RecBole's CE over all items)."""
        return F.cross_entropy(self.full_sort_predict(item_seq, seq_len), target, reduction=reduction)

    def sequence_loss(self, item_seq, seq_len, targets, reduction: str = "mean") -> torch.Tensor:
        """`sequence` mode: a next-item CE term at every position whose target is not 0.

        targets [B, L]: targets[b, t] is the item after item_seq[b, t] (0 = no term). For a
        causal model this is the same sum of terms as `calculate_loss` over every prefix.
        """
        hidden = self.forward(item_seq, seq_len)                 # (B, L, D)
        has_target = targets > 0
        logits = self.score(hidden[has_target])                  # (N, n_items)
        return F.cross_entropy(logits, targets[has_target], reduction=reduction)
