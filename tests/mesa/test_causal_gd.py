"""Part IV, chapter "Causal linear attention is one GD step": the construction, the read-off algorithm, the fitted
one-step GD, training (smoke), the claim values and their judges."""

from __future__ import annotations

import math

import pytest
import torch

from icl_course import mesa, reproduce, runtime, solvers, tasks, train
from icl_course.causal import CausalSelfAttention, CausalStack
from icl_course.claims import mesa as cl
from tests.helpers import F64, rel


def _batch(seed=0, B=4, T=12, D=4):
    return tasks.sample_linear_dynamics(B, T, D, generator=runtime.generator(seed), dtype=F64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_constructed_layer_is_one_gd_step(seed):
    assert mesa.construction_error(seed=seed) < 1e-12
    b = _batch(seed, D=4)
    model = mesa.constructed_causal_lsa(4, 0.05, F64)
    with torch.no_grad():
        out = model(tasks.mesa_tokens(b.inputs))
    assert torch.equal(out[..., 4:], tasks.mesa_tokens(b.inputs)[..., 4:]), "only the zero slot is written"
    assert rel(out[..., :4], solvers.causal_gd_predict(b.inputs, 0.05)) < 1e-12


def test_construction_would_catch_reading_the_wrong_slot():
    b = _batch(3)
    good = mesa.constructed_causal_lsa(4, 0.05, F64).layers[0].matrices()
    wrong = CausalStack([CausalSelfAttention.from_matrices(good["W_K"], good["W_Q"], good["W_V"], good["W_O"])])
    pred = mesa.model_predictions(wrong, b)
    assert rel(pred, solvers.causal_gd_predict(b.inputs, 0.05)) > 0.05  # queries s_{t-1}, keys s_t: not GD


def test_head_products_and_block_means_of_the_construction():
    layer = mesa.constructed_causal_lsa(4, 0.05, F64).layers[0]
    ((kq, pv),) = mesa.head_products(layer)
    kq_means, pv_means = mesa.block_means(kq, 4), mesa.block_means(pv, 4)
    expect_kq = torch.zeros(4, 4, dtype=F64)
    expect_kq[3, 2] = 1.0  # key slot s_{j−1} × query slot s_t
    expect_pv = torch.zeros(4, 4, dtype=F64)
    expect_pv[0, 2] = 0.05  # value s_j into the zero slot, times η
    assert torch.equal(kq_means, expect_kq) and torch.allclose(pv_means, expect_pv)
    coef = mesa.effective_coefficients(layer, 4)
    expect = torch.zeros(8, dtype=F64)
    expect[mesa.GD_FEATURE] = 0.05
    assert torch.allclose(coef, expect)
    assert mesa.block_diagonal_energy(kq, 4) == pytest.approx(1.0)
    assert mesa.FAMILY_NAMES[mesa.GD_FEATURE] == "key s_{j−1}·query s_t → s_j"


def test_family_features_span_the_one_layer_models():
    b = _batch(9, D=4)
    F = mesa.family_features(b.inputs)
    assert F.shape == (8, 4, 12, 4)
    assert rel(F[mesa.GD_FEATURE], solvers.causal_gd_predict(b.inputs, 1.0)) < 1e-12
    # a random structured layer computes exactly the combination given by its effective coefficients
    raw = CausalSelfAttention(16, 2, 5, init_std=0.3, generator=torch.Generator().manual_seed(1), dtype=F64)
    layer = mesa.structured_layer(raw, 4)
    model = CausalStack([layer], masked_dims=8)
    got = mesa.model_predictions(model, b, masked=True)
    assert rel(got, mesa.family_predict(b.inputs, mesa.effective_coefficients(layer, 4))) < 1e-10


def test_family_parities_are_how_each_term_flips_under_w_to_minus_w():
    b = _batch(5, B=3, T=9, D=4)
    t = torch.arange(b.states.shape[1], dtype=F64)  # 0-based index m − 1 of s_m
    flipped = b.states * (-1.0) ** t[None, :, None]  # s_m → (−1)^{m−1} s_m: the sequence of −W* (noise flipped)
    F, F_flip = mesa.family_features(b.inputs), mesa.family_features(flipped[:, :-1])
    target_sign = -((-1.0) ** t[:-1])  # s_{t+1} gains (−1)^t; index i = t − 1
    parity = mesa.family_parities()
    assert parity.tolist() == [-1, 1, 1, -1, 1, -1, -1, 1] and int(parity[mesa.GD_FEATURE]) == 1
    for k in range(8):  # feature k at position t gains parity_k × the target's sign
        assert torch.allclose(F_flip[k], parity[k] * target_sign[None, :, None] * F[k], atol=1e-12), k


def test_fit_family_recovers_a_planted_combination_and_alignment_reads_the_step():
    b = tasks.sample_linear_dynamics(64, 12, 4, generator=runtime.generator(10), dtype=F64)
    planted = torch.tensor([0.0, 0.01, 0.0, 0.0, 0.05, 0.0, -0.02, 0.0], dtype=F64)
    fitted = mesa.fit_family(b.inputs, mesa.family_predict(b.inputs, planted))
    assert torch.allclose(fitted, planted, atol=1e-9)
    c, r2 = mesa.gd_alignment(solvers.causal_gd_predict(b.inputs, 0.07), b.inputs)
    assert c == pytest.approx(0.07) and r2 == pytest.approx(1.0)
    _, r2_mix = mesa.gd_alignment(mesa.family_predict(b.inputs, planted), b.inputs)
    assert r2_mix < 0.999


def test_better_step_sizes_and_conditioning():
    b = mesa.dynamics_eval_set(256, seed=11, dtype=F64)
    eta, loss = mesa.gd_lr_line_search(b)
    v = mesa.gd_step_variants(b)
    assert float(v["GD-1, best η per position"].mean()) < loss  # a per-position oracle beats one η
    assert float(v["GD-1 normalised by t"].mean()) < loss
    assert torch.isfinite(v["GD-1, best η per position"]).all()
    kappa = mesa.condition_numbers(b.inputs, 50)
    assert kappa.shape == (256,) and float(kappa.min()) >= 1.0


def test_structured_layer_keeps_a_structured_layer_and_drops_the_rest():
    b = _batch(4)
    built = mesa.constructed_causal_lsa(4, 0.05, F64)
    again = mesa.revalg_model(built, 4)
    assert rel(mesa.model_predictions(again, b), mesa.model_predictions(built, b)) < 1e-12
    noisy = CausalSelfAttention(16, 2, 6, init_std=0.3, generator=torch.Generator().manual_seed(0), dtype=F64)
    structured = mesa.structured_layer(noisy, 4)
    for (kq, pv), (kq_s, pv_s) in zip(mesa.head_products(noisy), mesa.head_products(structured)):
        assert torch.allclose(mesa.block_means(kq, 4), mesa.block_means(kq_s, 4))
        assert torch.allclose(mesa.block_means(pv, 4), mesa.block_means(pv_s, 4))
        off = kq_s.reshape(4, 4, 4, 4).permute(0, 2, 1, 3) * (1 - torch.eye(4, dtype=F64))
        assert float(off.abs().max()) == 0.0, "only the diagonals of the blocks survive"


def test_block_means_checks_its_input():
    with pytest.raises(ValueError, match="dim"):
        mesa.block_means(torch.zeros(10, 10), 4)


def test_fitted_gd_starts_as_gd_and_learns_w0():
    b = _batch(5, D=10)
    model = mesa.FittedGD(10, lr=0.03, dtype=F64)
    pred = mesa.model_predictions(model, b)
    assert rel(pred, solvers.causal_gd_predict(b.inputs, 0.03)) < 1e-12
    with torch.no_grad():
        model.W0.copy_(torch.eye(10, dtype=F64) * 0.2)
    assert rel(mesa.model_predictions(model, b), solvers.causal_gd_predict(b.inputs, 0.03, 0.2 * torch.eye(10,
                                                                          dtype=F64))) < 1e-12


def test_fitted_gd_starts_from_a_random_w0_and_records_it():
    w0 = 0.3 * tasks.haar_orthogonal(1, 10, generator=runtime.generator(0), dtype=F64)[0]
    model = mesa.FittedGD(10, lr=0.03, dtype=F64, w0=w0)
    assert torch.equal(model.W0.detach(), w0) and torch.equal(model.w0_start, w0)
    assert float(model.w0_start.norm()) == pytest.approx(0.3 * math.sqrt(10))
    with pytest.raises(ValueError, match="w0"):
        mesa.FittedGD(10, w0=torch.zeros(3, 3))
    run = mesa.fit_gd_with_init(seed=0, steps=2, batch_size=4, progress=False)
    assert float(run.model.w0_start.norm()) == pytest.approx(0.3 * math.sqrt(10), rel=1e-5)
    assert not torch.equal(run.model.W0.detach(), run.model.w0_start)  # trained away from its start


def test_line_search_finds_the_minimum_of_the_gd_curve():
    b = mesa.dynamics_eval_set(256, seed=7, dtype=F64)
    eta, loss = mesa.gd_lr_line_search(b)
    for other in (0.8 * eta, 1.2 * eta):
        assert float(mesa.per_step_loss(solvers.causal_gd_predict(b.inputs, other), b.targets).mean()) > loss
    eta_c, loss_c = mesa.clipped_gd_line_search(b, clip=1.5)
    assert loss_c <= loss + 1e-9 and eta_c >= eta  # clipping the output permits a larger step


def test_training_smoke_and_settings():
    run = mesa.train_causal_lsa(seed=0, steps=3, eval_size=16, progress=False)
    assert isinstance(run, train.TrainedRun) and len(run.history.loss) == 3
    assert run.model.masked_dims == 20 and run.model.clip is None
    assert math.isfinite(run.history.eval_loss[-1])
    assert mesa.ONE_LAYER.pick("paper").weight_decay == 0.05
    clipped = mesa.train_causal_lsa(seed=0, steps=2, eval_size=8, activation_clip=1.5, progress=False)
    assert clipped.model.clip == 1.5
    fitted = mesa.fit_gd_with_init(seed=0, steps=2, batch_size=4)
    assert isinstance(fitted.model, mesa.FittedGD)


def test_sequence_loss_is_half_squared_error_over_dims_averaged_over_positions():
    pred = torch.zeros(2, 3, 2, dtype=F64)
    target = torch.ones(2, 3, 2, dtype=F64)
    target[:, 0] = 0
    curve = mesa.per_step_loss(pred, target)
    assert torch.allclose(curve, torch.tensor([0.0, 1.0, 1.0], dtype=F64))
    model = lambda E: torch.zeros_like(E)
    tokens = torch.zeros(2, 3, 8, dtype=F64)
    assert float(mesa.sequence_loss(model, (tokens, target))) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="same shape"):
        mesa.per_step_loss(pred, target[:, :2])


