"""Part IV, chapter "Other sequences": contracting and partially observed dynamics, claims M25–M27."""

from __future__ import annotations

import pytest
import torch

from icl_course import mesa, reproduce, runtime, solvers, tasks
from icl_course.claims.mesa import variants as cl  # noqa: F401  (registers the claims)
from icl_course.exercises import REGISTRY

F64 = torch.float64
rel = lambda a, b: float((a - b).norm() / b.norm())


def _judge(cid, value):
    return reproduce.REGISTRY[cid].judge(value, reproduce.Context())


def _obs(seed=0, B=3, T=8, p=2):
    return torch.randn(B, T, p, generator=runtime.generator(seed), dtype=F64)


# ------------------------------------------------------------------------------------- the shared recipe
def test_train_sequence_model_passes_task_kw_and_view_and_keeps_the_default():
    stream = mesa.dynamics_stream(4, seed=3)
    again = mesa.dynamics_stream(4, seed=3, view=None)
    assert all(torch.equal(a, b) for a, b in zip(stream(0), again(0)))  # no view: the states themselves
    tok, tgt = mesa.dynamics_stream(4, seed=3, view=mesa.observed(5), tokens=mesa.history_layout(2))(0)
    assert tok.shape == (4, 50, 2 * 5 + 2 * 2 * 5) and tgt.shape == (4, 50, 5)
    ev = mesa.dynamics_eval_set(6, seed=4, **mesa.CONTRACTING)
    assert torch.equal(ev.states, mesa.contracting_eval_set(6, seed=4).states)
    assert float(torch.linalg.eigvalsh(ev.W.double()).max()) == pytest.approx(0.9, abs=1e-5)
    run = mesa.train_sequence_model(mesa.new_mesa_model(seed=0), seed=0, steps=2, batch_size=4, lr=1e-3, clip=1.0,
                                    eval_size=8, eval_every=1, task_kw=mesa.CONTRACTING, progress=False)
    assert torch.equal(run.eval_set.states, mesa.contracting_eval_set(8, seed=2).states)
    model = mesa.new_history_mesa_model(5, 3, seed=0)
    run = mesa.train_sequence_model(model, seed=0, steps=2, batch_size=4, lr=1e-3, clip=1.0, eval_size=8,
                                    eval_every=1, tokens=mesa.history_layout(3), view=mesa.observed(5), progress=False)
    assert torch.equal(run.eval_set.states, mesa.observed_eval_set(8, 5, seed=2).states)
    default = mesa.train_sequence_model(mesa.new_mesa_model(seed=0), seed=0, steps=2, batch_size=4, lr=1e-3, clip=1.0,
                                        eval_size=8, eval_every=1, progress=False)
    assert torch.equal(default.eval_set.states, mesa.dynamics_eval_set(8, seed=2).states)


def test_orthogonal_eigenvectors_give_a_symmetric_contraction_and_gaussian_stays_the_default():
    gen = lambda: runtime.generator(5)
    sym = tasks.sample_linear_dynamics(16, 10, 6, kind="contracting", eigenvectors="orthogonal", generator=gen(),
                                       dtype=F64)
    assert rel(sym.W, sym.W.transpose(1, 2)) < 1e-12
    ev = torch.linalg.eigvalsh(sym.W)
    assert float(ev.min()) >= 0.3 - 1e-12 and float(ev.max()) == pytest.approx(0.9, abs=1e-12)
    a = tasks.sample_linear_dynamics(4, 10, 6, kind="contracting", generator=gen())
    b = tasks.sample_linear_dynamics(4, 10, 6, kind="contracting", eigenvectors="gaussian", generator=gen())
    assert torch.equal(a.states, b.states)
    with pytest.raises(ValueError, match="eigenvectors"):
        tasks.sample_linear_dynamics(2, 3, 4, kind="contracting", eigenvectors="unitary")


