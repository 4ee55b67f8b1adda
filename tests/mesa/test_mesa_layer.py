"""Tests for :mod:`icl_course.mesa.mesa_layer`: recurrent = solve = a naive re-solve, the memory-light gradient,
validation, "would be caught" tests for the causal sum (``t' ≤ t``) and the ridge λ (not ``1/λ``), the constructed
layer (= ridge on the pairs ``j ≤ t``), the chapter's experiment functions (smoke tests) and its exercises."""

import math

import pytest
import torch

import icl_course.exercises.mesa.mesa_layer  # noqa: F401 - registers the chapter's exercises
from icl_course import runtime, solvers, tasks
from icl_course.causal import CausalSelfAttention, CausalStack
from icl_course.exercises import REGISTRY, ExerciseFailed, NotAttempted
from icl_course.mesa import (
    MesaLayer,
    downdate_drift,
    mesa_attention,
    sherman_morrison_downdate,
    sherman_morrison_update,
)
from icl_course.mesa import _common as mesa_common
from icl_course.mesa import mesa_layer as ml

F64 = torch.float64
METHODS = ("recurrent", "solve")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-300))


def qkv(B=2, H=3, T=9, dk=4, dv=5, seed=0, dtype=F64, grad=False):
    g = runtime.generator(seed)
    out = [torch.randn(B, H, T, d, generator=g, dtype=dtype) for d in (dk, dk, dv)]
    return [x.requires_grad_(grad) for x in out]


def naive(q, k, v, lam):
    """Re-solve ``(Σ_{t'≤t} k kᵀ + λI) z = q_t`` from scratch at every t, then ``out_t = Σ_{t'≤t} v (kᵀ z)``."""
    B, H, T, dk = q.shape
    lam = torch.as_tensor(lam, dtype=q.dtype).expand(H)[:, None, None]  # (H, 1, 1)
    outs = []
    for t in range(T):
        K, V = k[:, :, : t + 1], v[:, :, : t + 1]  # (B, H, t+1, d)
        A = K.transpose(-1, -2) @ K + lam * torch.eye(dk, dtype=q.dtype)  # (B, H, dk, dk)
        W = V.transpose(-1, -2) @ K @ torch.linalg.inv(A)  # (B, H, dv, dk) ridge weights
        outs.append((W @ q[:, :, t, :, None])[..., 0])
    return torch.stack(outs, 2)  # (B, H, T, dv)


# ------------------------------------------------------------------------------------------- identities
@pytest.mark.parametrize("shape", [(2, 3, 9, 4, 5), (1, 1, 1, 3, 2), (3, 2, 17, 6, 1)])
@pytest.mark.parametrize("lam_rel", [1e-2, 1.0, 100.0])
def test_recurrent_equals_solve_equals_naive(shape, lam_rel):
    B, H, T, dk, dv = shape
    q, k, v = qkv(B, H, T, dk, dv, seed=T)
    lam = lam_rel * float(k.pow(2).sum(-1).mean())  # λ relative to mean ||k||²
    ref = naive(q, k, v, lam)
    rec, sol = mesa_attention(q, k, v, lam), mesa_attention(q, k, v, lam, method="solve")
    assert rec.shape == (B, H, T, dv)
    assert rel(rec, sol) < 1e-8
    assert rel(rec, ref) < 1e-8
    assert rel(sol, ref) < 1e-8


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("lam", [0.25, 4.0])
def test_worked_number_lambda_is_the_ridge_lambda(method, lam):
    # k=2, v=3, q=1: out = 3·2/(2² + λ). With 1/λ in its place, λ=0.25 and λ=4 would swap answers.
    one = torch.ones(1, 1, 1, 1, dtype=F64)
    out = mesa_attention(one, 2 * one, 3 * one, lam, method=method)
    assert float(out) == pytest.approx(6 / (4 + lam), rel=1e-14)


