"""Reference solutions of the exercises of mesa/mesa_layer: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch


def sherman_morrison_step(R, k):
    u = (R @ k[..., None])[..., 0]  # (B, d) = R k (R is symmetric, so kᵀ R = uᵀ)
    return R - u[..., :, None] * u[..., None, :] / (1 + (k * u).sum(-1))[..., None, None]  # R − R k kᵀ R / (1 + kᵀ R k)


def mesa_output_at(q, k, v, lam, t):
    K, V = k[: t + 1], v[: t + 1]  # the pairs t' ≤ t (t is 0-based), (t+1, dk) and (t+1, dv)
    A = K.T @ K + lam * torch.eye(k.shape[1], dtype=k.dtype)  # Σ k kᵀ + λ I, (dk, dk)
    return V.T @ (K @ torch.linalg.solve(A, q[t]))  # (Σ v kᵀ)(Σ k kᵀ + λI)⁻¹ q_t, (dv,)


def ridge_next_state(states, lam):
    prev = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)  # s_{j−1} (s_0 = 0), (B, T, D)
    A = torch.cumsum(prev[..., :, None] * prev[..., None, :], dim=1)  # Σ_{j≤t} s_{j−1} s_{j−1}ᵀ, (B, T, D, D)
    C = torch.cumsum(states[..., :, None] * prev[..., None, :], dim=1)  # Σ_{j≤t} s_j s_{j−1}ᵀ, (B, T, D, D)
    eye = torch.eye(states.shape[-1], dtype=states.dtype)
    return (C @ torch.linalg.solve(A + lam * eye, states[..., None]))[..., 0]  # W_t s_t, (B, T, D)


def ridge_from_official(lambdas):
    if not bool((lambdas > 0).all()):  # R_0 = λ_s I must be positive definite: otherwise no ridge problem is solved
        raise ValueError(f"lambdas must be > 0, got {lambdas.tolist()}")
    return 1.0 / lambdas  # R_0 = λ_s I = (ridge λ · I)⁻¹, so the ridge λ is 1/λ_s
