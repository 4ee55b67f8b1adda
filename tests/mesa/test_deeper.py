"""Part IV, chapter "Deeper layers: preconditioned multi-step GD": K-step GD and its Neumann form, the fitted step
sizes, the path to RevAlg-d, the structure measure, the probes, training (smoke) and the claim judges."""

from __future__ import annotations

import pytest
import torch

from icl_course import mesa, reproduce, runtime, solvers, tasks
from icl_course.causal import CausalSelfAttention, CausalStack
from icl_course.claims.mesa import deeper as cl
from tests.helpers import F64, rel


def _batch(seed=0, B=4, T=12, D=4):
    return tasks.sample_linear_dynamics(B, T, D, generator=runtime.generator(seed), dtype=F64)


def _grams(states):
    prev, cur = solvers.causal_pairs(states)
    A = torch.cumsum(prev[..., :, None] * prev[..., None, :], dim=1)
    C = torch.cumsum(cur[..., :, None] * prev[..., None, :], dim=1)
    return A, C


def _random_stack(n_layers=2, D=4, heads=2, key=8, seed=0, std=0.3):
    g = runtime.generator(seed)
    layers = [CausalSelfAttention(4 * D, heads, key, init_std=std, generator=g).double() for _ in range(n_layers)]
    return CausalStack(layers)


# ------------------------------------------------------------------------------------- K-step GD
@pytest.mark.parametrize("seed", [0, 1])
def test_one_step_is_causal_gd(seed):
    s = _batch(seed).inputs
    assert rel(mesa.gd_steps_predict(s, [0.07]), solvers.causal_gd_predict(s, 0.07)) < 1e-12


def test_equal_steps_are_the_truncated_neumann_series():
    s = _batch(2).inputs
    A, C = _grams(s)
    eta, K = 0.04, 5
    I = torch.eye(4, dtype=F64)
    series = sum(torch.linalg.matrix_power(I - eta * A, i) for i in range(K))  # (B, T, D, D)
    pred = ((C @ (eta * series)) @ s[..., None])[..., 0]
    assert rel(mesa.gd_steps_predict(s, [eta] * K), pred) < 1e-12


def test_many_small_steps_reach_least_squares_once_the_gram_matrix_has_full_rank():
    s = _batch(3, B=2, T=30).inputs
    A, _ = _grams(s)
    eta = 1.0 / float(torch.linalg.eigvalsh(A[:, -1]).max())
    gd = mesa.gd_steps_predict(s, [eta] * 4000)
    ridge = solvers.causal_ridge_predict(s, 1e-10)
    assert rel(gd[:, -1], ridge[:, -1]) < 1e-6  # at t = T, A_T has full rank and GD converges to its minimiser


def test_step_order_does_not_matter_but_values_do():
    s = _batch(4).inputs
    assert rel(mesa.gd_steps_predict(s, [0.02, 0.09]), mesa.gd_steps_predict(s, [0.09, 0.02])) < 1e-12
    assert rel(mesa.gd_steps_predict(s, [0.02, 0.09]), mesa.gd_steps_predict(s, [0.055, 0.055])) > 1e-3


@pytest.mark.parametrize("lrs", [[0.05, 0.05], [0.013, 0.049], [0.1, 0.02]])
def test_two_hand_built_layers_are_two_gd_steps(lrs):
    s = _batch(12, T=15, D=4).inputs
    model = mesa.constructed_gd2_model(*lrs, dim=4, dtype=F64)
    assert rel(mesa.model_predictions(model, _batch(12, T=15, D=4)), mesa.gd_steps_predict(s, lrs)) < 1e-12
    assert rel(mesa.model_predictions(model, _batch(12, T=15, D=4)), mesa.gd_steps_predict(s, [sum(lrs)])) > 1e-3
    assert cl.construction_error_gd2() < 1e-12


def test_gd_steps_query_is_what_the_steps_apply_to_the_query():
    s = _batch(13).inputs
    A, C = _grams(s)
    for normalize in (False, True):
        lrs = [0.5, 1.5] if normalize else [0.02, 0.06]
        z = mesa.gd_steps_query(s, lrs, normalize=normalize)
        assert rel((C @ z[..., None])[..., 0], mesa.gd_steps_predict(s, lrs, normalize=normalize)) < 1e-12
    ev = torch.linalg.eigvalsh(A[:, -1])
    ok = ev[:, -1] / ev[:, 0] < 50  # well-conditioned A_T: 3,000 steps converge
    assert int(ok.sum()) >= 2
    z = mesa.gd_steps_query(s, [1.0] * 3000, normalize=True)
    assert rel(z[ok, -1], torch.linalg.solve(A[ok, -1], s[ok, -1])) < 1e-6  # → A_t⁻¹ s_t once A_t has full rank


