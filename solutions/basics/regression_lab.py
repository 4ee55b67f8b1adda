"""Reference solutions of the exercises of basics/regression_lab: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import math

import torch


def posterior_mean_weights(x, y, noise_std, teacher_scale):
    lam = noise_std**2 / teacher_scale**2  # λ* = σ²/s²: noise variance over prior variance
    eye = torch.eye(x.shape[2], dtype=x.dtype)
    gram = x.transpose(1, 2) @ x + lam * eye  # (B, dx, dx) = XᵀX + λ* I
    return torch.linalg.solve(gram, x.transpose(1, 2) @ y).transpose(1, 2)  # (B, dy, dx)


def ls_test_error(dx, n, noise_std, teacher_scale):
    d, var, s2 = dx, noise_std**2, teacher_scale**2
    if n >= d + 2:  # E (XᵀX)⁻¹ = I / (N − d − 1): every coordinate of w is estimated, with noise
        return var * (1 + d / (n - d - 1))
    if n <= d - 2:  # the part of w outside the N inputs' span is lost; E (XXᵀ)⁻¹ = I / (d − N − 1)
        return s2 * (d - n) + var * (1 + n / (d - n - 1))
    return math.inf  # N ∈ {d − 1, d, d + 1}: the expectation diverges


def gd_step_from_zero(x, y, lr):
    n = x.shape[1]
    grad = -(y.transpose(1, 2) @ x) / n  # ∇L(0) = −(1/N) Σ_i y_i x_iᵀ for L(W) = 1/(2N) Σ_i ‖W x_i − y_i‖²
    return -lr * grad  # (B, dy, dx)


def knn_predict(x, y, x_query, k):
    k = min(k, x.shape[1])  # fewer demonstrations than k: use them all
    dist = ((x - x_query[:, None, :]) ** 2).sum(-1)  # (B, N): squared distance of each demonstration to the query
    idx = dist.topk(k, dim=1, largest=False).indices  # (B, k)
    return torch.gather(y, 1, idx[..., None].expand(-1, -1, y.shape[2])).mean(1)  # (B, dy)
