"""Tests for :mod:`icl_course.mesa.family`: the parallel (UT) form of the (gated) delta rule = its recurrence, the
DeltaNet-style layer (hand-built = the delta rule; same initialisation as the linear layer), conjugate gradients on the
mesa layer's system, validation, "would be caught" tests (the strict mask of the pseudo-value solve, the gate on the
old memory only), the claim-value functions and smoke tests of the chapter's experiments."""

import pytest
import torch

from icl_course import mesa, runtime, solvers, tasks
from icl_course.mesa import family as fam
from tests.helpers import F64, rel


def _states(seed, B=3, T=12, D=4):
    return tasks.sample_linear_dynamics(B, T, D, generator=runtime.generator(seed), dtype=F64).inputs


def _gated_loop(q, k, v, beta, alpha):
    """``S_t = α S_{t−1}(I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ`` from 0, ``o_t = S_t q_t``, one head at a time."""
    B, H, T, dk = q.shape
    out = torch.zeros(B, H, T, v.shape[-1], dtype=F64)
    for b in range(B):
        for h in range(H):
            S = torch.zeros(v.shape[-1], dk, dtype=F64)
            for t in range(T):
                kt, bt = k[b, h, t], float(beta[b, h, t])
                S = alpha * S @ (torch.eye(dk, dtype=F64) - bt * torch.outer(kt, kt)) + bt * torch.outer(v[b, h, t], kt)
                out[b, h, t] = S @ q[b, h, t]
    return out


def _qkvb(seed, B=2, H=3, T=9, dk=4, dv=5):
    g = runtime.generator(seed)
    q, k = (torch.randn(B, H, T, dk, generator=g, dtype=F64) / dk**0.5 for _ in range(2))
    v = torch.randn(B, H, T, dv, generator=g, dtype=F64)
    return q, k, v, torch.rand(B, H, T, generator=g, dtype=F64)


# ------------------------------------------------------------------------------------------- identities
@pytest.mark.parametrize("alpha", [1.0, 0.9, 0.5])
def test_parallel_form_equals_the_gated_recurrence(alpha):
    q, k, v, beta = _qkvb(0)
    assert rel(fam.delta_attention(q, k, v, beta, alpha), _gated_loop(q, k, v, beta, alpha)) < 1e-12


def test_parallel_form_would_catch_a_non_strict_mask():
    q, k, v, beta = _qkvb(1)
    ref = _gated_loop(q, k, v, beta, 1.0)
    M = torch.eye(9, dtype=F64) + beta[..., None] * (k @ k.mT).tril()  # diagonal included: k_t·k_t u_t, wrong
    U = torch.linalg.solve_triangular(M, beta[..., None] * v, upper=False)
    assert rel((q @ k.mT).tril() @ U, ref) > 1e-2


@pytest.mark.parametrize("alpha", [1.0, 0.8])
def test_gated_delta_on_states_is_the_recurrence_on_the_pairs(alpha):
    s = _states(2)
    prev, cur = solvers.causal_pairs(s)
    beta = fam.normalized_beta(s, 0.7)
    ref = _gated_loop(s[:, None], prev[:, None], cur[:, None], beta[:, None], alpha)[:, 0]
    assert rel(fam.causal_gated_delta_predict(s, alpha, beta), ref) < 1e-12
    if alpha == 1.0:
        assert rel(fam.causal_gated_delta_predict(s, 1.0, beta), solvers.causal_delta_predict(s, beta)) < 1e-12
    else:  # the gate multiplies only the old memory: gating the write too would be caught
        assert rel(fam.causal_gated_delta_predict(s, alpha, beta),
                   alpha * fam.causal_gated_delta_predict(s, alpha, beta / alpha)) > 1e-3