@pytest.mark.parametrize("method", METHODS)
def test_causal_sum_includes_t_and_nothing_later(method):
    q, k, v = qkv(T=6)
    out = mesa_attention(q, k, v, 0.5, method=method)
    # t = 0 sees exactly (k_0, v_0): out_0 = v_0 (k_0·q_0) / (||k_0||² + λ) by Sherman–Morrison; t' < t would give 0.
    k0, v0, q0 = k[:, :, 0], v[:, :, 0], q[:, :, 0]
    expect = v0 * ((k0 * q0).sum(-1) / (k0.pow(2).sum(-1) + 0.5))[..., None]
    assert rel(out[:, :, 0], expect) < 1e-12
    for t in (2, 5):
        for which in (1, 2):  # perturb k_t, then v_t: out_t moves, out_{<t} does not
            bumped = [x.clone() for x in (q, k, v)]
            bumped[which][:, :, t] += 1.0
            out2 = mesa_attention(*bumped, 0.5, method=method)
            assert rel(out2[:, :, t], out[:, :, t]) > 1e-3
            assert torch.equal(out2[:, :, :t], out[:, :, :t])


@pytest.mark.parametrize("method", METHODS)
def test_lam_per_head_matches_float_calls(method):
    q, k, v = qkv(H=3)
    lams = [0.1, 1.0, 7.0]
    out = mesa_attention(q, k, v, torch.tensor(lams, dtype=F64), method=method)
    for h, lam in enumerate(lams):
        ref = mesa_attention(q[:, h:h + 1], k[:, h:h + 1], v[:, h:h + 1], lam, method=method)
        assert rel(out[:, h:h + 1], ref) < 1e-13
    scalar = mesa_attention(q, k, v, torch.tensor(0.3, dtype=F64), method=method)
    assert rel(scalar, mesa_attention(q, k, v, 0.3, method=method)) < 1e-15


# ------------------------------------------------------------------------------- memory-light gradient
@pytest.mark.parametrize("every", [None, 1, 3, 4, 9, 20])
def test_memory_light_gradient_equals_autograd(every):
    q, k, v = qkv(T=9, grad=True)
    lam = torch.tensor([0.5, 1.0, 3.0], dtype=F64, requires_grad=True)
    g = torch.randn(2, 3, 9, 5, generator=runtime.generator(1), dtype=F64)
    inputs = (q, k, v, lam)
    ours = torch.autograd.grad(mesa_attention(q, k, v, lam, checkpoint_every=every), inputs, g)
    for ref_out in (naive(q, k, v, lam), mesa_attention(q, k, v, lam, method="solve")):
        ref = torch.autograd.grad(ref_out, inputs, g)
        for name, a, b in zip("q k v lam".split(), ours, ref):
            assert rel(a, b) < 1e-8, name


def test_memory_light_backward_stores_sqrt_T_state():
    B, H, T, d = 1, 2, 64, 8
    q, k, v = qkv(B, H, T, d, d, grad=True)
    saved = {}

    def pack(x):
        saved[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
        return x

    def stored(method):
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            mesa_attention(q, k, v, 1.0, method=method)
        return sum(saved.values())

    inputs = 3 * B * H * T * d * 8
    all_R = B * H * T * d * d * 8  # what storing every R_t would cost
    n_ck = math.ceil(T / math.ceil(math.sqrt(T)))
    assert stored("recurrent") <= inputs + H * 8 + 2 * n_ck * B * H * d * d * 8  # checkpoints of R and S only
    assert stored("recurrent") < inputs + all_R / 3
    assert stored("solve") > all_R  # the parallel path keeps every Cholesky factor


# ------------------------------------------------------------------------------------ Sherman–Morrison
def test_sherman_morrison_update_and_downdate():
    g = runtime.generator(3)
    X = torch.randn(2, 7, 4, generator=g, dtype=F64)
    A = X.mT @ X + 0.1 * torch.eye(4, dtype=F64)  # (2, 4, 4)
    k = torch.randn(2, 4, generator=g, dtype=F64)
    R_new = sherman_morrison_update(torch.linalg.inv(A), k)
    assert rel(R_new, torch.linalg.inv(A + k[:, :, None] * k[:, None, :])) < 1e-12
    assert rel(sherman_morrison_downdate(R_new, k), torch.linalg.inv(A)) < 1e-10


def test_downdate_drift_is_small_in_float64_and_large_in_float32():
    k = torch.randn(2, 256, 32, generator=runtime.generator(0), dtype=F64) / math.sqrt(32)
    d64, d32 = downdate_drift(k, 1e-3), downdate_drift(k.float(), 1e-3)
    assert d64.shape == (2,) and d64.dtype == F64 and d32.dtype == torch.float32
    assert float(d64.max()) < 1e-7
    assert float(d32.min()) > 1e-3  # measured ~14 %: the reason the backward recomputes instead


# ----------------------------------------------------------------------------------- dtype and device
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_dtype_and_device_follow_inputs(method, dtype):
    q, k, v = qkv(dtype=dtype, grad=True)
    lam = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)  # float32 λ is cast to the inputs' dtype
    out = mesa_attention(q, k, v, lam, method=method)
    assert out.dtype == dtype and out.device == q.device
    out.sum().backward()
    assert q.grad.dtype == k.grad.dtype == v.grad.dtype == dtype and lam.grad.dtype == torch.float32
    if dtype == torch.float32:
        ref = mesa_attention(*(x.detach().double() for x in (q, k, v)), lam.detach().double(), method=method)
        assert rel(out.double(), ref) < 1e-4


