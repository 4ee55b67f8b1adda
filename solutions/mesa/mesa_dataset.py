"""Reference solutions of the exercises of mesa/mesa_dataset: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch

from icl_course import mesa


def shift_rotation(dim, base=100.0):
    n = dim // 2
    w = torch.exp(-torch.log(torch.tensor(base, dtype=torch.float64)) * torch.arange(n, dtype=torch.float64) / n)
    c, s = torch.diag(torch.cos(w)), torch.diag(torch.sin(w))
    # p = (sin tω, cos tω): sin((t+1)ω) = sin tω cos ω + cos tω sin ω, cos((t+1)ω) = cos tω cos ω − sin tω sin ω
    return torch.cat([torch.cat([c, s], dim=1), torch.cat([-s, c], dim=1)], dim=0)  # (dim, dim)


def copy_attention(T, dim, beta):
    p = mesa.positional_codes(T + 1, dim, dtype=torch.float64)  # p_0 … p_T
    scores = beta * p[:T] @ p[1:].T  # score of query t for key j: β p_t · p_{j+1}, largest at j = t − 1
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)  # (T, T), rows sum to 1


def gd_on_copied(states, copied, lr):
    scores = (states @ copied.transpose(1, 2)).tril()  # (B, T, T): query s_t · key c_j for j ≤ t
    return lr * scores @ states  # ŝ_{t+1} = η Σ_{j≤t} (c_j · s_t) s_j, (B, T, D)


def uniform_copy(states):
    t = torch.arange(1, states.shape[1] + 1, dtype=states.dtype)[None, :, None]
    return torch.cumsum(states, dim=1) / t  # (1/t) Σ_{j≤t} s_j, (B, T, D)
