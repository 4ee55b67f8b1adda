"""Exercises of Part III, chapter "Non-linear regression: GD on learned features".

Each reference solution below is the exact code the chapter shows in its solution block (a test keeps them
identical); each stub is what the student edition shows instead.
"""

from __future__ import annotations

import torch

from ... import gd_transformer as gt
from ... import runtime, solvers, tasks
from ...models import LinearSelfAttention, LSAStack
from .. import exercise
from ._common import PART, _expect


# ---------------------------------------------------------------- 13. one GD step on the ideal sine features
@exercise(part=PART, name="sine_gd_predict", title="One GD step on the ideal sine features", difficulty="★☆☆",
          minutes=5,
          hint="a sin(x + φ) = (a cos φ) sin x + (a sin φ) cos x: one GD step from 0 on features (sin x, cos x) gives "
               "ŷ = (η/N) Σ_i y_i cos(x_i − x_q).",
          stub='''def sine_gd_predict(x, y, x_query, lr):
    """Prediction (B, 1) of one GD step from 0 on features (sin x, cos x): x (B, N, 1), y (B, N, 1), x_query (B, 1)."""
    # YOUR CODE HERE
    raise NotImplementedError("sine_gd_predict")
''')
def check_sine_gd_predict(fn) -> None:
    b = tasks.sample_sine_regression(6, 9, generator=runtime.generator(18), dtype=torch.float64)
    got = _expect(fn(b.x, b.y, b.x_query, 1.8), (6, 1), "sine_gd_predict(x, y, x_query, lr)")
    ref = solvers.predict(solvers.gd(tasks.sine_basis(b.x), b.y, 1.8), tasks.sine_basis(b.x_query))
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12), "ŷ differs from one GD step on (sin x, cos x)"
    kernel = (b.y[..., 0] * torch.cos(b.x[..., 0] - b.x_query)).sum(1, keepdim=True) * 1.8 / 9
    assert torch.allclose(got, kernel, rtol=1e-9, atol=1e-12), "the kernel form (η/N) Σ y_i cos(x_i − x_q) must agree"


# ---------------------------------------------------------------- 14. the two routes of a feature layer
@exercise(part=PART, name="kernel_routes",
          title="Two routes from the targets to the prediction", difficulty="★☆☆",
          minutes=10,
          hint="Token e_i = (m_i, y_i), query (m_q, 0). The layer adds −Σ_i (V e_i)_y (e_iᵀ K e_q) with V = P W_V, "
               "K = W_Kᵀ W_Q. Expand both factors and keep the terms with exactly one y_i.",
          stub='''def kernel_routes(fa, fb, kq, pv, n_context):
    """Value-route and key-route kernels (n, m) for features fa (n, F), fb (m, F) and products
    kq = W_Kᵀ W_Q, pv = P W_V ((F+1, F+1), tokens (m(x), y)): ŷ = (1/N) Σ_i y_i k(x_i, x_q) + terms without y_i."""
    # YOUR CODE HERE
    raise NotImplementedError("kernel_routes")
''')
def check_kernel_routes(fn) -> None:
    from ...models import FeatureLSA, FeatureMap

    gen = runtime.generator(19)
    model = FeatureLSA(FeatureMap(1, 10, 4, generator=gen, dtype=torch.float64),
                       LSAStack([LinearSelfAttention(5, init_scale=5.0, generator=gen, dtype=torch.float64)],
                                n_context=7))
    a = torch.linspace(-5, 5, 6, dtype=torch.float64)[:, None]
    b = torch.linspace(-3, 4, 4, dtype=torch.float64)[:, None]
    kq, pv = gt.weight_products(model.lsa.layer(0))
    with torch.no_grad():
        fa, fb = model.feature_map(a), model.feature_map(b)
    got = fn(fa, fb, kq, pv, 7)
    assert isinstance(got, (tuple, list)) and len(got) == 2, "return the two kernels (value, key)"
    for k, route in zip(got, ("value", "key")):
        _expect(k, (6, 4), f"the {route}-route kernel")
        assert torch.allclose(k, gt.effective_kernel(model, a, b, route), rtol=1e-9, atol=1e-12), (
            f"the {route}-route kernel differs; check which factor holds y_i and the factor −N")
# ---------------------------------------------------------------- 17. Proposition 2's layer
@exercise(part=PART, name="feature_gd_layer", title="The layer that does GD on learned features", difficulty="★☆☆",
          minutes=5,
          hint="Proposition 1 does not care what the inputs are: use its weights with the F features in place of x.",
          stub='''def feature_gd_layer(features, n_context, lr):
    """(W_Q, W_K, W_V, P), float64 (F+1, F+1), such that any feature map followed by this layer predicts like one
    GD step from 0 (step size lr) on the feature map's output layer."""
    # YOUR CODE HERE
    raise NotImplementedError("feature_gd_layer")
''')
def check_feature_gd_layer(fn) -> None:
    from ...models import FeatureLSA, FeatureMap

    for seed, (F, N, lr) in ((23, (6, 10, 1.8)), (24, (3, 7, 0.6))):
        gen = runtime.generator(seed)
        fmap = FeatureMap(1, 12, F, generator=gen, dtype=torch.float64)
        mats = fn(F, N, lr)
        assert isinstance(mats, (tuple, list)) and len(mats) == 4, "return the four matrices (W_Q, W_K, W_V, P)"
        mats = [_expect(m, (F + 1, F + 1), name).to(torch.float64) for m, name in zip(mats, ("W_Q", "W_K", "W_V", "P"))]
        model = FeatureLSA(fmap, LSAStack([LinearSelfAttention.from_matrices(*mats)], n_context=N))
        b = tasks.sample_sine_regression(5, N, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            got = gt.predict(model, b.tokens(), 1)
            ref = gt.predict(gt.FeatureGD(fmap, lr=lr), b.tokens(), 1)
        assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12), (
            f"the model differs from MLP + one GD step for F={F}, N={N}, lr={lr}")
