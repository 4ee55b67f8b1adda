"""Reference solutions of the exercises of mesa/causal_gd: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch


def build_tokens(states):
    prev = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)  # s_{t-1}, with s_0 = 0
    return torch.cat([torch.zeros_like(states), states, states, prev], dim=-1)  # (0, s_t, s_t, s_{t-1})


def gd_on_sequence(states, lr):
    prev = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)  # inputs s_{j-1}
    scores = (states @ prev.transpose(1, 2)).tril()  # (B, T, T): s_t · s_{j-1} for j ≤ t
    return lr * scores @ states  # ŝ_{t+1} = η Σ_{j≤t} (s_{j-1}·s_t) s_j


def causal_gd_weights(dim, lr):
    read = lambda slot: torch.eye(dim, 4 * dim, dtype=torch.float64).roll(slot * dim, dims=1)  # (D, 4D)
    W_Q, W_K, W_V = read(2), read(3), read(2)  # queries s_t, keys s_{t-1}, values s_t
    W_O = lr * read(0).T  # write η × the sum into the zero slot
    return W_Q, W_K, W_V, W_O


def read_sequence_step_size(W_Q, W_K, W_V, W_O, dim):
    D = dim
    KQ, PV = W_K.T @ W_Q, W_O @ W_V  # score e_jᵀ KQ e_t; value PV e_j
    key_prev_query_cur = torch.diagonal(KQ[3 * D:, 2 * D:3 * D]).mean()  # s_{j-1} · s_t
    value_cur_to_out = torch.diagonal(PV[:D, 2 * D:3 * D]).mean()  # s_j into the zero slot
    return float(key_prev_query_cur * value_cur_to_out)