# ----------------------------------------------------------------------------------------- bad inputs
def _bad(name):
    q, k, v = qkv(T=4)
    args = {"q": q, "k": k, "v": v, "lam": 1.0}
    cases = {
        "q_list": ("q", [[0.0]], TypeError),
        "q_3d": ("q", q[0], ValueError),
        "q_int": ("q", q.long(), TypeError),
        "k_3d": ("k", k[0], ValueError),
        "v_5d": ("v", v[None], ValueError),
        "k_batch": ("k", k[:1], ValueError),
        "v_heads": ("v", v[:, :2], ValueError),
        "v_time": ("v", v[:, :, :3], ValueError),
        "k_dk": ("k", k[..., :3], ValueError),
        "v_dtype": ("v", v.float(), TypeError),
        "q_nan": ("q", q.index_fill(2, torch.tensor([1]), float("nan")), ValueError),
        "k_inf": ("k", k.index_fill(2, torch.tensor([0]), float("inf")), ValueError),
        "v_nan": ("v", v.index_fill(3, torch.tensor([0]), float("nan")), ValueError),
        "lam_zero": ("lam", 0.0, ValueError),
        "lam_neg": ("lam", -1.0, ValueError),
        "lam_nan": ("lam", float("nan"), ValueError),
        "lam_inf": ("lam", float("inf"), ValueError),
        "lam_bool": ("lam", True, TypeError),
        "lam_str": ("lam", "1", TypeError),
        "lam_heads": ("lam", torch.ones(4, dtype=F64), ValueError),
        "lam_2d": ("lam", torch.ones(3, 1, dtype=F64), ValueError),
        "lam_zero_head": ("lam", torch.tensor([1.0, 0.0, 1.0]), ValueError),
        "lam_nan_head": ("lam", torch.tensor([1.0, float("nan"), 1.0]), ValueError),
        "lam_int": ("lam", torch.ones(3, dtype=torch.long), TypeError),
    }
    arg, value, err = cases[name]
    args[arg] = value
    return args, arg, err


@pytest.mark.parametrize("case", [
    "q_list", "q_3d", "q_int", "k_3d", "v_5d", "k_batch", "v_heads", "v_time", "k_dk", "v_dtype", "q_nan", "k_inf",
    "v_nan", "lam_zero", "lam_neg", "lam_nan", "lam_inf", "lam_bool", "lam_str", "lam_heads", "lam_2d",
    "lam_zero_head", "lam_nan_head", "lam_int",
])
@pytest.mark.parametrize("method", METHODS)
def test_bad_input_names_the_argument(case, method):
    args, arg, err = _bad(case)
    with pytest.raises(err, match=rf"(^|\W){arg}\W"):
        mesa_attention(args["q"], args["k"], args["v"], args["lam"], method=method)


@pytest.mark.parametrize("kwargs, arg, err", [
    ({"method": "cholesky"}, "method", ValueError),
    ({"checkpoint_every": 0}, "checkpoint_every", ValueError),
    ({"checkpoint_every": 1.5}, "checkpoint_every", TypeError),
])
def test_bad_options_name_the_argument(kwargs, arg, err):
    q, k, v = qkv(T=4)
    with pytest.raises(err, match=arg):
        mesa_attention(q, k, v, 1.0, **kwargs)


