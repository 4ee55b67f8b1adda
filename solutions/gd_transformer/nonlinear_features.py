"""Reference solutions of the exercises of gd_transformer/nonlinear_features: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch


def sine_gd_predict(x, y, x_query, lr):
    phi = torch.cat([torch.sin(x), torch.cos(x)], dim=-1)  # (B, N, 2): the features that make the task linear
    phi_q = torch.cat([torch.sin(x_query), torch.cos(x_query)], dim=-1)  # (B, 2)
    w = lr * (y.transpose(1, 2) @ phi) / x.shape[1]  # one GD step from w = 0: (η/N) Σ_i y_i φ(x_i)ᵀ, (B, 1, 2)
    return (w @ phi_q[..., None])[..., 0]  # ŷ = w φ(x_q), (B, 1)


def kernel_routes(fa, fb, kq, pv, n_context):
    F = fa.shape[1]  # tokens are (m(x), y): features first, the target last
    value = -n_context * pv[F, F] * (fa @ kq[:F, :F] @ fb.T)  # y in the value, features in key and query
    key = -n_context * torch.outer(fa @ pv[F, :F], fb @ kq[F, :F])  # y in the key, features in the value
    return value, key


def feature_gd_layer(features, n_context, lr):
    D = features + 1  # tokens (m(x), y)
    W_Q = torch.zeros(D, D, dtype=torch.float64)
    W_Q[:features, :features] = torch.eye(features)  # keys and queries read the features
    W_K = W_Q.clone()
    W_V = torch.zeros(D, D, dtype=torch.float64)
    W_V[features, features] = -1.0  # values carry −y
    P = torch.zeros(D, D, dtype=torch.float64)
    P[features, features] = lr / n_context  # η/N into the y-slot
    return W_Q, W_K, W_V, P