def test_baseline_curves_are_ordered():
    b = mesa.dynamics_eval_set(256, seed=8)
    c = mesa.baseline_curves(b, 0.032)
    means = {k: float(v.mean()) for k, v in c.items()}
    assert means["ridge, pairs j ≤ t"] < means["ridge, pairs j < t"] < means["GD-1 (η*)"] < means["zero predictor"]


# ---------------------------------------------------------------- claim values and their judges
def _judge(cid, value):
    return reproduce.evaluate(cid, value).status


def test_m_claims_judge_values_both_ways():
    gd = torch.full((50,), 0.9, dtype=F64)
    gd[34] = 0.58
    gd[-1] = 0.79
    assert _judge("M1", cl.m1_value(0.032, gd)) == "PASS"
    assert _judge("M1", cl.m1_value(0.05, gd)) == "FAIL"  # a step size far from the line search's
    flat = torch.full((50,), 0.9, dtype=F64)
    assert _judge("M1", cl.m1_value(0.032, flat)) == "FAIL"  # not U-shaped
    assert _judge("M2", cl.m2_value(gd + 0.01, gd, (0.033, 0.98), 0.032)) == "PASS"
    assert _judge("M2", cl.m2_value(gd * 0.9, gd, (0.033, 0.98), 0.032)) == "FAIL"  # not at GD-1's loss
    worse = gd.clone()
    worse[5] += 0.2
    assert _judge("M2", cl.m2_value(worse, gd, (0.033, 0.98), 0.032)) == "FAIL"  # curves must overlap at every t
    assert _judge("M2", cl.m2_value(gd, gd, (0.033, 0.80), 0.032)) == "FAIL"  # mostly something else than GD
    assert _judge("M2", cl.m2_value(gd, gd, (0.040, 0.98), 0.032)) == "FAIL"  # another step size
    inc, exc = torch.full((50,), 0.186, dtype=F64), torch.full((50,), 0.21, dtype=F64)
    inc[11], exc[11] = 0.0030, 0.0055
    assert _judge("M3", cl.m3_value(inc, exc)) == "PASS"
    assert _judge("M3", cl.m3_value(exc, inc)) == "FAIL"  # conventions swapped
    inc10 = inc.clone()
    inc10[11] = 0.0054  # what λ = 1e-2 gives at t = 12
    assert _judge("M3", cl.m3_value(inc10, exc)) == "FAIL"
    assert _judge("M8", cl.m8_value(gd, gd * 0.99, gd * 1.01, 0.04, 0.10)) == "PASS"
    assert _judge("M8", cl.m8_value(gd, gd * 1.05, gd * 1.01, 0.04, 0.10)) == "FAIL"  # the read-off is off
    assert _judge("M8", cl.m8_value(gd, gd * 1.01, gd * 1.0, 0.04, 0.10)) == "FAIL"  # GD alone does as well
    assert _judge("M8", cl.m8_value(gd, gd * 0.99, gd * 1.01, 0.12, 0.10)) == "FAIL"  # no closer than GD
    assert _judge("M8b", cl.m8b_value(gd, gd, inc, 0.95, 0.09)) == "PASS"
    assert _judge("M8b", cl.m8b_value(flat * 1.87, gd, inc, 0.95, 0.09)) == "FAIL"  # the zero predictor is no step
    assert _judge("M8b", cl.m8b_value(inc * 1.1, inc, inc, 0.95, 0.09)) == "FAIL"  # near the exact solution
    assert _judge("M8b", cl.m8b_value(gd, gd, inc, 0.95, 0.5)) == "FAIL"  # W₀ did not return towards 0
    assert _judge("M2a", 1e-16) == "PASS" and _judge("M2a", 1e-6) == "FAIL"


