"""Reference solutions of the exercises of mesa/family: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch


def delta_step(S, k, v, beta):
    error = v - (S @ k[..., None])[..., 0]  # v − S k: what the memory gets wrong about this pair, (B, dv)
    return S + beta * error[..., :, None] * k[..., None, :]  # S + β (v − S k) kᵀ, (B, dv, dk)


def delta_memory(keys, values, beta):
    S = torch.zeros(values.shape[1], keys.shape[1], dtype=keys.dtype)  # (dv, dk), the empty memory
    for k, v in zip(keys, values):  # one pair at a time, in order
        S = S + beta * torch.outer(v - S @ k, k)  # write the error of the current memory
    return S


def cg_solve(A, b, steps):
    x, r = torch.zeros_like(b), b.clone()  # x_0 = 0, residual r_0 = b − A x_0
    p, rr = r.clone(), (r * r).sum(-1, keepdim=True)
    for _ in range(steps):
        Ap = (A @ p[..., None])[..., 0]
        a = rr / (p * Ap).sum(-1, keepdim=True)  # exact line search along p
        x, r = x + a * p, r - a * Ap
        rr_new = (r * r).sum(-1, keepdim=True)
        p, rr = r + rr_new / rr * p, rr_new  # new direction, A-conjugate to the previous ones
    return x


def gated_delta_step(S, k, v, alpha, beta):
    kept = S - beta * (S @ k[..., None]) * k[..., None, :]  # S (I − β k kᵀ): erase what k points at, (B, dv, dk)
    return alpha * kept + beta * v[..., :, None] * k[..., None, :]  # decay the old memory, then write β v kᵀ