def test_shape_errors_state_the_expected_shape():
    q, k, v = qkv(T=4)
    with pytest.raises(ValueError, match=r"\(B, H, T, dk\)"):
        mesa_attention(q[0], k, v, 1.0)
    with pytest.raises(ValueError, match=r"k \(B, T, d\)|\(B, T, d\)"):
        downdate_drift(k[0, 0], 1.0)
    with pytest.raises(ValueError, match="lam"):
        downdate_drift(k[0], 0.0)
    with pytest.raises(ValueError, match="lam"):
        downdate_drift(k[0], float("inf"))
    R = torch.eye(4, dtype=F64).expand(2, 4, 4)
    for fn in (sherman_morrison_update, sherman_morrison_downdate):
        with pytest.raises(ValueError, match=r"R must have shape \(…, d, d\)"):
            fn(R, k[0, 0, :3])  # k (3, 4): three leading entries, R has two
        with pytest.raises(TypeError, match=r"k must be a torch.Tensor of shape \(…, d\)"):
            fn(R, [1.0, 2.0, 3.0, 4.0])


# ------------------------------------------------------------------------------------------ MesaLayer
def _layer(**kw):
    return MesaLayer(6, 2, 3, 4, init_std=0.5, generator=runtime.generator(0), dtype=F64, **kw)


@pytest.mark.parametrize("method", METHODS)
def test_mesa_layer_is_residual_plus_projected_mesa_attention(method):
    layer = _layer(method=method, lam_init=0.7)
    E = torch.randn(2, 5, 6, generator=runtime.generator(1), dtype=F64)
    out = layer(E)
    W = {n: getattr(layer, n).weight for n in ("W_Q", "W_K", "W_V", "P")}  # (out, in) layout
    heads = []
    for h in range(2):
        q, k = E @ W["W_Q"][3 * h:3 * h + 3].T, E @ W["W_K"][3 * h:3 * h + 3].T  # (B, T, dk)
        v = E @ W["W_V"][4 * h:4 * h + 4].T  # (B, T, dv)
        heads.append(naive(q[:, None], k[:, None], v[:, None], 0.7)[:, 0])
    assert rel(out - E, torch.cat(heads, -1) @ W["P"].T) < 1e-10
    assert torch.allclose(layer.lam, torch.full((2,), 0.7, dtype=F64))
    with torch.no_grad():
        layer.P.weight.zero_()
    assert torch.equal(layer(E), E)  # P = 0: the residual alone, exactly


def test_mesa_layer_without_residual_returns_the_update_alone():
    E = torch.randn(2, 5, 6, generator=runtime.generator(1), dtype=F64)
    with_res, update = _layer(lam_init=0.7)(E), _layer(lam_init=0.7, residual=False)(E)
    assert rel(update, with_res - E) < 1e-12 and rel(update, with_res) > 0.1


def test_mesa_layer_and_causal_attention_are_interchangeable_in_a_stack():
    """Both add their own residual: a stack of [mesa, linear] equals applying them in turn, and the linear layer's
    W_O = 0 makes it the identity."""
    E = torch.randn(2, 5, 6, generator=runtime.generator(4), dtype=F64)
    mesa = _layer()
    lin = CausalSelfAttention(6, 2, 3, init_std=0.0, dtype=F64)
    stack = CausalStack([mesa, lin])
    assert torch.equal(stack(E), mesa(E))
    assert torch.equal(CausalStack([lin, mesa])(E), mesa(E))


def test_mesa_layer_lambda_stays_positive_and_learns():
    layer = _layer()
    opt = torch.optim.SGD(layer.parameters(), lr=1.0)
    E = torch.randn(2, 5, 6, generator=runtime.generator(2), dtype=F64)
    for lr in (1.0, 1.0, 1e3):  # the last step pushes λ far past zero if λ were the raw parameter
        opt.param_groups[0]["lr"] = lr
        loss = layer(E).pow(2).mean() + layer.lam.sum()
        opt.zero_grad()
        loss.backward()
        assert layer.lam_raw.grad is not None and bool((layer.lam_raw.grad != 0).all())
        opt.step()
    assert bool((layer.lam > 0).all()) and float(layer.lam.detach().max()) < 1e-6


@pytest.mark.parametrize("normalize", ["qk", "qv"])
def test_mesa_layer_normalisation_is_scale_free(normalize):
    layer = _layer(normalize=normalize)
    E = torch.randn(2, 5, 6, generator=runtime.generator(3), dtype=F64)
    with torch.no_grad():
        scaled = _layer(normalize=normalize)
        scaled.load_state_dict(layer.state_dict())
        scaled.W_Q.weight.mul_(3.0)  # normalised queries: scaling W_Q changes nothing
        getattr(scaled, "W_K" if normalize == "qk" else "W_V").weight.mul_(5.0)
    assert rel(scaled(E), layer(E)) < 1e-10
    plain = _layer()
    plain.load_state_dict(layer.state_dict())
    assert rel(plain(E), layer(E)) > 1e-3


