"""Cheap unit and property tests for :mod:`icl_course.gd_transformer` (Part III) — no training here."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from icl_course import gd_transformer as gt
from icl_course import runtime, solvers, tasks
from icl_course.models import LinearSelfAttention, LSAStack
from tests.helpers import CUDA, F64, SEED, batch, gd_pred, rel, stable_lr

NAMES = ("W_Q", "W_K", "W_V", "P")










SHAPES = {"B": st.integers(1, 4), "N": st.integers(1, 12), "dx": st.integers(1, 8), "dy": st.integers(1, 3),
          "seed": SEED}


@given(**SHAPES, K=st.integers(1, 5), frac=st.floats(0.05, 0.95))
def test_constructed_lsa_equals_gd(B, N, dx, dy, seed, K, frac):
    b = batch(B, N, dx, dy, seed)
    lr = stable_lr(b, frac)
    model = gt.constructed_lsa(dx, dy, N, lr, n_layers=K, dtype=F64)
    assert isinstance(model, LSAStack) and len(model.layers) == K
    with torch.no_grad():
        E_out = model(b.tokens())
        pred = gt.readout(E_out, dx)
        fast = gt.predict(model, b.tokens(), dx)
    ref = gd_pred(b, lr, K)
    assert pred.shape == (B, dy) and pred.dtype == F64
    assert rel(pred, ref) < 1e-10
    assert rel(fast, ref) < 1e-10
    assert rel(gt.gd_predict(b, lr, K), ref) < 1e-14


@given(**SHAPES, fracs=st.lists(st.floats(0.05, 0.95), min_size=1, max_size=5))
def test_constructed_lsa_per_layer_lr(B, N, dx, dy, seed, fracs):
    b = batch(B, N, dx, dy, seed)
    lrs = [stable_lr(b, f) for f in fracs]
    model = gt.constructed_lsa(dx, dy, N, lrs, n_layers=len(lrs), dtype=F64)
    with torch.no_grad():
        pred = gt.readout(model(b.tokens()), dx)
    ref = (solvers.gd(b.x, b.y, lrs, steps=len(lrs)) @ b.x_query[..., None])[..., 0]
    assert rel(pred, ref) < 1e-10
    for k, layer in enumerate(model.layers):
        assert gt.effective_lr_over_n(layer, dx) == pytest.approx(lrs[k] / N, rel=1e-14)


@given(**SHAPES, K=st.integers(1, 5), frac=st.floats(0.05, 0.95))
def test_context_y_slots_hold_residuals(B, N, dx, dy, seed, K, frac):
    b = batch(B, N, dx, dy, seed)
    lr = stable_lr(b, frac)
    with torch.no_grad():
        E_out = gt.constructed_lsa(dx, dy, N, lr, n_layers=K, dtype=F64)(b.tokens())
    W = solvers.gd(b.x, b.y, lr, steps=K)
    resid = b.y - b.x @ W.transpose(1, 2)
    scale = float(torch.linalg.vector_norm(b.y))
    assert float(torch.linalg.vector_norm(E_out[:, :N, dx:] - resid)) < 1e-10 * scale
    assert torch.equal(E_out[:, :, :dx], b.tokens()[:, :, :dx])  # x-slots untouched
    q = (W @ b.x_query[..., None])[..., 0]
    assert rel(E_out[:, N, dx:], -q) < 1e-10  # query's y-slot holds −W_K x_q


def test_constructed_lsa_float32_default():
    model = gt.constructed_lsa(3, 1, 4, 0.5)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    b = tasks.sample_linear_regression(5, 4, 3, generator=runtime.generator(0))
    with torch.no_grad():
        pred = gt.readout(model(b.tokens()), 3)
    assert pred.dtype == torch.float32
    torch.testing.assert_close(pred, gt.gd_predict(b, 0.5), rtol=1e-5, atol=1e-6)


def test_constructed_lsa_bad_input():
    b = batch(2, 5, 3, 1, 0)
    model = gt.constructed_lsa(3, 1, 6, 0.5, dtype=F64)
    with pytest.raises(ValueError, match="n_context"):
        model(b.tokens())  # 5 context tokens, built for 6
    with pytest.raises(ValueError, match=r"\blr\b"):
        gt.constructed_lsa(3, 1, 5, [0.1, 0.2], n_layers=3)
    with pytest.raises(ValueError, match=r"\blr\b"):
        gt.constructed_lsa(3, 1, 5, [0.1, 0.2])
    with pytest.raises(ValueError, match="n_layers"):
        gt.constructed_lsa(3, 1, 5, 0.1, n_layers=0)
    with pytest.raises(ValueError, match="n_context"):
        gt.constructed_lsa(3, 1, 0, 0.1)
    with pytest.raises(ValueError, match=r"\blr\b"):
        gt.constructed_lsa(3, 1, 5, -0.1)


def test_readout_sign_and_shape():
    E = torch.arange(2 * 3 * 5, dtype=F64).reshape(2, 3, 5)
    out = gt.readout(E, 3)
    assert out.shape == (2, 2)
    assert torch.equal(out, -E[:, -1, 3:])
    assert torch.equal(gt.readout(E, 4), -E[:, -1, 4:])
    with pytest.raises(ValueError, match="dx"):
        gt.readout(E, 5)  # no y-slot left
    with pytest.raises(ValueError, match="E_out"):
        gt.readout(E[0], 3)


def test_constructed_weight_products_and_effective_lr():
    dx, dy, N, lr = 3, 2, 7, 1.3
    layer = gt.constructed_lsa(dx, dy, N, lr, dtype=F64).layer(0)
    kq, pv = gt.weight_products(layer)
    D = dx + dy
    x_block = torch.zeros(D, D, dtype=F64)
    x_block[:dx, :dx] = torch.eye(dx, dtype=F64)
    y_block = torch.zeros(D, D, dtype=F64)
    y_block[dx:, dx:] = torch.eye(dy, dtype=F64)
    assert torch.equal(kq, x_block)
    torch.testing.assert_close(pv, -(lr / N) * y_block, rtol=1e-15, atol=0)
    assert gt.effective_lr_over_n(layer, dx) == pytest.approx(lr / N, rel=1e-14)
    assert not layer.include_query


def test_weight_products_are_gauge_invariant():
    g = runtime.generator(0)
    m = {n: torch.randn(4, 4, generator=g, dtype=F64) for n in NAMES}
    A = torch.randn(4, 4, generator=g, dtype=F64) + 3 * torch.eye(4, dtype=F64)
    layer = LinearSelfAttention.from_matrices(*(m[n] for n in NAMES))
    gauged = LinearSelfAttention.from_matrices(torch.linalg.inv(A).T @ m["W_Q"], A @ m["W_K"], m["W_V"], m["P"])
    for p, q in zip(gt.weight_products(layer), gt.weight_products(gauged)):
        assert rel(q, p) < 1e-12
    kq, pv = gt.weight_products(layer)
    assert rel(kq, m["W_K"].T @ m["W_Q"]) < 1e-15 and rel(pv, m["P"] @ m["W_V"]) < 1e-15


def _trained_like(dx, dy, N, lr, c, seed):
    """A layer in another gauge: W_Kᵀ W_Q = c·[[I,0],[0,0]], P W_V = −(η/N)/c·[[0,0],[0,I]], random factors."""
    D = dx + dy
    g = runtime.generator(seed)
    A = torch.randn(D, D, generator=g, dtype=F64) + 3 * torch.eye(D, dtype=F64)
    M = torch.randn(D, D, generator=g, dtype=F64) + 3 * torch.eye(D, dtype=F64)
    x_block = torch.zeros(D, D, dtype=F64)
    x_block[:dx, :dx] = torch.eye(dx, dtype=F64)
    y_block = torch.zeros(D, D, dtype=F64)
    y_block[dx:, dx:] = torch.eye(dy, dtype=F64)
    W_K, W_Q = A, torch.linalg.inv(A).T @ (c * x_block)
    W_V, P = M, (-(lr / N) / c * y_block) @ torch.linalg.inv(M)
    return LinearSelfAttention.from_matrices(W_Q, W_K, W_V, P)


@given(**SHAPES, c=st.sampled_from([-3.0, -0.2, 0.05, 1.0, 7.5]), frac=st.floats(0.05, 0.95))
def test_gauge_matched_constructed(B, N, dx, dy, seed, c, frac):
    b = batch(B, N, dx, dy, seed)
    lr = stable_lr(b, frac)
    trained = _trained_like(dx, dy, N, lr, c, seed + 1)
    matched = gt.gauge_matched_constructed(trained, dx, lr / N)
    tokens = b.tokens()
    with torch.no_grad():
        p_matched = gt.readout(LSAStack([matched])(tokens), dx)
        p_trained = gt.readout(LSAStack([trained])(tokens), dx)
        p_constructed = gt.readout(gt.constructed_lsa(dx, dy, N, lr, dtype=F64)(tokens), dx)
    assert rel(p_matched, p_constructed) < 1e-10
    assert rel(p_trained, p_constructed) < 1e-9
    kq, _ = gt.weight_products(matched)
    assert float(torch.diagonal(kq[:dx, :dx]).mean()) == pytest.approx(c, rel=1e-12)  # in the trained gauge
    assert gt.effective_lr_over_n(matched, dx) == pytest.approx(lr / N, rel=1e-12)
    # in the same gauge the products agree entry by entry, so interpolation is meaningful
    for p, q in zip(gt.weight_products(matched), gt.weight_products(trained)):
        assert rel(p, q) < 1e-9
    mix = gt.interpolate_layers(trained, matched, 0.5)
    with torch.no_grad():
        assert rel(gt.readout(LSAStack([mix])(tokens), dx), p_constructed) < 1e-9


@given(**SHAPES, include_query=st.booleans())
def test_interpolate_layers_endpoints(B, N, dx, dy, seed, include_query):
    D = dx + dy
    g = runtime.generator(seed)
    a = LinearSelfAttention.from_matrices(*(0.3 * torch.randn(D, D, generator=g, dtype=F64) for _ in NAMES),
                                          include_query=include_query)
    b = LinearSelfAttention.from_matrices(*(0.3 * torch.randn(D, D, generator=g, dtype=F64) for _ in NAMES),
                                          include_query=include_query)
    E = torch.randn(B, N + 1, D, generator=g, dtype=F64)
    with torch.no_grad():
        assert rel(gt.interpolate_layers(a, b, 0.0)(E), a(E)) < 1e-12
        assert rel(gt.interpolate_layers(a, b, 1.0)(E), b(E)) < 1e-12
        assert rel(a(E), b(E)) > 1e-6  # the two ends really differ
    mid = gt.interpolate_layers(a, b, 0.5)
    assert mid.include_query == include_query
    for pm, pa, pb in zip(gt.weight_products(mid), gt.weight_products(a), gt.weight_products(b)):
        assert rel(pm, (pa + pb) / 2) < 1e-14


def test_product_layer():
    g = runtime.generator(0)
    kq, pv = torch.randn(5, 5, generator=g, dtype=F64), torch.randn(5, 5, generator=g, dtype=F64)
    layer = gt.product_layer(kq, pv, include_query=True)
    assert layer.include_query
    got_kq, got_pv = gt.weight_products(layer)
    assert torch.equal(got_kq, kq) and torch.equal(got_pv, pv)


def test_icl_loss_of_constructed_equals_gd_loss():
    b = batch(64, 6, 4, 2, 3)
    lr = stable_lr(b, 0.5)
    model = gt.constructed_lsa(4, 2, 6, lr, n_layers=2, dtype=F64)
    with torch.no_grad():
        loss = gt.icl_loss(model, (b.tokens(), b.y_query))
    ref = 0.5 * (gd_pred(b, lr, 2) - b.y_query).pow(2).sum(-1).mean()
    assert float(loss) == pytest.approx(float(ref), rel=1e-10)


def test_proposition1_errors():
    errs = gt.proposition1_errors()
    assert sorted(errs) == [1, 2, 3, 4, 5]
    assert all(e < 1e-10 for e in errs.values()), errs


def test_proposition1_breaks_with_query_in_keys():
    errs = gt.proposition1_errors(include_query=True)
    assert errs[1] < 1e-10  # the query's y-slot is 0 before the first layer, so one step is still exact
    assert max(e for K, e in errs.items() if K >= 2) > 1e-3, errs


def test_optimal_lr_monte_carlo():
    eta, se = gt.optimal_lr_monte_carlo(20_000)
    assert 0 < se < 0.1
    assert abs(eta - 200 / 33) < 4 * se




@CUDA
def test_constructed_lsa_runs_on_cuda_tokens():
    b = batch(4, 6, 3, 2, 0)
    model = gt.constructed_lsa(3, 2, 6, 0.3, n_layers=3, dtype=F64).cuda()
    with torch.no_grad():
        pred = gt.predict(model, b.tokens().cuda(), 3)
    assert pred.device.type == "cuda"
    assert rel(pred.cpu(), gd_pred(b, 0.3, 3)) < 1e-10


@CUDA
def test_product_and_interpolated_layers_on_cuda():
    g = runtime.generator(0)
    a = LinearSelfAttention.from_matrices(*(torch.randn(4, 4, generator=g, dtype=F64).cuda() for _ in NAMES))
    b = LinearSelfAttention.from_matrices(*(torch.randn(4, 4, generator=g, dtype=F64).cuda() for _ in NAMES))
    mid = gt.interpolate_layers(a, b, 0.5)
    assert all(p.device.type == "cuda" for p in mid.parameters())


@CUDA
def test_gauge_matched_constructed_on_cuda():
    b = batch(4, 6, 3, 1, 0)
    trained = _trained_like(3, 1, 6, 0.5, -2.0, 1).cuda()
    matched = gt.gauge_matched_constructed(trained, 3, 0.5 / 6)
    assert all(p.device.type == "cuda" for p in matched.parameters())
    with torch.no_grad():
        pred = gt.readout(matched(b.tokens().cuda()), 3)
    assert rel(pred.cpu(), gd_pred(b, 0.5, 1)) < 1e-10


def _softmax_head(c, beta, D, dx, dtype=F64):
    x_block = torch.zeros(D, D, dtype=dtype)
    x_block[:dx, :dx] = torch.eye(dx, dtype=dtype)
    y_block = torch.zeros(D, D, dtype=dtype)
    y_block[dx:, dx:] = torch.eye(D - dx, dtype=dtype)
    # the layer's softmax takes the scores q·k unscaled, as the official code does
    return LinearSelfAttention.from_matrices(c * x_block, x_block, y_block, -beta * y_block,
                                             attention="softmax")


def test_softmax_capacity_is_the_loss_of_the_layer_it_describes():
    """The fitted (c, β) written into real softmax heads give the reported loss; two heads beat one (App. A.9)."""
    b = batch(2000, 10, 10, 1, seed=5, input_range=1.0)
    one, c1, (beta1,) = gt.softmax_heads_capacity(b, heads=1)
    two, c2, (beta_a, beta_b) = gt.softmax_heads_capacity(b, heads=2)
    D = 11
    with torch.no_grad():
        pred1 = gt.predict(LSAStack([_softmax_head(c1, beta1, D, 10)]), b.tokens(), 10)
        pair = gt.ParallelHeads(D, 2, n_context=10, dtype=F64)
        pair.heads[0], pair.heads[1] = _softmax_head(c2, beta_a, D, 10), _softmax_head(-c2, beta_b, D, 10)
        pred2 = gt.predict(pair, b.tokens(), 10)
    assert float(((pred1 - b.y_query) ** 2).mean() / 2) == pytest.approx(one, rel=1e-9)
    assert float(((pred2 - b.y_query) ** 2).mean() / 2) == pytest.approx(two, rel=1e-9)
    gd1 = float(((gd_pred(b, 200 / 33, 1) - b.y_query) ** 2).mean() / 2)
    assert two < 0.8 * one and two < 1.1 * gd1 < one  # one head falls short of GD, two heads reach it
    assert beta_a * beta_b < 0  # the two heads subtract: the zero-order term cancels
    with pytest.raises(ValueError, match="heads"):
        gt.softmax_heads_capacity(b, heads=3)


def test_parallel_heads_add_their_updates_and_train_lsa_builds_them():
    b = batch(4, 10, 10, 1, seed=1)
    pair = gt.ParallelHeads(11, 2, n_context=10, generator=runtime.generator(0), dtype=F64)
    E = b.tokens()
    with torch.no_grad():
        expected = E + (pair.heads[0](E) - E) + (pair.heads[1](E) - E)
        assert rel(pair(E), expected) < 1e-14
        assert rel(pair(E, query_only=True), expected[:, -1:]) < 1e-14
    with pytest.raises(ValueError, match="n_context=10"):
        pair(E[:, 1:])
    with pytest.raises(ValueError, match="heads"):
        gt.train_lsa(steps=1, heads=2, n_layers=2)
    run = gt.train_lsa(steps=2, heads=2, attention="softmax", eval_size=8, batch_size=8, eval_every=1)
    assert isinstance(run.model, gt.ParallelHeads) and len(run.model.heads) == 2