def test_contracting_transition_has_the_given_eigenvalues():
    gen = runtime.generator(1)
    lam = 0.3 + 0.6 * torch.rand(2, 4, generator=gen, dtype=F64)
    U = torch.randn(2, 4, 4, generator=gen, dtype=F64)
    W = mesa.contracting_transition(lam, U)
    assert rel(W @ U, U @ torch.diag_embed(lam)) < 1e-12
    with pytest.raises(ValueError, match=r"U must have shape \(B, D, D\)"):
        mesa.contracting_transition(lam, U[:, :3])
    with pytest.raises((ValueError, TypeError), match="eigenvalues"):
        mesa.contracting_transition(lam[0], U)


def test_zero_predictor_loss_matches_the_sampled_sequences():
    b = tasks.sample_linear_dynamics(20000, 12, 10, kind="contracting", eigenvectors="orthogonal",
                                     generator=runtime.generator(0), dtype=F64)
    eig = torch.linalg.eigvalsh(b.W)
    for t in (1, 4, 11):
        sampled = float(0.5 * b.states[:, t].pow(2).sum(-1).mean())  # s_(t+1), 0-based index t
        assert sampled == pytest.approx(float(mesa.zero_predictor_loss(eig, t).mean()), rel=0.03)
    with pytest.raises(ValueError, match="t"):
        mesa.zero_predictor_loss(eig, 0)


def test_gd_step_search_finds_the_best_single_step():
    ev = mesa.contracting_eval_set(200, seed=3)
    eta, loss = mesa.gd_step_search(ev)
    at = lambda e: float(mesa.per_step_loss(solvers.causal_gd_predict(ev.inputs, e), ev.targets).mean())
    assert loss == pytest.approx(at(eta)) and loss < at(0.8 * eta) and loss < at(1.25 * eta)


def test_gd_step_search_from_a_prior_start_and_prior_gains_are_least_squares():
    ev = mesa.contracting_eval_set(200, seed=3, dtype=F64)
    g = mesa.prior_gains(ev)
    x, y = ev.inputs, ev.targets
    shared = float(torch.linalg.lstsq(x.reshape(-1, 1), y.reshape(-1, 1)).solution)  # one scalar for all entries
    assert g.shared == pytest.approx(shared, rel=1e-10) and 0.5 < g.shared < 0.9
    t = 4
    assert float(g.position[t]) == pytest.approx(
        float(torch.linalg.lstsq(x[:, t].reshape(-1, 1), y[:, t].reshape(-1, 1)).solution), rel=1e-10)
    eta, loss = mesa.gd_step_search(ev, w0=g.shared)
    W0 = g.shared * torch.eye(10, dtype=F64)
    at = lambda e: float(mesa.per_step_loss(solvers.causal_gd_predict(x, e, W0), y).mean())
    assert loss == pytest.approx(at(eta)) and loss < at(0.8 * eta) and loss < at(1.25 * eta)
    curves = mesa.contracting_curves(ev, 0.1, gains=g, eta_prior=eta)
    assert torch.allclose(curves["ĉ·s_t, no context"], mesa.per_step_loss(g.shared * x, y))
    assert torch.allclose(curves["GD-1 from ĉI"], mesa.per_step_loss(solvers.causal_gd_predict(x, eta, W0), y))
    with pytest.raises(ValueError, match="gains"):
        mesa.contracting_curves(ev, 0.1, eta_prior=eta)


# ------------------------------------------------------------------------------------ partial observations
def test_history_tokens_stack_newest_first_with_zero_padding():
    obs = _obs()
    z = mesa.history_tokens(obs, 3)
    assert z.shape == (3, 8, 6)
    assert torch.equal(z[..., :2], obs)
    assert torch.equal(z[:, 1:, 2:4], obs[:, :-1]) and torch.equal(z[:, 2:, 4:], obs[:, :-2])
    assert float(z[:, 0, 2:].abs().max()) == 0 and float(z[:, 1, 4:].abs().max()) == 0
    assert torch.equal(mesa.history_tokens(obs, 1), obs)
    assert mesa.history_tokens(obs.float(), 2).dtype == torch.float32