def test_mesa_layer_dtype_and_bad_input():
    layer = MesaLayer(4, dtype=torch.float32)
    assert all(p.dtype == torch.float32 for p in layer.parameters())
    assert layer(torch.randn(1, 3, 4)).dtype == torch.float32
    with pytest.raises(ValueError, match="E"):
        layer(torch.randn(3, 4))
    with pytest.raises(ValueError, match="E"):
        layer(torch.randn(1, 3, 5))
    for kwargs, arg in [({"normalize": "k"}, "normalize"), ({"method": "x"}, "method"),
                        ({"lam_init": 0.0}, "lam_init"), ({"n_heads": 0}, "n_heads")]:
        with pytest.raises(ValueError, match=arg):
            MesaLayer(4, **kwargs)


def test_from_matrices_rebuilds_a_layer_and_validates():
    layer = _layer(lam_init=0.7)
    m = layer.matrices()
    rebuilt = MesaLayer.from_matrices(m["W_Q"], m["W_K"], m["W_V"], m["P"], layer.lam.detach(), n_heads=2)
    E = torch.randn(2, 5, 6, generator=runtime.generator(5), dtype=F64)
    assert torch.equal(rebuilt(E), layer(E)) and rebuilt.lam.dtype == F64
    assert rel(rebuilt.lam, torch.full((2,), 0.7, dtype=F64)) < 1e-15  # softplus⁻¹ round-trips
    for lam in (1e-8, 1e-3, 50.0):
        assert rel(MesaLayer.from_matrices(m["W_Q"], m["W_K"], m["W_V"], m["P"], lam).lam,
                   torch.tensor([lam], dtype=F64)) < 1e-12
    cases = [((m["W_Q"][0], m["W_K"], m["W_V"], m["P"], 1.0), {}, "W_Q", ValueError),
             ((m["W_Q"], m["W_K"][:5], m["W_V"], m["P"], 1.0), {}, "W_K", ValueError),
             ((m["W_Q"], m["W_K"], m["W_V"], m["P"].T, 1.0), {}, "P", ValueError),
             ((m["W_Q"], m["W_K"], m["W_V"].float(), m["P"], 1.0), {}, "W_V", TypeError),
             ((m["W_Q"], m["W_K"], m["W_V"], m["P"], 1.0), {"n_heads": 4}, "n_heads", ValueError),
             ((m["W_Q"], m["W_K"], m["W_V"], m["P"], 0.0), {}, "lam", ValueError),
             ((m["W_Q"], m["W_K"], m["W_V"], m["P"], torch.ones(3, dtype=F64)), {"n_heads": 2}, "lam", ValueError)]
    for args, kw, arg, err in cases:
        with pytest.raises(err, match=arg):
            MesaLayer.from_matrices(*args, **kw)


# ------------------------------------------------------------------------- the chapter's constructions
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("lam", [1e-3, 0.5])
def test_constructed_mesa_layer_is_ridge_on_the_pairs_up_to_t(method, lam):
    b = tasks.sample_linear_dynamics(6, 30, 5, generator=runtime.generator(7), dtype=F64)
    got = mesa_common.model_predictions(ml.constructed_mesa_layer(5, lam, method=method), b)
    assert rel(got, solvers.causal_ridge_predict(b.inputs, lam, "j<=t")) < 1e-10
    # would be caught: the official baseline's pairs j < t, or 1/λ in place of λ
    assert rel(got, solvers.causal_ridge_predict(b.inputs, lam, "j<t")) > 1e-2
    assert rel(got, solvers.causal_ridge_predict(b.inputs, 1 / lam, "j<=t")) > 1e-2
    assert ml.constructed_mesa_error(seed=1, method=method) < 1e-10