def test_normalized_steps_divide_by_the_largest_eigenvalue():
    s = _batch(14).inputs
    A, _ = _grams(s)
    top = torch.linalg.eigvalsh(A)[..., -1]  # (B, T)
    b, t = 2, 9
    direct = mesa.gd_steps_predict(s[b:b + 1], [0.7 / float(top[b, t]), 1.3 / float(top[b, t])])[0, t]
    assert rel(mesa.gd_steps_predict(s, [0.7, 1.3], normalize=True)[b, t], direct) < 1e-12
    assert torch.equal(mesa.gd_steps_predict(s, [0.7], normalize=True)[:, 0], torch.zeros_like(s[:, 0]))  # A_1 = 0


def test_fitted_normalized_steps_use_the_spectral_loss_too():
    from icl_course.mesa.deeper import _spectral, _spectral_loss

    b = mesa.dynamics_eval_set(40, seed=15)
    lrs = torch.tensor([0.8, 1.7], dtype=F64)
    direct = mesa.per_step_loss(mesa.gd_steps_predict(b.inputs.double(), lrs, normalize=True),
                                b.targets.double()).mean()
    assert abs(float(_spectral_loss(lrs, *_spectral(b, normalize=True))) / float(direct) - 1) < 1e-10
    fit = mesa.fit_gd_steps(b, 2, normalize=True)
    assert fit.loss < float(direct)


def test_gd_query_probe_rises_with_the_number_of_steps():
    fit, ev = mesa.dynamics_eval_set(300, seed=16), mesa.dynamics_eval_set(300, seed=17)
    low = mesa.gd_query_probe(fit, ev, torch.tensor([0.03]))[14:].mean()
    high = mesa.gd_query_probe(fit, ev, torch.tensor([0.6, 1.0, 1.4, 3.0, 6.0]), normalize=True)[14:].mean()
    assert float(high) > float(low) + 0.1


def test_gd_steps_rejects_bad_input():
    s = _batch().inputs
    with pytest.raises(ValueError, match="lrs"):
        mesa.gd_steps_predict(s, [])
    with pytest.raises(ValueError, match="lrs"):
        mesa.gd_steps_predict(s, [0.1, float("nan")])
    with pytest.raises(ValueError, match="lrs"):
        mesa.gd_steps_predict(s, [[0.1]])
    with pytest.raises(ValueError, match="states"):
        mesa.gd_steps_predict(s[0], [0.1])


@pytest.mark.parametrize("lrs", [[0.03], [0.01, 0.05], [0.006, 0.012, 0.03, 0.09]])
def test_the_spectral_loss_is_the_loss_of_gd_steps_predict(lrs):
    from icl_course.mesa.deeper import _spectral, _spectral_loss

    b = mesa.dynamics_eval_set(40, seed=11)
    lrs = torch.tensor(lrs, dtype=F64)
    direct = mesa.per_step_loss(mesa.gd_steps_predict(b.inputs.double(), lrs), b.targets.double()).mean()
    assert abs(float(_spectral_loss(lrs, *_spectral(b))) / float(direct) - 1) < 1e-10


def test_fitted_distinct_steps_beat_the_best_equal_steps():
    b = mesa.dynamics_eval_set(200, seed=5)
    one = mesa.fit_gd_steps(b, 1)
    two = mesa.fit_gd_steps(b, 2)
    loss = lambda eta: float(mesa.per_step_loss(mesa.gd_steps_predict(b.inputs.double(), [eta, eta]),
                                                b.targets.double()).mean())
    equal = loss(solvers.line_search(loss, 0.0, 0.08, tol=1e-6))
    assert two.lrs.shape == (2,) and bool(two.lrs[0] < two.lrs[1])  # sorted and distinct
    assert two.loss < equal - 0.02 < one.loss  # a second step helps, and distinct step sizes help more
    assert abs(float(one.lrs[0]) - 0.031) < 0.004  # the one-step optimum of the first chapter