@pytest.mark.parametrize("args, match", [
    ((torch.zeros(8, 2), 2), r"obs.*\(B, T, p\)"),
    ((torch.zeros(3, 8, 2), 0), "k"),
])
def test_history_tokens_reject_bad_input(args, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mesa.history_tokens(*args)


def test_history_layout_holds_the_pair_and_a_zero_slot():
    obs = _obs(1)
    E = mesa.history_layout(2)(obs)
    z = mesa.history_tokens(obs, 2)
    assert E.shape == (3, 8, 2 + 2 + 4 + 4)
    assert float(E[..., :2].abs().max()) == 0 and torch.equal(E[..., 2:4], obs) and torch.equal(E[..., 4:8], z)
    assert torch.equal(E[:, 1:, 8:], z[:, :-1]) and float(E[:, 0, 8:].abs().max()) == 0
    assert torch.equal(mesa.history_layout(1)(obs), tasks.mesa_tokens(obs))  # k = 1: the full-state layout


def test_history_ridge_is_ridge_on_the_stacked_history():
    obs = _obs(2, T=10)
    k, lam, t = 3, 0.2, 6  # position t (0-based index t − 1)
    z = mesa.history_tokens(obs, k)
    X = torch.cat([torch.zeros_like(z[:, :1]), z[:, :t - 1]], dim=1)  # z_0 … z_(t−1)
    Y = obs[:, :t]  # o_1 … o_t
    W = Y.transpose(1, 2) @ X @ torch.linalg.inv(X.transpose(1, 2) @ X + lam * torch.eye(k * 2, dtype=F64))
    ref = (W @ z[:, t - 1, :, None])[..., 0]
    assert rel(mesa.history_ridge_predict(obs, k, lam)[:, t - 1], ref) < 1e-12
    assert rel(mesa.history_ridge_predict(obs, 1, lam), solvers.causal_ridge_predict(obs, lam)) < 1e-12
    with pytest.raises(ValueError, match="lam"):
        mesa.history_ridge_predict(obs, 2, -1.0)


def test_history_ridge_is_one_mesa_head_in_float64():
    err = mesa.history_mesa_error(seed=1)
    assert err.mesa < 1e-12 and err.single < 1e-12
    obs = _obs(3)
    z = mesa.history_tokens(obs, 2)
    wrong = mesa.mesa_attention(z[:, None], z[:, None], obs[:, None], 0.1)[:, 0]  # keys z_t: not the objective
    assert rel(wrong, mesa.history_ridge_predict(obs, 2, 0.1)) > 1e-3


def test_observability_a_long_enough_history_predicts_the_next_observation():
    ev = mesa.observed_eval_set(300, 5, seed=4)
    assert ev.states.shape == (300, 51, 5)
    curves = mesa.history_curves(ev, (1, 3))
    late = {k: float(v[20:].mean()) for k, v in curves.items()}
    assert late["history ridge, k = 3"] < 0.01 < 0.5 < late["history ridge, k = 1"]
    assert late["history ridge, k = 1"] > 0.2 * late["zero predictor"]


def test_observability_is_exact_for_t_at_least_k_without_noise_and_k2_fails_by_its_padded_pair():
    ev = mesa.observed_eval_set(40, 5, seed=4, dtype=F64, settings=mesa.DynamicsSettings(noise_std=0.0))
    late = lambda k, **kw: float(mesa.per_step_loss(mesa.history_ridge_predict(ev.inputs, k, 1e-8, **kw),
                                                    ev.targets)[20:].mean())
    assert late(3) < 1e-10 and late(3, skip_padded=True) < 1e-10
    assert late(2) > 1e-3 and late(2, skip_padded=True) < 0.2 * late(2)
    pad = mesa.padding_effect(40, seed=4)
    assert pad.ks == (2, 3) and pad.padded[0] > 5 * pad.clean[0] and pad.padded[1] < 1e-3
    # skip_padded leaves out exactly the pairs j ≤ k: pairs from j = k + 1 on, by hand, at t = 8
    obs, k, lam, t = _obs(5, T=10), 2, 0.1, 8
    z = mesa.history_tokens(obs, k)
    X, Y = z[:, k - 1:t - 1], obs[:, k:t]  # keys z_k … z_(t−1), values o_(k+1) … o_t
    Wt = Y.transpose(1, 2) @ X @ torch.linalg.inv(X.transpose(1, 2) @ X + lam * torch.eye(4, dtype=F64))
    pred = mesa.history_ridge_predict(obs, k, lam, skip_padded=True)[:, t - 1]
    assert rel(pred, (Wt @ z[:, t - 1, :, None])[..., 0]) < 1e-12


def _joint_gaussian_predictor(o, W, C, sig, prior_var):
    """E[o_(t+1) | o_1 … o_t] for one sequence from the joint covariance of all observations (brute force)."""
    T, D = o.shape[0], W.shape[0]
    cov_s = [prior_var * torch.eye(D, dtype=F64)]  # Cov(s_t, s_u) = W^(t−u) Cov(s_u) for t ≥ u
    for _ in range(T):
        cov_s.append(W @ cov_s[-1] @ W.T + sig**2 * torch.eye(D, dtype=F64))
    cross = lambda a, b: (torch.linalg.matrix_power(W, a - b) @ cov_s[b] if a >= b
                          else cov_s[a] @ torch.linalg.matrix_power(W, b - a).T)
    K = torch.cat([torch.cat([C @ cross(a, b) @ C.T for b in range(T + 1)], 1) for a in range(T + 1)], 0)
    p, preds = C.shape[0], []
    for t in range(1, T + 1):
        Sxx, Syx = K[:t * p, :t * p], K[t * p:(t + 1) * p, :t * p]
        preds.append(Syx @ torch.linalg.solve(Sxx, o[:t].reshape(-1)))
    return torch.stack(preds)


def test_kalman_predict_is_the_conditional_mean_and_exact_without_noise():
    gen = runtime.generator(7)
    b = tasks.sample_linear_dynamics(3, 6, 4, noise_std=0.3, generator=gen, dtype=F64)
    o, C = tasks.observe(b.states, 2, generator=gen)
    pred = mesa.kalman_predict(o[:, :-1], b.W, C, noise_std=0.3)
    for i in range(3):
        brute = _joint_gaussian_predictor(o[i, :-1], b.W[i], C[i], 0.3, 1 / 3)
        assert rel(pred[i], brute) < 1e-9
    ev = mesa.observed_eval_set(20, 5, seed=4, dtype=F64, settings=mesa.DynamicsSettings(noise_std=0.0))
    C = mesa.observation_matrix(20, 5, seed=4, dtype=F64, settings=mesa.DynamicsSettings(noise_std=0.0))
    pred = mesa.kalman_predict(ev.inputs, ev.W, C, noise_std=0.0)
    assert float(mesa.per_step_loss(pred, ev.targets)[1:].max()) < 1e-12  # two observations pin the state: 2p ≥ D
    noisy = mesa.observed_eval_set(200, 5, seed=4)
    curves = mesa.history_curves(noisy, (3,), C=mesa.observation_matrix(200, 5, seed=4))
    late = {k: float(v[20:].mean()) for k, v in curves.items()}
    assert late["Kalman filter (known W, C)"] < late["history ridge, k = 3"]
    with pytest.raises(ValueError, match="W"):
        mesa.kalman_predict(ev.inputs, ev.W[:2], C)


def test_observation_matrix_is_the_eval_sets_c():
    ev = mesa.observed_eval_set(6, 5, seed=3)
    C = mesa.observation_matrix(6, 5, seed=3)
    assert torch.allclose(mesa.dynamics_eval_set(6, seed=3).states @ C.transpose(1, 2), ev.states, atol=1e-6)


def test_history_model_reads_the_first_p_entries():
    model = mesa.new_history_mesa_model(5, 3, seed=0)
    assert model.layers[0].dim == 40 and model.layers[0].key_size == 15
    ev = mesa.observed_eval_set(4, 5, seed=0)
    pred = mesa.model_predictions(model, ev, tokens=mesa.history_layout(3))
    assert pred.shape == (4, 50, 5)


# --------------------------------------------------------------------------------------------- claims
def test_claim_judges_can_fail():
    c = mesa.ContractingComparison(mesa=0.0021, ridge=0.00108, gd=0.0087, gd_prior=0.0009, shared=0.00154,
                                   position=0.00115, zero=0.030, mesa_first=0.06, zero_first=0.72, mesa_early=0.0049,
                                   ridge_early=0.00083, position_early=0.0019)
    assert _judge("M25", c)
    assert not _judge("M25", c._replace(mesa=0.0027))  # more than 0.0015 above ridge
    assert not _judge("M25", c._replace(mesa=0.0015))  # the layer beats the context-free ĉ·s_t
    assert not _judge("M25", c._replace(mesa_early=0.0019))  # the layer beats ĉ_t·s_t early
    assert not _judge("M25", c._replace(shared=0.0012))  # ridge not clearly below ĉ·s_t
    assert not _judge("M25", c._replace(gd_prior=0.0012))  # GD-1 from ĉI not below ridge
    assert not _judge("M25", c._replace(gd=0.004))  # GD-1 from 0 not far behind ĉ·s_t
    assert not _judge("M25", c._replace(ridge_early=0.0015))  # the context does not help early
    i = mesa.HistoryIdentity(5e-13, 0.0)
    assert _judge("M26", i)
    assert not _judge("M26", i._replace(mesa=1e-9)) and not _judge("M26", i._replace(single=1e-9))
    h = mesa.HistoryFit(single=2.6, history=0.459, learnt=0.388, mesa=0.389, kalman=0.0016, zero=2.1,
                        history_late=0.003, learnt_late=0.038, mesa_late=0.048, kalman_late=0.0011)
    assert _judge("M27", h)
    assert not _judge("M27", h._replace(history=1.0))  # the history does not help
    assert not _judge("M27", h._replace(mesa=0.47))  # the layer above the closed form on average
    assert not _judge("M27", h._replace(learnt=0.41))  # the learnt-λ closed form does not match the layer
    assert not _judge("M27", h._replace(mesa_late=0.005))  # the layer matches the λ = 1e-3 closed form late
    assert not _judge("M27", h._replace(mesa_late=0.08))  # more than 2 × the learnt-λ closed form late
    assert not _judge("M27", h._replace(history_late=0.005))  # k = 3 far from the Kalman floor
    assert not _judge("M27", h._replace(kalman_late=0.004))  # the "floor" above the closed form
    assert reproduce.REGISTRY["M26"].exact


def test_claim_m26_measures_and_passes():
    v = reproduce.REGISTRY["M26"].measure(reproduce.Context(seed=2))
    assert _judge("M26", v)


# ------------------------------------------------------------------------------------------ exercises
def test_exercise_checkers_name_the_classic_slips_and_accept_float32():
    from icl_course.exercises import ExerciseFailed
    from icl_course.exercises.mesa import variants as ex

    def oldest_first(obs, k):
        return torch.cat([torch.roll(obs, i, dims=1) * (torch.arange(obs.shape[1])[None, :, None] >= i)
                          for i in reversed(range(k))], dim=-1)

    rolled = lambda obs, k: torch.cat([torch.roll(obs, i, dims=1) for i in range(k)], dim=-1)
    transpose = lambda lam, U: U @ torch.diag_embed(lam) @ U.transpose(1, 2)

    def same_key(obs, k, lam):
        z = mesa.history_tokens(obs, k)
        return mesa.mesa_attention(z[:, None], z[:, None], obs[:, None], lam)[:, 0]

    no_square = lambda lam, t, s: mesa.zero_predictor_loss(lam.sqrt(), t, s)
    for check, wrong, message in ((ex.check_history_stack, oldest_first, "newest observation"),
                                  (ex.check_history_stack, rolled, "torch.roll"),
                                  (ex.check_contracting_w, transpose, "inverse"),
                                  (ex.check_history_ridge_mesa, same_key, "not z_j"),
                                  (ex.check_zero_loss, no_square, "λ\\^\\(2t\\)")):
        with pytest.raises(ExerciseFailed, match=message):
            check(wrong)
    f32 = lambda fn: (lambda *a: fn(*(x.float() if isinstance(x, torch.Tensor) else x for x in a)))
    for name in ("history_stack", "contracting_w", "history_ridge_mesa", "zero_loss"):
        getattr(ex, f"check_{name}")(f32(REGISTRY[f"mesa.{name}"].solution))
