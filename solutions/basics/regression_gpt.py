"""Reference solutions of the exercises of basics/regression_gpt: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch


def interleave(x, y):
    B, N, d = x.shape
    z = torch.zeros(B, 2 * N, d + 1, dtype=x.dtype)
    z[:, 0::2, :d] = x  # token 2i: (x_i, 0)
    z[:, 1::2, d:] = y  # token 2i+1: (0, y_i)
    return z


def prefix_error(outputs, y):
    pred = outputs[:, 0::2, 0]  # (B, N): the output at input token 2i predicts y_i from i demonstrations
    return ((pred - y[..., 0]) ** 2).mean(0) / 4  # divided by d = 4


def bayes_error(x, x_query, noise_std, teacher_scale):
    d = x.shape[-1]
    lam = noise_std**2 / teacher_scale**2
    A = x.transpose(1, 2) @ x + lam * torch.eye(d, dtype=x.dtype)  # (B, d, d)
    quad = (x_query[:, None, :] @ torch.linalg.solve(A, x_query[..., None]))[:, 0, 0]  # x_qᵀ A⁻¹ x_q
    return noise_std**2 * (1 + quad)


def paired_difference_sem(err_a, err_b):
    diff = err_a - err_b  # (n_tasks,): both learners on the same tasks
    return diff.mean(), diff.std() / diff.numel() ** 0.5