# ----------------------------------------------------------------------------- RevAlg-d and the path
def test_the_path_starts_at_the_trained_model_and_ends_at_revalg():
    model = _random_stack()
    E = tasks.mesa_tokens(_batch(6).inputs)
    with torch.no_grad():
        assert rel(mesa.interpolated_model(model, 0.0, dim=4)(E), model(E)) < 1e-12
        assert rel(mesa.interpolated_model(model, 1.0, dim=4)(E), mesa.revalg_model(model, 4)(E)) < 1e-12
        half = mesa.interpolated_model(model, 0.5, dim=4)(E)
        assert rel(half, model(E)) > 1e-3 and rel(half, mesa.revalg_model(model, 4)(E)) > 1e-3


def test_structure_is_one_for_revalg_and_low_for_random_weights():
    model = _random_stack(seed=1)
    structured = mesa.product_structure(mesa.revalg_model(model, 4), dim=4)
    random = mesa.product_structure(model, dim=4)
    assert structured.shape == random.shape == (2, 2, 2)
    assert torch.allclose(structured, torch.ones_like(structured), atol=1e-6)
    assert float(random.max()) < 0.6  # unstructured: about 1/dim of the energy on block diagonals


def test_deep_vs_revalg_of_a_structured_model_has_no_gap():
    model = mesa.revalg_model(_random_stack(seed=2, std=0.05), 4)
    b = mesa.dynamics_eval_set(50, seed=3, settings=mesa.DynamicsSettings(dim=4))
    v = mesa.deep_vs_revalg(model.float(), b, [0, 0.5, 1], dim=4)
    assert abs(v.trained - v.revalg) < 1e-5 and abs(v.path_max - v.trained) < 1e-5


def test_interpolation_rejects_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        mesa.interpolated_model(_random_stack(), 1.5, dim=4)
    g = runtime.generator(0)
    soft = CausalStack([CausalSelfAttention(16, 1, 4, attention="softmax", generator=g)])
    with pytest.raises(TypeError, match="linear"):
        mesa.interpolated_model(soft, 0.5, dim=4)


# ---------------------------------------------------------------------------------------------- probes
def test_preconditioned_input_uses_the_keys_before_the_query():
    s = _batch(7, B=2, T=9).inputs
    z = mesa.preconditioned_input(s, 0.1)
    for t in (0, 4, 8):  # 0-based: keys s_0 = 0, s_1 … s_{t−1}
        K = torch.cat([torch.zeros(1, 4, dtype=F64), s[1, :t]])
        direct = torch.linalg.solve(K.T @ K + 0.1 * torch.eye(4, dtype=F64), s[1, t])
        assert rel(z[1, t], direct) < 1e-12
    with_query = torch.linalg.solve(s[1, :9].T @ s[1, :9] + 0.1 * torch.eye(4, dtype=F64), s[1, 8])
    assert rel(z[1, 8], with_query) > 0.01
    with pytest.raises(ValueError, match="lam"):
        mesa.preconditioned_input(s, 0.0)


def test_probe_r2_is_one_for_a_linear_target_and_near_zero_for_noise():
    g = runtime.generator(8)
    X, Xt = torch.randn(300, 5, 6, generator=g, dtype=F64), torch.randn(300, 5, 6, generator=g, dtype=F64)
    M = torch.randn(6, 3, generator=g, dtype=F64)
    r2 = mesa.probe_r2(X, X @ M, Xt, Xt @ M)
    assert r2.shape == (5,) and torch.allclose(r2, torch.ones(5, dtype=F64), atol=1e-10)
    n = 40  # few sequences: fitted in-sample, a probe of noise would explain about 6/40 of it
    noise = mesa.probe_r2(X[:n], torch.randn(n, 5, 3, generator=g, dtype=F64), Xt[:n],
                          torch.randn(n, 5, 3, generator=g, dtype=F64))
    assert float(noise.mean()) < 0  # held out, it explains nothing (and over-fitting makes it negative)
    with pytest.raises(ValueError, match="probe shapes"):
        mesa.probe_r2(X, X @ M, Xt[:, :4], Xt[:, :4] @ M)


def test_inlier_sequences_drop_a_planted_outlier():
    y = torch.randn(50, 6, 3, generator=runtime.generator(9), dtype=F64)
    y[17, 2] *= 1000
    keep = mesa.inlier_sequences(y)
    assert not bool(keep[17]) and int(keep.sum()) >= 45


def test_layer_activations_are_the_stream_after_each_layer():
    model = _random_stack(3)
    E = tasks.mesa_tokens(_batch(10).inputs)
    acts = mesa.layer_activations(model, E)
    assert len(acts) == 4 and acts[0] is E
    with torch.no_grad():
        assert torch.equal(acts[-1], model(E)) and torch.equal(acts[1], model.layers[0](E))