def test_constructed_mesa_layer_reads_the_right_slots():
    stack = ml.constructed_mesa_layer(3, 0.1)
    m = stack.layers[0].matrices()
    slot = lambda W: [int(W[:, 3 * i:3 * i + 3].abs().sum() > 0) for i in range(4)]  # which slots a map reads
    assert (slot(m["W_Q"]), slot(m["W_K"]), slot(m["W_V"])) == ([0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 1, 0])
    assert [int(m["P"][3 * i:3 * i + 3].abs().sum() > 0) for i in range(4)] == [1, 0, 0, 0]  # writes the zero slot
    assert stack.masked_dims == 0 and stack.clip is None and stack.layers[0].lam.dtype == F64


def test_mesa_exactness_and_drift_lesson():
    ex = ml.mesa_exactness(seed=0)
    assert ex.forward < 1e-8 and ex.gradient < 1e-8
    drift = ml.drift_lesson(seed=0, n_seqs=2, T=128)
    assert drift.downdate_float64 < 1e-7  # float64 survives the downdates …
    assert drift.downdate_float32 > 1e-2  # … float32 does not (measured ~12–14 % at T = 256)
    assert drift.recompute_float32 < 1e-2  # recomputing forward from checkpoints keeps float32 gradients usable
    assert drift.solve_float32 < 1e-2 and drift.downdate_float32_max >= drift.downdate_float32
    # the downdates are harmless once λ is large against ‖k‖² (here ‖k‖² ≈ 1): the lesson is about small ridges
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 1, 64, 8, generator=gen, dtype=F64) / 8**0.5 for _ in range(3))
    assert ml.float32_drift(q, k, v, 1.0).downdate_float32 < 1e-4 < ml.float32_drift(q, k, v, 1e-4).downdate_float32


# ----------------------------------------------------------------------------------- trained mesa layers
def test_settings_and_fresh_models():
    assert ml.MESA.pick("cpu") == ml.MesaSettings() and ml.MESA.paper.steps == 20_000
    assert (ml.MESA.cpu.lr, ml.MESA.cpu.clip, ml.MESA.cpu.init_std, ml.MESA.cpu.lam_init) == (1e-3, 1.0, 2e-4, 1.0)
    with pytest.raises(ValueError, match="scale"):
        ml.MESA.pick("gpu")
    model = ml.new_mesa_model(seed=3)
    layer = model.layers[0]
    assert isinstance(layer, MesaLayer) and len(model.layers) == 1 and model.masked_dims == 0 and model.clip is None
    assert (layer.dim, layer.n_heads, layer.key_size, layer.value_size) == (40, 1, 10, 10)
    assert abs(float(layer.lam.detach()) - 1.0) < 1e-6  # the official init: lambdas = 1, i.e. ridge 1
    assert 1e-4 < float(layer.W_Q.weight.detach().std()) < 4e-4  # N(0, 0.0002²)
    assert torch.equal(ml.new_mesa_model(seed=3).layers[0].W_K.weight, layer.W_K.weight)
    deep = ml.new_attention_model("softmax", 2, seed=0)
    assert len(deep.layers) == 2 and all(isinstance(x, CausalSelfAttention) for x in deep.layers)
    assert (deep.layers[0].n_heads, deep.layers[0].key_size, deep.layers[0].attention) == (2, 10, "softmax")
    with pytest.raises(ValueError, match="n_layers"):
        ml.new_attention_model("linear", 0)
    with pytest.raises(ValueError, match="attention"):
        ml.new_attention_model("mesa", 1)


def test_train_mesa_and_depth_comparison_smoke():
    run = ml.train_mesa(seed=0, steps=3, eval_size=8, progress=False)
    assert run.history.steps == 3 and run.eval_set.inputs.shape == (8, 50, 10)
    assert all(math.isfinite(x) for x in run.history.loss) and run.history.eval_loss[-1] < 1.0 * 2
    again = ml.train_mesa(seed=0, steps=3, eval_size=8, progress=False)
    assert again.history.loss == run.history.loss  # seeded: weights seed, stream seed + 1
    runs = ml.train_depth_comparison(seed=0, steps=2, progress=False)
    assert list(runs) == ["mesa layer", "linear, 1 layer", "linear, 2 layers", "linear, 4 layers", "softmax, 1 layer",
                          "softmax, 2 layers", "softmax, 4 layers"]
    assert all(r.history.steps == 2 and r.model.clip == 1.5 for r in runs.values())
    assert [len(r.model.layers) for r in runs.values()] == [1, 1, 2, 4, 1, 2, 4]
    first = [r.history.loss[0] for r in (run, *runs.values())]  # near-identity models at init: the batch decides
    assert max(first) - min(first) < 1e-3 * first[0]  # the very same first batch for all eight
    assert run.model.clip is None and isinstance(runs["mesa layer"].model.layers[0], MesaLayer)