def test_normalised_steps_fit_the_newest_pair_exactly():
    s = _states(3)
    prev, cur = solvers.causal_pairs(s)
    beta = fam.normalized_beta(s, 1.0)
    assert torch.all(beta[:, 0] == 0) and torch.all(beta[:, 1:] > 0)  # s_0 = 0 has no direction
    # query = the newest key: S_t s_{t−1} = s_t for every t ≥ 2 (Kaczmarz's projection)
    recall = fam.delta_attention(prev[:, None], prev[:, None], cur[:, None], beta[:, None])[:, 0]
    assert rel(recall[:, 1:], cur[:, 1:]) < 1e-12


def test_constructed_delta_layer_is_the_delta_rule_and_exactness_value():
    b = tasks.sample_linear_dynamics(4, 20, 10, generator=runtime.generator(4), dtype=F64)
    got = mesa.model_predictions(fam.constructed_delta_layer(10, 0.3), b)
    assert rel(got, solvers.causal_delta_predict(b.inputs, 0.3)) < 1e-12
    v = fam.family_exactness(seed=0)
    assert v.layer < 1e-10 and v.parallel < 1e-10


def test_delta_layer_heads_and_normalisation():
    g = runtime.generator(5)
    D, H, k = 6, 2, 3
    W_Q, W_K, W_V = (torch.randn(H * k, D, generator=g, dtype=F64) for _ in range(3))
    W_O = torch.randn(D, H * k, generator=g, dtype=F64)
    E = torch.randn(2, 7, D, generator=g, dtype=F64)
    for normalize in (False, True):
        layer = fam.DeltaLayer.from_matrices(W_Q, W_K, W_V, W_O, n_heads=H, beta=0.4, normalize=normalize)
        split = lambda W: (E @ W.T).view(2, 7, H, k).transpose(1, 2)  # (B, H, T, k)
        q, kk, v = split(W_Q), split(W_K), split(W_V)
        if normalize:
            q, kk = q / q.norm(dim=-1, keepdim=True), kk / kk.norm(dim=-1, keepdim=True)
        o = _gated_loop(q, kk, v, torch.full((2, H, 7), 0.4, dtype=F64), 1.0)
        with torch.no_grad():
            out = layer(E)
        assert rel(out, E + o.transpose(1, 2).reshape(2, 7, H * k) @ W_O.T) < 1e-12


def test_delta_model_starts_from_the_linear_layers_weights():
    cfg = mesa.ONE_LAYER.cpu
    delta, linear = fam.new_delta_model(cfg, seed=3).layers[0], mesa.new_causal_lsa(cfg, seed=3).layers[0]
    for name, m in linear.matrices().items():
        assert torch.equal(delta.matrices()[name], m), name
    assert torch.allclose(delta.beta(torch.zeros(1, 2, 40)), torch.full((1, cfg.n_heads, 2), 0.5))


# ------------------------------------------------------------------------------------ conjugate gradients
def test_cg_first_step_and_nested_iterates():
    s = _states(6, T=8)
    prev, cur = solvers.causal_pairs(s)
    A = torch.cumsum(prev[..., :, None] * prev[..., None, :], 1) + 0.5 * torch.eye(4, dtype=F64)
    C = torch.cumsum(cur[..., :, None] * prev[..., None, :], 1)
    a = (s * s).sum(-1, keepdim=True) / (s * (A @ s[..., None])[..., 0]).sum(-1, keepdim=True)
    # one CG step from 0 is one steepest-descent step with exact line search: z = (qᵀq / qᵀAq) q
    assert rel(fam.causal_cg_ridge_predict(s, 0.5, 1), (C @ (a * s)[..., None])[..., 0]) < 1e-12
    path = fam.cg_path(s, 0.5, (1, 3, 4))
    for k in (1, 3, 4):
        assert rel(path[k], fam.causal_cg_ridge_predict(s, 0.5, k)) < 1e-14


