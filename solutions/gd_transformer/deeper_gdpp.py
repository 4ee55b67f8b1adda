"""Reference solutions of the exercises of gd_transformer/deeper_gdpp: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch


def gdpp_weights(dx, dy, n_context, lr, gamma):
    D, eye_x, eye_y = dx + dy, torch.eye(dx, dtype=torch.float64), torch.eye(dy, dtype=torch.float64)
    W_Q = torch.zeros(D, D, dtype=torch.float64)
    W_Q[:dx, :dx] = eye_x  # scores x_iᵀ x_j, as in Proposition 1
    W_K, W_V, P = W_Q.clone(), torch.zeros(D, D, dtype=torch.float64), torch.zeros(D, D, dtype=torch.float64)
    W_V[:dx, :dx], W_V[dx:, dx:] = eye_x, -eye_y  # values carry (x_i, −y_i)
    P[:dx, :dx], P[dx:, dx:] = -gamma * eye_x, lr / n_context * eye_y  # x moves by −γ XᵀX x, y by one GD step
    return W_Q, W_K, W_V, P


def curvature_correction(x, gamma):
    cov = x.transpose(1, 2) @ x  # (B, dx, dx): the unnormalised XᵀX
    return x - gamma * x @ cov  # every x_i ↦ (I − γ XᵀX) x_i


def read_gamma(W_Q, W_K, W_V, P, dx):
    kq, pv = W_K.T @ W_Q, P @ W_V
    return float(-torch.diagonal(pv[:dx, :dx]).mean() * torch.diagonal(kq[:dx, :dx]).mean())


def gdpp_predict(x, y, x_query, lr, gamma, steps):
    N = x.shape[1]
    r, pred = y, torch.zeros_like(y[:, 0])  # y-slots (residuals) and the prediction −(query's y-slot)
    for _ in range(steps):
        pred = pred + lr / N * ((x @ x_query[..., None]).transpose(1, 2) @ r)[:, 0]  # uses pre-layer x's
        r = r - lr / N * (x @ x.transpose(1, 2)) @ r
        cov = x.transpose(1, 2) @ x
        x, x_query = x - gamma * x @ cov, x_query - gamma * (cov @ x_query[..., None])[..., 0]
    return pred