# ------------------------------------------------------------------------------------ training, claims
def test_train_deep_smoke():
    run = mesa.train_deep(2, seed=0, steps=3, progress=False)
    assert len(run.model.layers) == 2 and run.model.clip == 1.5 and run.model.masked_dims == 0
    assert run.model.layers[0].n_heads == mesa.DEEPER.cpu.n_heads


def test_m7_value_averages_late_positions():
    T = 50
    r = torch.zeros(3, T, dtype=F64)
    r[:, cl.MIN_T - 1:] = torch.tensor([0.1, 0.5, 0.9], dtype=F64)[:, None]
    r[:, :cl.MIN_T - 1] = -5.0  # early positions are left out
    v = cl.m7_value(mesa.ProbeScores(r, r / 2), r[1] / 5)
    assert v.next == pytest.approx((0.1, 0.5, 0.9)) and v.preconditioned == pytest.approx((0.05, 0.25, 0.45))
    assert v.gd2_reference == pytest.approx(0.1)


def _judge(cid, value):
    return reproduce.REGISTRY[cid].judge(value, None)


def test_claim_judges_can_fail():
    good = mesa.DepthVsSteps({2: 0.45, 4: 0.30}, {1: 0.90, 2: 0.66, 4: 0.44, 8: 0.29},
                             {1: 0.55, 2: 0.33, 4: 0.23, 8: 0.20}, 0.185)
    assert _judge("M11", good)
    assert not _judge("M11", good._replace(trained={2: 0.70, 4: 0.30}))  # no better than GD-2
    assert not _judge("M11", good._replace(trained={2: 0.30, 4: 0.45}))  # depth hurts
    assert not _judge("M11", good._replace(gd_normalized={1: 0.55, 2: 0.50, 4: 0.23, 8: 0.2}))  # normalised GD worse
    ok = mesa.DeepVsRevAlg(0.30, 0.295, 0.30, 0.85, 0.5)
    assert _judge("M10", ok)
    assert not _judge("M10", ok._replace(revalg=0.35))
    assert not _judge("M10", ok._replace(path_max=0.32))
    assert not _judge("M10", ok._replace(structure_mean=0.5))
    probes = cl.M7Value((0.0, 0.6, 0.8, 0.9, 0.95), (0.13, 0.19, 0.28, 0.27, 0.27), 0.16)
    assert _judge("M7", probes)
    assert not _judge("M7", probes._replace(gd2_reference=0.3))
    assert not _judge("M7", probes._replace(next=(0.0, 0.6, 0.5, 0.9, 0.95)))
    assert not _judge("M7", probes._replace(next=(0.0, 0.2, 0.3, 0.4, 0.45)))
    assert _judge("M19", 1e-15) and not _judge("M19", 1e-6)


# ------------------------------------------------------------------------------- the exercises' slips
def test_exercise_checkers_name_the_classic_slips():
    from icl_course.exercises import REGISTRY, ExerciseFailed
    from icl_course.exercises.mesa import deeper as ex

    def wrong_order(states, lrs):
        prev = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)
        A = torch.cumsum(prev[..., :, None] * prev[..., None, :], dim=1)
        C = torch.cumsum(states[..., :, None] * prev[..., None, :], dim=1)
        W = torch.zeros_like(C)
        for eta in lrs:
            W = W + eta * (C - A @ W)
        return (W @ states[..., None])[..., 0]

    def one_term_too_many(A, C, eta, K):
        return REGISTRY["mesa.neumann_weights"].solution(A, C, eta, K + 1)

    def whole_block_mean(M, dim):
        S = M.shape[0] // dim
        return torch.kron(M.reshape(S, dim, S, dim).mean((1, 3)), torch.eye(dim, dtype=M.dtype))

    def query_in_gram(states, lam, t):
        S = states[: t + 1]
        return torch.linalg.solve(S.T @ S + lam * torch.eye(states.shape[1], dtype=states.dtype), states[t])

    for check, wrong, message in ((ex.check_gd_steps_next_state, wrong_order, "from the right"),
                                  (ex.check_neumann_weights, one_term_too_many, "K terms"),
                                  (ex.check_structured_blocks, whole_block_mean, "diagonal only"),
                                  (ex.check_preconditioned_query, query_in_gram, "before the query")):
        with pytest.raises(ExerciseFailed, match=message):
            check(wrong)
