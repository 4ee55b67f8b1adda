"""Reference solutions of the exercises of gd_transformer/preconditioned: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch


def preconditioned_step(x, y, precond):
    N = x.shape[1]
    return y.transpose(1, 2) @ x @ precond / N  # W_1 = (1/N) Σ_i y_i x_iᵀ Γ, shape (B, dy, dx)


def optimal_preconditioner(cov, n_context, noise_std, teacher_scale):
    eye = torch.eye(cov.shape[0], dtype=cov.dtype)
    ridge = (torch.trace(cov) + noise_std**2 / teacher_scale**2) / n_context  # the noise acts like a ridge term
    return torch.linalg.inv((1 + 1 / n_context) * cov + ridge * eye)


def preconditioner_from_weights(W_Q, W_K, W_V, P, dx, n_context):
    kq, pv = W_K.T @ W_Q, P @ W_V
    return -n_context * torch.diagonal(pv[dx:, dx:]).mean() * kq[:dx, :dx]