@pytest.mark.parametrize("lam", [1e-3, 0.1])
def test_cg_from_zero_is_exact_at_every_position_up_to_its_number_of_steps(lam):
    # A_t + λI = λI + rank ≤ t − 1 (s_0 = 0) has at most t distinct eigenvalues, so k CG steps are exact for t ≤ k
    s = _states(10, B=6, T=12, D=8)
    ridge = solvers.causal_ridge_predict(s, lam)
    path = fam.cg_path(s, lam, (2, 3, 5))
    err = lambda p, t: rel(p[:, t - 1], ridge[:, t - 1])  # position t (1-based)
    for k, p in path.items():
        assert max(err(p, t) for t in range(2, k + 1)) < 1e-8, k
        assert err(p, k + 2) > 1e-4, k  # two positions later the Krylov space is too small
    # steepest descent (directions not conjugated) is not exact at t = k: would be caught
    prev, _ = solvers.causal_pairs(s)
    A = torch.cumsum(prev[..., :, None] * prev[..., None, :], 1) + lam * torch.eye(8, dtype=F64)
    z, r = torch.zeros_like(s), s.clone()
    for _ in range(3):
        Ar = (A @ r[..., None])[..., 0]
        a = (r * r).sum(-1, keepdim=True) / (r * Ar).sum(-1, keepdim=True)
        z, r = z + a * r, r - a * Ar
    zc = torch.linalg.solve(A, s[..., None])[..., 0]
    assert rel(z[:, 2], zc[:, 2]) > 1e-4


def test_cg_jacobi_start():
    s = _states(11, T=8)
    prev, _ = solvers.causal_pairs(s)
    A = torch.cumsum(prev[..., :, None] * prev[..., None, :], 1) + 0.5 * torch.eye(4, dtype=F64)
    C = torch.cumsum(solvers.causal_pairs(s)[1][..., :, None] * prev[..., None, :], 1)
    z0 = s / A.diagonal(dim1=-2, dim2=-1)  # the Jacobi guess
    r0 = s - (A @ z0[..., None])[..., 0]
    a = (r0 * r0).sum(-1, keepdim=True) / (r0 * (A @ r0[..., None])[..., 0]).sum(-1, keepdim=True)
    one = fam.causal_cg_ridge_predict(s, 0.5, 1, start="jacobi")
    assert rel(one[:, 1:], (C @ (z0 + a * r0)[..., None])[:, 1:, :, 0]) < 1e-12  # t = 1: A = λI, z0 is exact
    assert rel(one, fam.causal_cg_ridge_predict(s, 0.5, 1)) > 1e-3  # a different start
    assert rel(fam.causal_cg_ridge_predict(s, 0.5, 4, start="jacobi"), solvers.causal_ridge_predict(s, 0.5)) < 1e-8


def test_switching_dynamics_changes_its_transition_matrix_once():
    b = fam.switching_dynamics(5, seed=3, switch=20)
    assert b.states.shape == (5, 51, 10) and b.states.dtype == F64
    first = tasks.sample_linear_dynamics(5, 50, 10, noise_std=0.01, generator=runtime.generator(3), dtype=F64)
    assert torch.equal(b.inputs[:, :21], first.inputs[:, :21])  # s_1 … s_21: the first regime's
    resid = lambda W, t: float((b.targets[:, t - 1] - (W @ b.inputs[:, t - 1, :, None])[..., 0]).norm(dim=-1).max())
    assert max(resid(first.W, t) for t in range(1, 21)) < 0.1  # targets of t ≤ switch: the first W
    assert max(resid(b.W, t) for t in range(21, 51)) < 0.1  # of t > switch: the second
    assert min(resid(b.W, t) for t in range(1, 20)) > 0.1 and resid(first.W, 21) > 0.1


def test_cg_with_D_steps_solves_a_well_conditioned_system():
    s = _states(7)
    ridge = solvers.causal_ridge_predict(s, 1.0)
    assert rel(fam.causal_cg_ridge_predict(s, 1.0, 4), ridge) < 1e-8  # D = 4
    assert rel(fam.causal_cg_ridge_predict(s, 1.0, 2), ridge) > 1e-4  # fewer steps are not exact


