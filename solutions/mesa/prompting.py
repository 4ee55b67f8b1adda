"""Reference solutions of the exercises of mesa/prompting: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch

from icl_course import solvers


def interleave_prompt(x, y):
    B, K, D = x.shape
    return torch.stack([x, y], dim=2).reshape(B, 2 * K, D)  # x_1, y_1, x_2, y_2, …


def task_pair_gd(x, y, lr):
    seen = (x @ x.transpose(1, 2)).tril(-1)  # (B, K, K): x_j · x_i for the examples j < i seen before i
    return lr * seen @ y  # ŷ_i = η Σ_{j<i} (x_j · x_i) y_j, (B, K, D)


def spurious_limit_loss(dim, x_range, scale):
    # y = a W x: the fit tends to (a W r²/3)((1 + a²) r²/3)⁻¹ = W a/(1 + a²), so ŷ − y = −a³/(1 + a²) W x
    gap = scale**3 / (1 + scale**2)
    return 0.5 * gap**2 * dim * x_range**2 / 3


def prompted_ridge(x, y, lam):
    B, K, D = x.shape
    states = torch.stack([x, y], dim=2).reshape(B, 2 * K, D)  # [x_1, y_1, x_2, y_2, …]
    pred = solvers.causal_ridge_predict(states, lam)  # ridge on every pair (s_(j−1), s_j), j ≤ t, at each t
    return pred[:, 0::2]  # read at the x_i: the prediction of the token after x_i, which is y_i
