"""Reference solutions of the exercises of mesa/deeper: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch


def gd_steps_next_state(states, lrs):
    prev = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)  # s_{j−1}, with s_0 = 0
    A = torch.cumsum(prev[..., :, None] * prev[..., None, :], dim=1)  # Σ_{j≤t} s_{j−1} s_{j−1}ᵀ, (B, T, D, D)
    C = torch.cumsum(states[..., :, None] * prev[..., None, :], dim=1)  # Σ_{j≤t} s_j s_{j−1}ᵀ, (B, T, D, D)
    W = torch.zeros_like(C)
    for eta in lrs:
        W = W + eta * (C - W @ A)  # W ← W − η ∇L_t(W), ∇L_t(W) = W A − C
    return (W @ states[..., None])[..., 0]  # ŝ_{t+1} = W_t s_t, (B, T, D)


def neumann_weights(A, C, eta, K):
    D = A.shape[0]
    M = torch.eye(D, dtype=A.dtype) - eta * A  # I − η A
    term, total = torch.eye(D, dtype=A.dtype), torch.zeros_like(A)
    for _ in range(K):  # Σ_{i<K} (I − η A)^i
        total, term = total + term, term @ M
    return C @ (eta * total)  # W_K = C η Σ_{i<K} (I − ηA)^i, (D, D)


def structured_blocks(M, dim):
    S = M.shape[0] // dim
    blocks = M.reshape(S, dim, S, dim).permute(0, 2, 1, 3)  # (S, S, dim, dim): block (a, b) = M[a·dim:, b·dim:]
    means = torch.diagonal(blocks, dim1=-2, dim2=-1).mean(-1)  # (S, S): the mean of each block's diagonal
    return torch.kron(means, torch.eye(dim, dtype=M.dtype))  # each block → (its diagonal mean) · I, (S·dim, S·dim)


def preconditioned_query(states, lam, t):
    prev = torch.cat([torch.zeros_like(states[:1]), states[:-1]])  # s_{j−1} with s_0 = 0, (T, D)
    A = prev[: t + 1].T @ prev[: t + 1]  # Σ_{j≤t} s_{j−1} s_{j−1}ᵀ: the keys seen at (0-based) position t
    return torch.linalg.solve(A + lam * torch.eye(states.shape[1], dtype=states.dtype), states[t])  # (D,)
