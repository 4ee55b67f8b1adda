"""Part IV against the official implementation (golden data in icl_course/data, see VONOSWALD2023_GOLDEN.md).

Each test would catch a convention: the token layout, the unnormalised causal sum with the newest pair, the ridge λ
(not 1/λ) and the pairs j < t of the official baseline, the head layout of linear attention, the input mask and
activation clip of the official block, and the official read-out of the one-step algorithm.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from icl_course import data, mesa, solvers, tasks
from icl_course.causal import CausalSelfAttention, CausalStack


@pytest.fixture(scope="module")
def g():
    return {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
            for k, v in data.load_golden("vonoswald2023").items()}


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def _lsa(g, prefix="lsa", n_heads=2):
    return CausalSelfAttention.from_matrices(*(g[f"{prefix}_W_{n}"] for n in "qkvo"), n_heads=n_heads)


def test_tokens_and_targets(g):
    inputs = g["states"][:, :-1]
    assert torch.equal(tasks.mesa_tokens(inputs), g["tokens"])
    assert torch.equal(g["states"][:, 1:], g["targets"])
    W = g["W_star"].double()
    assert torch.allclose(W @ W.transpose(1, 2), torch.eye(10, dtype=torch.float64).expand(16, 10, 10), atol=1e-5)


def test_gd_baseline_is_the_unnormalised_causal_sum_with_the_newest_pair(g):
    inputs = g["states"][:, :-1]
    eta = float(g["gd_eta"])
    assert _rel(solvers.causal_gd_predict(inputs, eta), g["gd_preds"]) < 1e-5
    t = torch.arange(1, 51, dtype=torch.float32)[None, :, None]
    assert _rel(solvers.causal_gd_predict(inputs, eta) / t, g["gd_preds"]) > 0.5  # a 1/t would be caught
    ours = mesa.per_step_loss(solvers.causal_gd_predict(inputs, eta), g["targets"])
    assert _rel(ours, g["gd_loss_per_t"]) < 1e-5


def test_least_squares_baseline_uses_pairs_before_t_and_the_ridge_lambda(g):
    inputs = g["states"][:, :-1].double()
    lam = float(g["lsq_lambda"])
    ours = mesa.per_step_loss(solvers.causal_ridge_predict(inputs, lam, "j<t"), g["targets"].double())
    assert _rel(ours, g["lsq_loss_per_t"].double()) < 1e-4  # per-position losses (float32 inverse upstream)
    inclusive = mesa.per_step_loss(solvers.causal_ridge_predict(inputs, lam, "j<=t"), g["targets"].double())
    assert _rel(inclusive, g["lsq_loss_per_t"].double()) > 0.1  # the other convention would be caught
    inverse = mesa.per_step_loss(solvers.causal_ridge_predict(inputs, 1 / lam, "j<t"), g["targets"].double())
    assert _rel(inverse, g["lsq_loss_per_t"].double()) > 0.1  # so would 1/λ


def test_mesa_layer_with_least_squares_weights_is_ridge_on_pairs_up_to_t(g):
    inputs = g["states"][:, :-1].double()
    ours = mesa.per_step_loss(solvers.causal_ridge_predict(inputs, 1e-3, "j<=t"), g["targets"].double())
    assert _rel(ours, g["mesa_ls_loss_per_t"].double()) < 1e-4


def test_causal_linear_attention_matches_the_official_layer(g):
    layer = _lsa(g)
    with torch.no_grad():
        out = layer(g["tokens"]) - g["tokens"]  # the official module has no residual
        scores = layer.scores(g["tokens"])
    assert _rel(out, g["lsa_out"]) < 1e-5
    assert _rel(scores, g["lsa_attn_logits"]) < 1e-5
    wrong_heads = CausalSelfAttention.from_matrices(*(g[f"lsa_W_{n}"] for n in "qkvo"), n_heads=4)
    with torch.no_grad():
        assert _rel(wrong_heads(g["tokens"]) - g["tokens"], g["lsa_out"]) > 0.1  # head layout would be caught


def test_official_block_masks_the_residual_and_clips(g):
    model = CausalStack([_lsa(g)], masked_dims=20, clip=1.5)
    with torch.no_grad():
        out = model(g["tokens"])
    assert _rel(out, g["lsa_masked_model_out"]) < 1e-5
    unmasked = CausalStack([_lsa(g)], clip=1.5)
    with torch.no_grad():
        assert _rel(unmasked(g["tokens"]), g["lsa_masked_model_out"]) > 0.01


def test_constructed_gd_layer_is_the_official_one(g):
    ours = mesa.constructed_causal_lsa(10, float(g["gd_eta"])).layers[0].matrices()
    for n, name in zip("qkvo", ("W_Q", "W_K", "W_V", "W_O")):
        assert torch.allclose(ours[name], g[f"lsa_gd_W_{n}"]), name
    with torch.no_grad():
        out = _lsa(g, "lsa_gd", n_heads=1)(g["tokens"]) - g["tokens"]
    assert _rel(out, g["lsa_gd_out"]) < 1e-5


def test_structured_layer_reproduces_the_official_revalg(g):
    model = CausalStack([_lsa(g)], masked_dims=20)
    revalg = mesa.revalg_model(model, 10)
    with torch.no_grad():
        pred = revalg(g["tokens"])[..., :10]
    assert _rel(pred, g["revalg_preds"]) < 1e-5
    # the official 12 parameters are our block means at (key s_{j−1}/s_j, query s_t/s_{t−1}) and (out, value)
    means = [(mesa.block_means(kq, 10), mesa.block_means(pv, 10)) for kq, pv in mesa.head_products(model.layers[0])]
    d = [float(kq[r, c]) for kq, _ in means for (r, c) in ((2, 2), (3, 2), (2, 3), (3, 3))]
    p = [float(pv[0, c]) for _, pv in means for c in (2, 3)]
    assert np.allclose(d + p, g["revalg_params"].numpy(), rtol=1e-4, atol=1e-7)


def _official_mesa(g, W, lambdas, method="recurrent"):
    """The official MultiHeadMesa through our mesa_attention: queries W_q e, regression *targets* from k_proj, *inputs*
    from v_proj, ridge λ = 1/lambdas, head outputs interleaved (index k·H + h) before o_proj."""
    E = g["tokens"].double()
    H = lambdas.shape[0]
    B, T, _ = E.shape
    split = lambda M: (E @ M.T).view(B, T, H, -1).transpose(1, 2)  # (B, H, T, k)
    q, y, u = split(W["q"]), split(W["k"]), split(W["v"])
    out = mesa.mesa_attention(q, u, y, 1 / lambdas, method=method)  # (B, H, T, k)
    return out.permute(0, 2, 3, 1).reshape(B, T, -1) @ W["o"].T  # interleaved heads


@pytest.mark.parametrize("method", ["recurrent", "solve"])
def test_mesa_attention_reproduces_the_official_mesa_layer(g, method):
    W = {n: g[f"mesa_W_{n}"].double() for n in "qkvo"}
    lambdas = g["mesa_lambdas"].double()
    with torch.no_grad():
        out = _official_mesa(g, W, lambdas, method)
    assert _rel(out, g["mesa_out"].double()) < 1e-4
    with torch.no_grad():  # the ridge λ itself instead of the official 1/λ would be caught
        assert _rel(_official_mesa(g, W, 1 / lambdas, method), g["mesa_out"].double()) > 1e-3


def test_memory_light_gradient_matches_the_official_autodiff(g):
    W = {n: g[f"mesa_W_{n}"].double().requires_grad_(True) for n in "qkvo"}
    lambdas = g["mesa_lambdas"].double().requires_grad_(True)
    out = _official_mesa(g, W, lambdas)
    loss = 0.5 * ((out[..., :10] - g["targets"].double()) ** 2).sum(-1).mean()
    assert abs(float(loss.detach()) / float(g["mesa_grad_loss"]) - 1) < 1e-4
    loss.backward()
    for n in "qkvo":
        assert _rel(W[n].grad, g[f"mesa_grad_autodiff_W_{n}"].double()) < 1e-3, n
    assert _rel(lambdas.grad, g["mesa_grad_autodiff_lambdas"].double()) < 1e-3
