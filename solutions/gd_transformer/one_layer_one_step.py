"""Reference solutions of the exercises of gd_transformer/one_layer_one_step: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch

from icl_course import gd_transformer as gt


def gd_step(x, y, lr):
    N = x.shape[1]
    grad = -(y.transpose(1, 2) @ x) / N  # ∇L(W) at W = 0, shape (B, dy, dx)
    return -lr * grad  # W_1 = W_0 − η ∇L(W_0) with W_0 = 0


def proposition1_weights(dx, dy, n_context, lr):
    D = dx + dy
    W_Q = torch.zeros(D, D, dtype=torch.float64)
    W_Q[:dx, :dx] = torch.eye(dx)  # queries and keys read the x-part of a token
    W_K = W_Q.clone()
    W_V = torch.zeros(D, D, dtype=torch.float64)
    W_V[dx:, dx:] = -torch.eye(dy)  # values carry −y
    P = torch.zeros(D, D, dtype=torch.float64)
    P[dx:, dx:] = lr / n_context * torch.eye(dy, dtype=torch.float64)  # write η/N times the sum into the y-slot
    return W_Q, W_K, W_V, P


def optimal_step_size(d, n, input_range=1.0):
    var, mu4 = input_range**2 / 12, input_range**4 / 80  # moments of U(−r/2, r/2)
    e_tr = d * var  # E tr Σ̂
    e_tr2 = d * (d - 1) * var**2 / n + d * (mu4 + (n - 1) * var**2) / n  # E tr Σ̂²
    return e_tr / e_tr2


def read_step_size(W_Q, W_K, W_V, P, dx):
    kq, pv = W_K.T @ W_Q, P @ W_V  # the only identifiable products
    return float(-torch.diagonal(pv[dx:, dx:]).mean() * torch.diagonal(kq[:dx, :dx]).mean())


def implicit_model(model, x, y, x_query):
    xq = x_query.detach().clone().requires_grad_(True)
    pred = gt.predict(model, gt.make_tokens(x, y, xq), x.shape[-1])  # (B, dy)
    grads = [torch.autograd.grad(pred[:, j].sum(), xq, retain_graph=True)[0] for j in range(pred.shape[1])]
    return torch.stack(grads, dim=1)  # (B, dy, dx): ∂ŷ_j / ∂x_q
