"""Reference solutions of the exercises of gd_transformer/standard_tokens: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch


def to_standard_tokens(x, y, x_query):
    B, N, dx = x.shape
    dy, T = y.shape[2], 2 * N + 1
    out = torch.zeros(B, T, dx + dy + T, dtype=x.dtype)
    out[:, 0:2 * N:2, :dx] = x  # input tokens (x_i, 0, p)
    out[:, 1:2 * N:2, dx:dx + dy] = y  # target tokens (0, y_i, p)
    out[:, -1, :dx] = x_query  # the query (x_q, 0, p) comes last
    out[:, :, dx + dy:] = torch.eye(T, dtype=x.dtype)  # one-hot positions
    return out


def input_copy_weights(dx, dy, n_context, beta):
    T = 2 * n_context + 1
    D, p0 = dx + dy + T, dx + dy
    W_Q = torch.zeros(D, D, dtype=torch.float64)
    W_Q[p0:, p0:] = beta * torch.eye(T, dtype=torch.float64)  # the query side: β × own position
    W_K = torch.zeros(D, D, dtype=torch.float64)
    W_K[p0 + 1:, p0:D - 1] = torch.eye(T - 1, dtype=torch.float64)  # key at s answers position s + 1
    x_block = torch.zeros(D, D, dtype=torch.float64)
    x_block[:dx, :dx] = torch.eye(dx, dtype=torch.float64)  # copy the x-slot only
    return W_Q, W_K, x_block, x_block.clone()


def pair_attention(attn):
    n = attn.shape[1] // 2  # attn: (2N+1 tokens, 2N keys)
    i = torch.arange(n)
    return float(attn[2 * i + 1, 2 * i].mean()), float(attn[2 * i, 2 * i + 1].mean())  # y reads x, x reads y
