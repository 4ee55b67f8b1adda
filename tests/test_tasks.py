"""Unit and property tests for :mod:`icl_course.tasks`: sampling in-context regression tasks and token layout."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from icl_course import runtime, tasks
from icl_course.tasks import input_moments, make_tokens, sample_linear_regression
from tests.helpers import SEED, rel

B_ = st.integers(1, 4)
N_ = st.integers(1, 12)
DX = st.integers(1, 8)
DY = st.integers(1, 3)




# ---------------------------------------------------------------------------------------------------------------
# sample_linear_regression
# ---------------------------------------------------------------------------------------------------------------


@given(B=B_, N=N_, dx=DX, dy=DY, seed=SEED, dtype=st.sampled_from([torch.float32, torch.float64]))
def test_sample_shapes_dtypes_devices(B, N, dx, dy, seed, dtype):
    b = sample_linear_regression(B, N, dx, dy, generator=runtime.generator(seed), dtype=dtype, device="cpu")
    assert isinstance(b, tasks.RegressionBatch)
    assert b.x.shape == (B, N, dx)
    assert b.y.shape == (B, N, dy)
    assert b.x_query.shape == (B, dx)
    assert b.y_query.shape == (B, dy)
    assert b.w.shape == (B, dy, dx)
    assert b.dx == dx
    for t in b:
        assert t.dtype == dtype
        assert t.device == torch.device("cpu")
    E = b.tokens()
    assert E.shape == (B, N + 1, dx + dy) and E.dtype == dtype


def test_default_dtype_is_float32():
    b = sample_linear_regression(2, 3, 4, generator=runtime.generator(0))
    assert all(t.dtype == torch.float32 for t in b)
    assert b.y.shape == (2, 3, 1)  # dy defaults to 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sample_on_cuda():
    b = sample_linear_regression(2, 3, 4, generator=runtime.generator(0, "cuda"), device="cuda")
    assert all(t.device.type == "cuda" for t in b)


@given(seed=SEED, r=st.floats(0.1, 5.0), rq=st.one_of(st.none(), st.floats(0.1, 5.0)))
def test_uniform_range_respected(seed, r, rq):
    b = sample_linear_regression(4, 12, 8, generator=runtime.generator(seed), dtype=torch.float64,
                                 input_range=r, query_range=rq)
    rq_eff = r if rq is None else rq
    assert float(b.x.abs().max()) <= r / 2
    assert float(b.x_query.abs().max()) <= rq_eff / 2
    # the range is actually used (not a narrower one): 384 context draws almost surely reach 80 % of r/2
    assert float(b.x.abs().max()) > 0.8 * r / 2


def test_query_range_only_affects_query():
    b1 = sample_linear_regression(2000, 4, 3, generator=runtime.generator(5), dtype=torch.float64)
    b3 = sample_linear_regression(2000, 4, 3, generator=runtime.generator(5), dtype=torch.float64, query_range=3.0)
    assert torch.equal(b1.x, b3.x)
    torch.testing.assert_close(b3.x_query, 3.0 * b1.x_query, rtol=1e-14, atol=0)
    assert float(b3.x_query.abs().max()) > 1.4  # U(-1.5, 1.5), 6000 draws
    assert float(b3.x_query.abs().max()) <= 1.5


@given(B=B_, N=N_, dx=DX, dy=DY, seed=SEED,
       dist=st.sampled_from(["uniform", "gaussian"]), s=st.floats(0.1, 3.0), r=st.floats(0.2, 3.0))
def test_noise_free_targets_are_exactly_linear(B, N, dx, dy, seed, dist, s, r):
    b = sample_linear_regression(B, N, dx, dy, generator=runtime.generator(seed), dtype=torch.float64,
                                 input_dist=dist, teacher_scale=s, input_range=r)
    assert rel(b.y, b.x @ b.w.transpose(1, 2)) < 1e-13
    assert rel(b.y_query, (b.w @ b.x_query[..., None])[..., 0]) < 1e-13


def test_noise_changes_targets_with_the_right_std():
    sigma = 0.3
    clean = sample_linear_regression(4000, 10, 3, generator=runtime.generator(1), dtype=torch.float64)
    noisy = sample_linear_regression(4000, 10, 3, generator=runtime.generator(1), dtype=torch.float64,
                                     noise_std=sigma)
    # noise is drawn after x and w: same tasks, different targets
    assert torch.equal(clean.x, noisy.x) and torch.equal(clean.w, noisy.w)
    assert not torch.allclose(clean.y, noisy.y)
    assert not torch.allclose(clean.y_query, noisy.y_query)
    eps = torch.cat([(noisy.y - noisy.x @ noisy.w.transpose(1, 2)).flatten(),
                     (noisy.y_query - (noisy.w @ noisy.x_query[..., None])[..., 0]).flatten()])
    n = eps.numel()
    se_var = sigma**2 * math.sqrt(2 / n)
    assert abs(float(eps.var()) - sigma**2) < 4 * se_var
    assert abs(float(eps.mean())) < 4 * sigma / math.sqrt(n)


@given(seed=SEED, s=st.floats(0.0, 5.0))
def test_teacher_scale_scales_w(seed, s):
    b1 = sample_linear_regression(3, 5, 4, 2, generator=runtime.generator(seed), dtype=torch.float64)
    bs = sample_linear_regression(3, 5, 4, 2, generator=runtime.generator(seed), dtype=torch.float64,
                                  teacher_scale=s)
    assert torch.equal(b1.x, bs.x)
    torch.testing.assert_close(bs.w, s * b1.w, rtol=1e-14, atol=0)
    torch.testing.assert_close(bs.y, s * b1.y, rtol=1e-12, atol=1e-300)


def test_teacher_scale_gives_the_right_variance():
    b = sample_linear_regression(5000, 1, 10, generator=runtime.generator(3), dtype=torch.float64, teacher_scale=2.5)
    n = b.w.numel()
    assert abs(float(b.w.var()) - 6.25) < 4 * 6.25 * math.sqrt(2 / n)


@given(seed=SEED, dist=st.sampled_from(["uniform", "gaussian"]))
def test_seeded_generator_is_reproducible(seed, dist):
    a = sample_linear_regression(3, 4, 5, 2, generator=runtime.generator(seed), input_dist=dist, noise_std=0.1)
    b = sample_linear_regression(3, 4, 5, 2, generator=runtime.generator(seed), input_dist=dist, noise_std=0.1)
    c = sample_linear_regression(3, 4, 5, 2, generator=runtime.generator(seed + 1), input_dist=dist, noise_std=0.1)
    for ta, tb in zip(a, b):
        assert torch.equal(ta, tb)
    assert not torch.equal(a.x, c.x)


@pytest.mark.parametrize("dist", ["uniform", "gaussian"])
@pytest.mark.parametrize("r", [0.5, 1.0, 2.0])
def test_input_moments_match_monte_carlo(dist, r):
    b = sample_linear_regression(20000, 9, 5, generator=runtime.generator(11), dtype=torch.float64,
                                 input_range=r, input_dist=dist)
    v = torch.cat([b.x.flatten(), b.x_query.flatten()])
    var, mu4 = input_moments(r, dist)
    n = v.numel()
    x2, x4 = v.pow(2), v.pow(4)
    assert abs(float(v.mean())) < 4 * math.sqrt(var / n)
    assert abs(float(x2.mean()) - var) < 4 * float(x2.std()) / math.sqrt(n)
    assert abs(float(x4.mean()) - mu4) < 4 * float(x4.std()) / math.sqrt(n)


def test_input_moments_closed_forms():
    assert input_moments() == pytest.approx((1 / 12, 1 / 80), rel=1e-15)
    var, mu4 = input_moments(2.0, "gaussian")
    assert var == pytest.approx(1 / 3, rel=1e-15) and mu4 == pytest.approx(3 / 9, rel=1e-15)
    with pytest.raises(ValueError, match="input_dist"):
        input_moments(1.0, "laplace")
    with pytest.raises(ValueError, match="input_range"):
        input_moments(0.0)


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": -2}, ValueError, "batch_size"),
        ({"batch_size": 2.0}, TypeError, "batch_size"),
        ({"n_context": 0}, ValueError, "n_context"),
        ({"dx": 0}, ValueError, "dx"),
        ({"dy": 0}, ValueError, "dy"),
        ({"input_range": 0.0}, ValueError, "input_range"),
        ({"input_range": -1.0}, ValueError, "input_range"),
        ({"query_range": 0.0}, ValueError, "query_range"),
        ({"teacher_scale": -1.0}, ValueError, "teacher_scale"),
        ({"noise_std": -0.1}, ValueError, "noise_std"),
        ({"input_dist": "cauchy"}, ValueError, "input_dist"),
    ],
)
def test_sample_bad_input(kwargs, exc, name):
    args = {"batch_size": 2, "n_context": 3, "dx": 4, "dy": 1} | kwargs
    with pytest.raises(exc, match=rf"\b{name}\b"):
        sample_linear_regression(**args)


# ---------------------------------------------------------------------------------------------------------------
# make_tokens
# ---------------------------------------------------------------------------------------------------------------


@given(B=B_, N=N_, dx=DX, dy=DY, seed=SEED, dtype=st.sampled_from([torch.float32, torch.float64]))
def test_make_tokens_layout(B, N, dx, dy, seed, dtype):
    g = runtime.generator(seed)
    x, y, xq = torch.randn(B, N, dx, generator=g), torch.randn(B, N, dy, generator=g), torch.randn(B, dx, generator=g)
    x, y, xq = x.to(dtype), y.to(dtype), xq.to(dtype)
    E = make_tokens(x, y, xq)
    assert E.shape == (B, N + 1, dx + dy)
    assert E.dtype == dtype
    for b in range(B):
        for i in range(N):
            assert torch.equal(E[b, i], torch.cat([x[b, i], y[b, i]]))
        assert torch.equal(E[b, N], torch.cat([xq[b], torch.zeros(dy, dtype=dtype)]))


def test_regression_batch_tokens_match_make_tokens():
    b = sample_linear_regression(3, 4, 2, 2, generator=runtime.generator(0))
    assert torch.equal(b.tokens(), make_tokens(b.x, b.y, b.x_query))


@pytest.mark.parametrize(
    ("shapes", "exc", "name"),
    [
        (((4, 2), (2, 4, 1), (2, 2)), ValueError, "x"),  # unbatched x
        (((2, 4, 2), (4, 1), (2, 2)), ValueError, "y"),  # unbatched y
        (((2, 4, 2), (2, 4, 1), (2,)), ValueError, "x_query"),  # unbatched query
        (((2, 4, 2), (3, 4, 1), (2, 2)), ValueError, "y"),  # B mismatch x/y
        (((2, 4, 2), (2, 5, 1), (2, 2)), ValueError, "context length"),  # N mismatch
        (((2, 4, 2), (2, 4, 1), (3, 2)), ValueError, "x_query"),  # B mismatch x/x_query
        (((2, 4, 2), (2, 4, 1), (2, 3)), ValueError, "x_query"),  # dx mismatch
    ],
)
def test_make_tokens_bad_shapes(shapes, exc, name):
    x, y, xq = (torch.zeros(s) for s in shapes)
    with pytest.raises(exc, match=rf"\b{name}\b"):
        make_tokens(x, y, xq)


def test_make_tokens_bad_types():
    x, y, xq = torch.zeros(2, 4, 2), torch.zeros(2, 4, 1), torch.zeros(2, 2)
    with pytest.raises(TypeError, match=r"\bx\b"):
        make_tokens(x.tolist(), y, xq)
    with pytest.raises(TypeError, match=r"\by\b"):
        make_tokens(x, y.numpy(), xq)
    with pytest.raises(TypeError, match="x_query"):
        make_tokens(x, y, xq.long())


def test_regression_stream_and_eval_set():
    stream = tasks.regression_stream(4, 5, 3, seed=7)
    t0, y0 = stream(0)
    t1, _ = stream(1)
    assert t0.shape == (4, 6, 4) and y0.shape == (4, 1)
    assert not torch.equal(t0, t1)  # fresh tasks every step
    t0_again, _ = tasks.regression_stream(4, 5, 3, seed=7)(0)
    assert torch.equal(t0, t0_again)
    ev = tasks.regression_eval_set(8, 5, 3, seed=7)
    assert ev.x.shape == (8, 5, 3)
    assert torch.equal(ev.x, tasks.regression_eval_set(8, 5, 3, seed=7).x)


def test_sine_stream_and_eval_set():
    stream = tasks.sine_stream(4, 5, seed=3, tied=True)
    t0, y0 = stream(0)
    assert t0.shape == (4, 6, 2) and y0.shape == (4, 1)
    assert not torch.equal(t0, stream(1)[0])
    ev = tasks.sine_eval_set(8, 5, seed=3)
    assert torch.equal(ev.x, tasks.sine_eval_set(8, 5, seed=3).x)
    assert not torch.equal(ev.x, tasks.sine_eval_set(8, 5, seed=4).x)


# ---------------------------------------------------------------- linear dynamics (Part IV)
def test_haar_orthogonal_is_orthogonal_and_seeded():
    W = tasks.haar_orthogonal(64, 6, generator=runtime.generator(0), dtype=torch.float64)
    eye = torch.eye(6, dtype=torch.float64)
    assert torch.allclose(W @ W.transpose(1, 2), eye.expand(64, 6, 6), atol=1e-12)
    assert torch.equal(W, tasks.haar_orthogonal(64, 6, generator=runtime.generator(0), dtype=torch.float64))
    dets = torch.linalg.det(W)
    assert (dets > 0).any() and (dets < 0).any(), "Haar on O(D) draws both determinants (as jax.random.orthogonal)"
    # the sign fix makes the distribution Haar: E[W] = 0 and E[W_11²] = 1/D
    big = tasks.haar_orthogonal(20_000, 3, generator=runtime.generator(1), dtype=torch.float64)
    assert abs(float(big[:, 0, 0].mean())) < 0.02 and abs(float((big[:, 0, 0] ** 2).mean()) - 1 / 3) < 0.01


def test_linear_dynamics_follow_their_matrix():
    b = tasks.sample_linear_dynamics(8, 20, 5, noise_std=0.0, generator=runtime.generator(2), dtype=torch.float64)
    assert b.states.shape == (8, 21, 5) and b.inputs.shape == b.targets.shape == (8, 20, 5)
    assert torch.allclose(b.targets, b.inputs @ b.W.transpose(1, 2), atol=1e-12)
    assert float(b.states[:, 0].abs().max()) <= 1.0
    norms = torch.linalg.vector_norm(b.states, dim=-1)
    assert torch.allclose(norms, norms[:, :1].expand_as(norms), atol=1e-10), "orthogonal W keeps ‖s_t‖"
    noisy = tasks.sample_linear_dynamics(8, 20, 5, noise_std=0.01, generator=runtime.generator(2), dtype=torch.float64)
    resid = noisy.targets - noisy.inputs @ noisy.W.transpose(1, 2)
    assert 0.008 < float(resid.std()) < 0.012


def test_contracting_dynamics_have_the_eigenvalues_asked_for():
    b = tasks.sample_linear_dynamics(16, 10, 6, kind="contracting", generator=runtime.generator(3),
                                     dtype=torch.float64)
    ev = torch.linalg.eigvals(b.W).abs()  # (B, D)
    assert torch.allclose(ev.max(dim=1).values, torch.full((16,), 0.9, dtype=torch.float64), atol=1e-8)
    assert float(ev.min()) >= 0.3 - 1e-8


def test_mesa_tokens_layout():
    s = torch.arange(2 * 3 * 2, dtype=torch.float64).reshape(2, 3, 2) + 1
    E = tasks.mesa_tokens(s)
    assert E.shape == (2, 3, 8)
    assert torch.equal(E[0, 0], torch.tensor([0, 0, 1, 2, 1, 2, 0, 0], dtype=torch.float64))  # s_0 = 0
    assert torch.equal(E[0, 2], torch.tensor([0, 0, 5, 6, 5, 6, 3, 4], dtype=torch.float64))
    assert torch.equal(tasks.mesa_tokens(s, masked=True)[..., :4], torch.zeros(2, 3, 4, dtype=torch.float64))


@pytest.mark.parametrize("kw,match", [
    ({"kind": "rotating"}, "kind"), ({"noise_std": -0.1}, "noise_std"), ({"init_range": 0.0}, "init_range"),
    ({"kind": "contracting", "eigenvalues": (0.9, 0.3)}, "eigenvalues"), ({"seq_len": 0}, "seq_len"),
])
def test_linear_dynamics_reject_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        tasks.sample_linear_dynamics(2, **{"seq_len": 5, "dim": 3, **kw})


def test_mesa_tokens_need_batched_sequences():
    with pytest.raises(ValueError, match=r"states must have shape \(B, T, D\)"):
        tasks.mesa_tokens(torch.zeros(5, 3))


def test_partial_observations():
    b = tasks.sample_linear_dynamics(4, 6, 5, generator=runtime.generator(4), dtype=torch.float64)
    obs, C = tasks.observe(b.states, 3, generator=runtime.generator(5))
    assert obs.shape == (4, 7, 3) and C.shape == (4, 3, 5)
    assert torch.allclose(obs, b.states @ C.transpose(1, 2))
    assert abs(float(C.std()) - 0.5) < 0.15
    with pytest.raises(ValueError, match="obs_dim"):
        tasks.observe(b.states, 0)


def test_interleaved_tokens_alternate_inputs_and_labels():
    from icl_course.tasks import interleaved_tokens

    x = torch.arange(2 * 3 * 4, dtype=torch.float64).view(2, 3, 4)
    y = -torch.arange(2 * 3 * 1, dtype=torch.float64).view(2, 3, 1) - 1
    z = interleaved_tokens(x, y)
    assert z.shape == (2, 6, 5) and z.dtype == torch.float64
    assert torch.equal(z[:, 0::2, :4], x) and torch.all(z[:, 0::2, 4] == 0)
    assert torch.equal(z[:, 1::2, 4:], y) and torch.all(z[:, 1::2, :4] == 0)
    with pytest.raises(ValueError, match="context length N"):
        interleaved_tokens(x, y[:, :2])
    with pytest.raises(ValueError, match=r"\(B, N, dy\)"):
        interleaved_tokens(x, y[..., 0])


def test_previous_pair_tokens_pair_each_label_with_its_input_and_the_next_input():
    from icl_course.tasks import previous_pair_tokens

    x = torch.randn(2, 4, 3, dtype=torch.float64)
    y = torch.randn(2, 4, 1, dtype=torch.float64)
    z = previous_pair_tokens(x, y)
    assert z.shape == (2, 4, 7) and z.dtype == torch.float64
    assert torch.all(z[:, 0, :4] == 0) and torch.equal(z[:, :, 4:], x)
    assert torch.equal(z[:, 1:, :3], x[:, :-1]) and torch.equal(z[:, 1:, 3:4], y[:, :-1])
    with pytest.raises(ValueError, match="batch size B"):
        previous_pair_tokens(x, y[:1])