# --------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("call,match", [
    (lambda q, k, v, b: fam.delta_attention(q[0], k, v, b), "q must have shape"),
    (lambda q, k, v, b: fam.delta_attention(q, k[..., :2], v, b), "must agree"),
    (lambda q, k, v, b: fam.delta_attention(q, k, v, b[..., :3]), r"beta must have shape \(B, H, T\)"),
    (lambda q, k, v, b: fam.delta_attention(q, k, v, b, alpha=1.5), r"alpha must be in \(0, 1\]"),
    (lambda q, k, v, b: fam.delta_attention(q, k, v, b, alpha=0.0), r"alpha must be in \(0, 1\]"),
])
def test_delta_attention_rejects_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(*_qkvb(8))


@pytest.mark.parametrize("call,match", [
    (lambda s: fam.causal_gated_delta_predict(s, 1.0, torch.ones(3, 5, dtype=F64)), r"\(B, T\) = \(3, 12\)"),
    (lambda s: fam.causal_gated_delta_predict(s, 1.0, -0.1), "beta must be >= 0"),
    (lambda s: fam.causal_cg_ridge_predict(s, 0.0, 2), "lam must be > 0"),
    (lambda s: fam.causal_cg_ridge_predict(s, 1e-3, 0), "steps must be"),
    (lambda s: fam.cg_path(s[0], 1e-3, (1,)), "states must have shape"),
    (lambda s: fam.cg_path(s, 1e-3, (1,), start="ones"), "start must be 'zero' or 'jacobi'"),
    (lambda s: fam.switching_dynamics(2, seed=0, switch=50), "switch must be < seq_len"),
    (lambda s: fam.DeltaLayer.from_matrices(*(torch.eye(4, dtype=F64),) * 4, beta=1.0), r"beta must be in \(0, 1\)"),
    (lambda s: fam.DeltaLayer.from_matrices(torch.eye(4), torch.eye(3), torch.eye(4), torch.eye(4)), "W_K must have"),
    (lambda s: fam.DeltaLayer(8, attention="softmax"), "attention is 'linear'"),
])
def test_family_rejects_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(_states(9))


# ------------------------------------------------------------------------------- the chapter's experiments
def test_family_curves_ordering_and_cg_sweep_smoke():
    ev = mesa.dynamics_eval_set(64, seed=2, settings=mesa.DYNAMICS)
    fit = fam.family_curves(ev, 0.03)
    assert set(fit.curves) >= {"GD-1 (η*)", "delta rule (β*)", "CG-8", "ridge, pairs j ≤ t"}
    assert all(c.shape == (50,) for c in fit.curves.values())
    order = fam.family_ordering(fit)
    assert order.ridge < order.delta_normalized < order.gd < order.zero and len(order.se) == 4
    assert fit.params["alpha_gated"] in (0.9, 0.95, 0.98, 1.0)
    sweep = fam.cg_sweep(ev, lams=(1e-3, 1.0), steps=(1, 8))
    assert sweep.means.shape == (2, 2) and sweep.full_error[-1] < 1e-4
    v = fam.cg_conditioning(sweep, float(fit.curves["zero predictor"].mean()))
    assert v.small == tuple(float(x) for x in sweep.means[0]) and v.large_exact == float(sweep.exact[-1])


def test_delta_vs_linear_and_a_short_training_run():
    curves = {k: torch.full((50,), float(i)) for i, k in enumerate(
        ("DeltaNet-style layer", "linear attention layer", "delta rule, learned β", "delta rule, normalised keys",
         "GD-1 (η*)"))}
    assert fam.delta_vs_linear(curves, 0.6) == fam.DeltaVsLinear(0.0, 1.0, 2.0, 3.0, 4.0, 0.6)
    run = fam.train_delta_layer(mesa.ONE_LAYER.cpu, seed=0, steps=3, eval_size=8, progress=False)
    assert run.history.steps == 3 and isinstance(run.model.layers[0], fam.DeltaLayer)
