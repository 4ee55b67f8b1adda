"""Reference solutions of the exercises of meta_optimizer/momentum: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch


def ema_loop(v, eta):
    out, m = [torch.zeros_like(v[0])], torch.zeros_like(v[0])  # m_1 = 0: nothing before the first token
    for t in range(1, v.shape[0]):
        m = eta * (m + v[t - 1])  # m_t = η (m_{t−1} + v_{t−1}) = Σ_{i<t} η^{t−i} v_i
        out.append(m)
    return torch.stack(out)  # (T, d)


def decay_matrix(T, eta):
    lag = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # (T, T): t − i
    return torch.where(lag > 0, eta ** lag.double(), 0.0)  # η^{t−i} strictly below the diagonal


def momentum_gd_dual(W0, x, e, q, lr, eta):
    N = x.shape[0]
    i = torch.arange(1, N + 1, dtype=x.dtype)
    c = (1 - eta ** (N - i + 1)) / (1 - eta)  # c_i = Σ_{s=i}^{N} η^{s−i}: how often e_i x_iᵀ was added
    return W0 @ q + lr * (c * (x @ q)) @ e  # W0 q + lr Σ_i c_i e_i (x_i·q): linear attention, values c_i e_i


def moattn_forward(q, k, v, eta):
    T, dk = q.shape
    scores = (q @ k.T) / dk**0.5  # (T, T): k_j·q_t / √dk
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))  # keys j ≤ t only
    lag = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    D = torch.where(lag > 0, eta ** lag.to(v.dtype), 0.0)  # η^{t−i} for i < t
    return torch.softmax(scores, dim=-1) @ v + D @ v  # Attn(V, K, q_t) + Σ_{i<t} η^{t−i} v_i
