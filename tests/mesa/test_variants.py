"""Part IV, chapter "Other sequences": contracting and partially observed dynamics, claims M25–M27."""

from __future__ import annotations

import pytest
import torch

from icl_course import mesa, reproduce, runtime, solvers, tasks
from icl_course.claims.mesa import variants as cl  # noqa: F401  (registers the claims)

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


def test_history_model_reads_the_first_p_entries():
    model = mesa.new_history_mesa_model(5, 3, seed=0)
    assert model.layers[0].dim == 40 and model.layers[0].key_size == 15
    ev = mesa.observed_eval_set(4, 5, seed=0)
    pred = mesa.model_predictions(model, ev, tokens=mesa.history_layout(3))
    assert pred.shape == (4, 50, 5)


# --------------------------------------------------------------------------------------------- claims
def test_claim_judges_can_fail():
    c = mesa.ContractingComparison(mesa=0.0021, ridge=0.0011, gd=0.0087, zero=0.030, mesa_first=0.06, zero_first=0.72)
    assert _judge("M25", c)
    assert not _judge("M25", c._replace(mesa=0.0027))  # more than 0.0015 above ridge
    assert not _judge("M25", c._replace(gd=0.004))  # GD-1 not far behind
    i = mesa.HistoryIdentity(5e-13, 0.0)
    assert _judge("M26", i)
    assert not _judge("M26", i._replace(mesa=1e-9)) and not _judge("M26", i._replace(single=1e-9))
    h = mesa.HistoryFit(single=2.6, history=0.49, mesa=0.43, zero=2.1, history_late=0.003, mesa_late=0.048)
    assert _judge("M27", h)
    assert not _judge("M27", h._replace(history=1.0))  # the history does not help
    assert not _judge("M27", h._replace(mesa=0.6))  # the layer does not reach the closed form
    assert not _judge("M27", h._replace(mesa_late=0.08))  # late loss above this budget's bound
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
        getattr(ex, f"check_{name}")(f32(getattr(ex, name)))
