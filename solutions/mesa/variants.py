"""Reference solutions of the exercises of mesa/variants: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch

from icl_course import mesa


def history_stack(obs, k):
    B, T, p = obs.shape
    padded = torch.cat([obs.new_zeros(B, k - 1, p), obs], dim=1)  # o_(2−k) … o_0 are zeros
    return torch.cat([padded[:, k - 1 - i:k - 1 - i + T] for i in range(k)], dim=-1)  # [o_t, o_(t−1), …]


def contracting_w(eigenvalues, U):
    return U @ torch.diag_embed(eigenvalues) @ torch.linalg.inv(U)  # W = U diag(λ) U⁻¹, (B, D, D)


def history_ridge_mesa(obs, k, lam):
    z = mesa.history_tokens(obs, k)  # (B, T, k·p)
    z_prev = torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], dim=1)  # z_(t−1), z_0 = 0
    out = mesa.mesa_attention(z[:, None], z_prev[:, None], obs[:, None], lam)  # one head: q = z_t, k = z_(t−1), v = o_t
    return out[:, 0]  # ô_(t+1), (B, T, p)


def zero_loss(eigenvalues, t, noise_std):
    lam2 = eigenvalues**2  # W symmetric: E‖W^m x‖² = Σ_i λ_i^(2m) E x_i² for isotropic x
    signal = (lam2**t).sum(-1) / 3  # s_(t+1) = W^t s_1 + …, E s_1 s_1ᵀ = I/3
    noise = noise_std**2 * sum((lam2**m).sum(-1) for m in range(t))  # Σ_(m<t) W^m ε_(t−m)
    return 0.5 * (signal + noise)  # (B,)
