"""Reference solutions of the exercises of meta_optimizer/dual_form: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch


def dual_form_predict(W0, X, Y, lr, x):
    errors = -(lr / X.shape[0]) * (X @ W0.T - Y)  # e_i = −η ∂L/∂(W0 x_i) for L = 1/(2N) Σ ||W x_i − y_i||², (N, d_out)
    scores = x @ X.T  # attention scores x_i · x, (Tq, N)
    return x @ W0.T + scores @ errors  # W0 x + Σ_i e_i (x_i · x), (Tq, d_out)


def delta_w_icl(k_demo, v_demo, k_text, v_text):
    W_zsl = v_text.T @ k_text  # Σ_text v_j k_jᵀ, (d_v, d_k)
    dW_icl = v_demo.T @ k_demo  # Σ_demo v_j k_jᵀ, (d_v, d_k)
    return W_zsl, dW_icl


def k_step_dual_form(W0, X, Y, lr, steps, x):
    N, W, keys, values = X.shape[0], W0, [], []
    for _ in range(steps):
        errors = -(lr / N) * (X @ W.T - Y)  # this step's error signals, at this step's weights, (N, d_out)
        W = W + errors.T @ X  # the primal update, only to compute the next step's errors
        keys.append(X)
        values.append(errors)
    K, V = torch.cat(keys), torch.cat(values)  # the memory, step by step: (steps·N, d_in), (steps·N, d_out)
    return x @ W0.T + (x @ K.T) @ V, K, V  # W0 x + Σ_t Σ_i e_i^(t) (x_i · x), and the memory


def simaou_from_outputs(zsl, icl, ft):
    def unit(h):  # each row L2-normalised first: rescaling one run's outputs, or one row, then changes nothing
        return h / h.norm(dim=-1, keepdim=True)

    du, dv = unit(icl) - unit(zsl), unit(ft) - unit(zsl)  # the ICL and FT updates, (n_ex, d)
    cos = (du * dv).sum(-1) / (du.norm(dim=-1) * dv.norm(dim=-1))  # (n_ex,)
    return float(cos.mean())


def rec2ftp_by_hand(zsl, icl, ft):
    fixed_by_ft = ~zsl & ft  # examples fine-tuning fixed
    return 100.0 * float((fixed_by_ft & icl).sum()) / float(fixed_by_ft.sum())  # share ICL fixed too, in percent
