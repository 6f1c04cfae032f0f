"""Explicit, slow float64 building blocks shared by the model tests: a Linear, a LayerNorm and
the Mamba block (models/mamba4rec.py MambaBlock) on one user, one position at a time."""
import torch

f64 = torch.float64

sigmoid = lambda x: 1 / (1 + torch.exp(-x))
silu = lambda x: x * sigmoid(x)
softplus = lambda x: torch.log1p(torch.exp(x))


def lin(m, x):
    return m.weight @ x + (m.bias if m.bias is not None else 0)


def ln(m, x):
    mu = x.mean()
    var = ((x - mu) ** 2).mean()
    return (x - mu) / torch.sqrt(var + m.eps) * m.weight + m.bias


def slow_mamba(block, xs):
    """The Mamba block on one user's positions xs (list of (d,) vectors), step by step."""
    E, N, R, k = block.d_inner, block.d_state, block.dt_rank, block.d_conv
    A = -torch.exp(block.A_log)                                        # (E, N)
    proj = [block.in_proj.weight @ x for x in xs]
    u_in, z = [p[:E] for p in proj], [p[E:] for p in proj]
    h = torch.zeros(E, N, dtype=f64)
    out = []
    for t in range(len(xs)):
        conv = block.conv1d.bias.clone()                               # causal depthwise conv
        for j in range(k):                                             # tap j sees t - (k-1) + j
            if t - (k - 1) + j >= 0:
                conv = conv + block.conv1d.weight[:, 0, j] * u_in[t - (k - 1) + j]
        u = silu(conv)                                                 # (E,)
        dbc = block.x_proj.weight @ u
        dt, B, C = dbc[:R], dbc[R:R + N], dbc[R + N:]
        delta = softplus(block.dt_proj.weight @ dt + block.dt_proj.bias)   # (E,)
        for e in range(E):
            for n in range(N):
                h[e, n] = torch.exp(delta[e] * A[e, n]) * h[e, n] + delta[e] * B[n] * u[e]
        y = (h * C).sum(-1) + block.D * u
        out.append(block.out_proj.weight @ (y * silu(z[t])))
    return out
