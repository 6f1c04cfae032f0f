"""Chunked causal linear attention: the one computation that LinRec's and RecGRELA's causal
options share (models/linrec.py `linear_attention`, models/recgrela.py `rela_attention`).

For per-head query, key and value rows (any feature maps, rotations and scalings are the
caller's, applied before or after):

    out_i = sum_{j <= i} (q_i . k_j) v_j  =  q_i S_i,   S_i = sum_{j <= i} k_j^T v_j

Computed in chunks of C positions (chunk c holds positions cC .. cC + C - 1):

    1. inside chunk c, exactly:   out_i += sum_{j in c, j <= i} (q_i . k_j) v_j
                                  a lower-triangular (C x C) score matrix per chunk
    2. from earlier chunks:       out_i += q_i S^<c,  S^<c = sum_{c' < c} K_c'^T V_c'
                                  the EXCLUSIVE prefix sum of per-chunk (d x e) states

so memory is O(L C + (L / C) d e) per head and no (L x L) matrix is ever built. C = L is the
masked quadratic form, C = 1 a plain recurrence over positions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            chunk_size: int) -> torch.Tensor:
    """sum_{j <= i} (q_i . k_j) v_j, per head.  q, k (B, L, H, d), v (B, L, H, e) -> (B, L, H, e).

    Positions-first layout (RecGRELA's natural one; LinRec transposes its (B, H, L, d) views).
    C = chunk_size even when L < C: a short window is padded to one whole chunk, so that the
    sums run in the same order whatever L is.
    """
    B, L, H, d = q.shape
    e = v.size(-1)
    C = chunk_size
    n = -(-L // C)                                                     # number of chunks
    pad = n * C - L
    if pad:  # zero keys and values at the end add nothing; padded query rows are dropped
        q, k, v = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (q, k, v))  # (B, n*C, H, .)
    heads_first = lambda t: t.view(B, n, C, H, t.size(-1)).permute(0, 3, 1, 2, 4)
    q, k, v = heads_first(q), heads_first(k), heads_first(v)           # (B, H, n, C, d|e)
    # 1. inside a chunk: exact lower-triangular scores, j <= i (in place: matmul keeps its
    #    inputs for backward, not its output)
    scores = (q @ k.transpose(-1, -2)).tril_()                         # (B, H, n, C, C)
    out = scores @ v                                                   # (B, H, n, C, e)
    # 2. earlier chunks: S^<c = sum_{c' < c} K_c'^T V_c' (exclusive prefix sum, exact zeros
    #    for the first chunk)
    states = k.transpose(-1, -2) @ v                                   # (B, H, n, d, e)
    earlier = torch.cat([torch.zeros_like(states[:, :, :1]),
                         states[:, :, :-1].cumsum(dim=2)], dim=2)      # (B, H, n, d, e)
    out = out + q @ earlier                                            # (B, H, n, C, e)
    return out.permute(0, 2, 3, 1, 4).reshape(B, n * C, H, e)[:, :L]   # (B, L, H, e)