def test_curve_gap_reports_mean_and_worst_position():
    a = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    b = torch.tensor([1.0, 2.5, 2.0], dtype=F64)
    mean_gap, worst = mesa.curve_gap(a, b)
    assert mean_gap == pytest.approx(6 / 5.5 - 1) and worst == pytest.approx(1.0)


# ---------------------------------------------------------------- exercise checkers
def test_read_step_size_checker_rejects_block_agnostic_answers():
    from icl_course.exercises import REGISTRY
    from icl_course.exercises.mesa import causal_gd as ex

    ex.check_read_sequence_step_size(REGISTRY["mesa.read_sequence_step_size"].solution)

    def total_sums(W_Q, W_K, W_V, W_O, dim):  # ignores which blocks the weight is in
        return float((W_K.T @ W_Q).sum() / dim * (W_O @ W_V).sum() / dim)

    def all_value_slots(W_Q, W_K, W_V, W_O, dim):  # right score block, but sums the value slots s_j and s_{j−1}
        D = dim
        KQ, PV = W_K.T @ W_Q, W_O @ W_V
        return float(torch.diagonal(KQ[3 * D:, 2 * D:3 * D]).mean()
                     * (torch.diagonal(PV[:D, 2 * D:3 * D]).mean() + torch.diagonal(PV[:D, 3 * D:]).mean()))

    for wrong in (total_sums, all_value_slots):
        with pytest.raises(AssertionError, match="GD term"):
            ex.check_read_sequence_step_size(wrong)