def test_effective_ridge_is_in_the_units_of_the_states():
    layer = ml.constructed_mesa_layer(4, 0.3).layers[0]
    assert ml.effective_ridge(layer, 4) == pytest.approx(0.3, rel=1e-12)
    with torch.no_grad():
        layer.W_K.weight.mul_(2.0)  # keys 2 s_{t−1}: Σ k kᵀ + λI = 4 (Σ s sᵀ + λ/4 I)
    assert ml.effective_ridge(layer, 4) == pytest.approx(0.3 / 4, rel=1e-12)
    with pytest.raises(ValueError, match="one head"):
        ml.effective_ridge(_layer(), 4)


def test_claim_values_read_the_right_positions():
    t = torch.arange(1, 51, dtype=F64)  # position t at index t − 1
    curves = {"mesa layer": 1 / t, "ridge, pairs j ≤ t": 0.5 / t}
    v = ml.mesa_vs_ridge(curves)
    assert v == (float((1 / t).mean()), float((0.5 / t).mean()), 1 / 15)  # index 14 is t = 15; t = 14 would be 1/14
    curves.update({"linear, 1 layer": 0 * t + 0.9, "linear, 4 layers": 0 * t + 0.6, "softmax, 2 layers": 0 * t + 1.2})
    assert ml.mesa_vs_depth(curves) == (float((1 / t).mean()), 0.6, 1.2)


# ------------------------------------------------------------------------------------------- exercises
EXERCISES = [e for k, e in REGISTRY.items() if k.startswith("mesa.") and e.module == "mesa_layer"]


def test_the_chapter_registers_four_exercises():
    assert [e.name for e in EXERCISES] == ["sherman_morrison_step", "mesa_output_at", "ridge_next_state",
                                           "ridge_from_official"]


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.name)
def test_exercise_solution_passes_and_stub_is_not_attempted(ex, capsys):
    ex.check(ex.solution)
    assert "passed" in capsys.readouterr().out
    with pytest.raises(NotAttempted, match="not attempted"):
        ex.check(ex.stub())


def _wrong_sm(sign=1.0, denom=1.0):
    def sherman_morrison_step(R, k):
        u = (R @ k[..., None])[..., 0]
        return R - sign * u[..., :, None] * u[..., None, :] / (1 + denom * (k * u).sum(-1))[..., None, None]
    return sherman_morrison_step


def _shifted_mesa(lam_map=lambda lam: lam, last=lambda t: t + 1):
    def mesa_output_at(q, k, v, lam, t):
        K, V = k[: last(t)], v[: last(t)]
        return V.T @ (K @ torch.linalg.solve(K.T @ K + lam_map(lam) * torch.eye(k.shape[1], dtype=k.dtype), q[t]))
    return mesa_output_at


@pytest.mark.parametrize("key, fn, hint", [
    ("sherman_morrison_step", _wrong_sm(sign=-1.0), "must be subtracted"),
    ("sherman_morrison_step", _wrong_sm(denom=-1.0), "1 − kᵀ R k belongs to the downdate"),
    ("sherman_morrison_step", _wrong_sm(denom=0.0), "divide the correction"),
    ("mesa_output_at", _shifted_mesa(lam_map=lambda lam: 1 / lam), "1/λ"),
    ("mesa_output_at", _shifted_mesa(last=lambda t: t), "t' ≤ t, not t' < t"),
    ("ridge_next_state", lambda s, lam: solvers.causal_ridge_predict(s, lam, "j<t"), "pairs j < t"),
    ("ridge_next_state", lambda s, lam: solvers.causal_ridge_predict(s, 1 / lam, "j<=t"), "1/λ"),
    ("ridge_from_official", lambda lambdas: lambdas.clone(), "inverse"),
    ("ridge_from_official", lambda lambdas: 1 / lambdas, "must raise ValueError"),
])
def test_exercise_checkers_give_targeted_hints(key, fn, hint):
    ex = REGISTRY[f"mesa.{key}"]
    with pytest.raises(ExerciseFailed) as info:
        ex.check(fn)
    assert not isinstance(info.value, NotAttempted) and hint in str(info.value) and "Hint" in str(info.value)
