"""Part IV, chapter "Few-shot learning by prompting": prompts, spurious pairs, prompt tuning, claims M6, M23, M24."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from icl_course import mesa, reproduce, runtime, solvers, tasks
from icl_course.claims.mesa import prompting as cl  # noqa: F401  (registers the claims)
from icl_course.exercises import REGISTRY, all_exercises

F64 = torch.float64
rel = lambda a, b: float((a - b).norm() / b.norm())


def _judge(cid, value):
    return reproduce.REGISTRY[cid].judge(value, reproduce.Context())


def _ex(seed=0, B=4, K=5, D=3):
    return mesa.regression_examples(B, seed=seed, n_examples=K, dim=D, dtype=F64)


def test_regression_examples_are_one_orthogonal_task_per_prompt():
    ex = mesa.regression_examples(64, seed=1, n_examples=7, dtype=F64)
    assert ex.x.shape == ex.y.shape == (64, 7, 10) and ex.W.shape == (64, 10, 10)
    assert rel(ex.W @ ex.W.transpose(1, 2), torch.eye(10, dtype=F64).expand(64, 10, 10)) < 1e-12
    assert float(ex.x.abs().max()) <= 1.0
    noise = ex.y - ex.x @ ex.W.transpose(1, 2)
    assert 0.005 < float(noise.std()) < 0.015  # σ = 0.01
    again = mesa.regression_examples(64, seed=1, n_examples=7, dtype=F64)
    assert torch.equal(again.y, ex.y) and not torch.equal(mesa.regression_examples(64, seed=2, n_examples=7).x,
                                                          ex.x.float())


def test_interleave_lays_out_examples_separator_and_prefix():
    ex = _ex()
    states, q = mesa.interleave(ex.x, ex.y)
    assert states.shape == (4, 10, 3) and q.tolist() == [0, 2, 4, 6, 8]
    assert torch.equal(states[:, 0::2], ex.x) and torch.equal(states[:, 1::2], ex.y)
    e, pre = torch.arange(3, dtype=F64), torch.ones(2, 3, dtype=F64)
    states, q = mesa.interleave(ex.x, ex.y, e, pre)
    assert states.shape == (4, 2 + 15, 3) and q.tolist() == [2, 5, 8, 11, 14]
    assert torch.equal(states[:, :2], pre.expand(4, 2, 3)) and torch.equal(states[:, 4::3], e.expand(4, 5, 3))
    assert torch.equal(states[:, q], ex.x) and torch.equal(states[:, q + 1], ex.y)


@pytest.mark.parametrize("args, match", [
    ((torch.zeros(2, 3, 4), torch.zeros(2, 3, 5)), "same shape"),
    ((torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.zeros(5)), "separator must have shape"),
    ((torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), None, torch.zeros(4)), "prefix"),
    ((torch.zeros(3, 4), torch.zeros(3, 4)), "x"),
])
def test_interleave_rejects_bad_input(args, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mesa.interleave(*args)


def test_query_losses_read_the_answer_at_the_position_of_x():
    ex = _ex(K=6)
    oracle = lambda s: torch.cat([s[:, 1:], torch.zeros_like(s[:, :1])], dim=1)  # predicts the next token exactly
    assert float(mesa.query_losses(oracle, ex).abs().max()) < 1e-12
    assert float(mesa.query_losses(oracle, ex, torch.zeros(3, dtype=F64), torch.ones(2, 3, dtype=F64)).max()) < 1e-12
    late = lambda s: s  # one position late: answers with x_i itself
    assert float(mesa.query_losses(late, ex).min()) > 0.01


def test_zero_separator_makes_gd_on_the_prompt_gd_on_the_task_pairs():
    assert mesa.zero_separator_gd_error(seed=3) < 1e-12
    ex = _ex(seed=4, K=8)
    states, q = mesa.interleave(ex.x, ex.y)  # no separator: the spurious pairs (y_i, x_(i+1)) enter the sum
    ref = 0.1 * (ex.x @ ex.x.transpose(1, 2)).tril(-1) @ ex.y
    assert rel(solvers.causal_gd_predict(states, 0.1)[:, q], ref) > 0.1


def test_ridge_on_every_pair_tends_to_half_the_answer():
    v = mesa.spurious_pairs(seed=1, n_prompts=100, n_examples=300)
    assert v.limit == pytest.approx(10 / 24)
    assert abs(v.raw / v.limit - 1) < 0.15 and abs(v.separator / v.limit - 1) < 0.1
    assert mesa.spurious_limit(4, 2.0) == pytest.approx(4 * 4 / 24)
    with pytest.raises(ValueError, match="x_range"):
        mesa.spurious_limit(4, -1.0)


def test_task_pair_ridge_is_ridge_on_the_examples_seen_before():
    ex = _ex(seed=5, K=6)
    got = mesa.task_pair_ridge_losses(ex, 0.3)
    i = 4
    X, Y = ex.x[:, :i], ex.y[:, :i]
    W = Y.transpose(1, 2) @ X @ torch.linalg.inv(X.transpose(1, 2) @ X + 0.3 * torch.eye(3, dtype=F64))
    pred = (W @ ex.x[:, i, :, None])[..., 0]
    assert float(got[i]) == pytest.approx(float(0.5 * (pred - ex.y[:, i]).pow(2).sum(-1).mean()), rel=1e-10)
    assert float(got[0]) == pytest.approx(float(0.5 * ex.y[:, 0].pow(2).sum(-1).mean()), rel=1e-10)  # nothing seen


def test_learned_prompt_freezes_what_it_is_told_to():
    p = mesa.LearnedPrompt(torch.ones(3), torch.zeros(2, 3), learn_separator=False)
    assert not p.separator.requires_grad and p.prefix.requires_grad
    with pytest.raises(ValueError, match="separator"):
        mesa.LearnedPrompt(torch.ones(2, 3))


def test_model_predictor_freezes_the_model_and_reads_the_first_slot():
    model = mesa.new_mesa_model(seed=0)
    predict = mesa.model_predictor(model)
    assert not any(p.requires_grad for p in model.parameters())
    s = torch.randn(2, 6, 10, generator=runtime.generator(0))
    assert torch.equal(predict(s), model(tasks.mesa_tokens(s))[..., :10])


def test_prompt_tuning_moves_a_bad_separator_towards_a_better_one():
    cfg = dataclasses.replace(mesa.PROMPT.cpu, tune_steps=60, tune_batch=32, tune_lr=0.1, eval_size=200)
    gd = lambda s: solvers.causal_gd_predict(s, 0.05)  # for one GD step the zero separator is optimal
    p = mesa.LearnedPrompt(torch.full((10,), 1.0))
    run = mesa.tune_prompt(gd, p, cfg, seed=0, progress=False)
    with torch.no_grad():
        zero = float(mesa.query_losses(gd, run.eval_set, torch.zeros(10)).mean())
    assert run.history.eval_loss[-1] < 0.95 * run.history.eval_loss[0]
    assert run.history.eval_loss[-1] == pytest.approx(zero, rel=0.01)  # it finds the zero separator's loss
    assert float(p.separator.norm()) < 0.2 * 10**0.5


def test_claim_judges_can_fail():
    ok = mesa.PromptedLoss(1.68, 1.07, 1.68, 0.63)
    assert _judge("M6", ok)
    assert not _judge("M6", ok._replace(raw_last=1.7))
    assert not _judge("M6", ok._replace(separator_last=1.1))
    sp = mesa.SpuriousPairs(2e-16, 0.4167, 0.435, 0.424)
    assert _judge("M23", sp)
    assert not _judge("M23", sp._replace(gd_identity_error=1e-9))
    assert not _judge("M23", sp._replace(raw=0.5))
    assert not _judge("M23", sp._replace(separator=0.2))  # not the half-prediction limit
    tg = mesa.TuningGain(4.3, 1.55, 0.75, 1.144, 0.01, 1.14, 1.38, 1.128)
    assert _judge("M24", tg) and tg.best_tuned == 1.128
    assert not _judge("M24", tg._replace(tuned=2.5))  # tuning did not help
    assert not _judge("M24", tg._replace(tuned=1.16))  # from N(0, I) it reached the zero separator after all
    assert not _judge("M24", tg._replace(small_start=1.3))  # the small start did not reach it
    assert not _judge("M24", tg._replace(prefix_on_zero=1.0))  # a tuned prompt beat the zero separator


def test_exercise_checkers_name_the_classic_slips_and_accept_float32():
    from icl_course.exercises import ExerciseFailed
    from icl_course.exercises.mesa import prompting as ex

    stacked = lambda x, y: torch.cat([x, y], dim=1)
    with_own = lambda x, y, lr: lr * (x @ x.transpose(1, 2)).tril() @ y
    zero_pred = lambda dim, r, a: a**2 * dim * r**2 / 6
    late = lambda x, y, lam: solvers.causal_ridge_predict(torch.stack([x, y], 2).reshape(x.shape[0], -1, x.shape[2]),
                                                          lam)[:, 1::2]
    for check, wrong, message in ((ex.check_interleave_prompt, stacked, "its own y_i"),
                                  (ex.check_task_pair_gd, with_own, "j < i only"),
                                  (ex.check_spurious_limit_loss, zero_pred, "zero predictor"),
                                  (ex.check_prompted_ridge, late, "not at y_i")):
        with pytest.raises(ExerciseFailed, match=message):
            check(wrong)
    f32 = lambda fn: (lambda *a: fn(*(x.float() if isinstance(x, torch.Tensor) else x for x in a)))
    for name in ("interleave_prompt", "task_pair_gd", "prompted_ridge"):
        getattr(ex, f"check_{name}")(f32(REGISTRY[f"mesa.{name}"].solution))


def test_separator_norm_scan_is_the_tuning_objective_along_a_ray():
    ex = _ex(seed=6, B=2000, K=4)
    gd = lambda s: solvers.causal_gd_predict(s, 0.1)
    d = torch.tensor([3.0, 0.0, 4.0], dtype=F64)
    scan = mesa.separator_norm_scan(gd, ex, d, torch.tensor([0.0, 0.5, 2.0]))
    assert float(scan[0]) == pytest.approx(float(mesa.query_losses(gd, ex, torch.zeros(3, dtype=F64)).mean()))
    assert float(scan[2]) == pytest.approx(float(mesa.query_losses(gd, ex, 2.0 * d / 5).mean()))
    assert scan[0] < scan[1] < scan[2]  # for one GD step the zero separator is best (in expectation)


def test_prompt_gd_line_search_finds_the_step_best_for_prompts():
    ex = _ex(seed=7, B=500, K=8, D=4)
    eta, loss = mesa.prompt_gd_line_search(ex, torch.zeros(4, dtype=F64))
    at = lambda e: float(mesa.query_losses(lambda s: solvers.causal_gd_predict(s, e), ex, torch.zeros(4, dtype=F64))
                         .mean())
    assert loss == pytest.approx(at(eta)) and loss < min(at(0.5 * eta), at(1.5 * eta))


def test_tuning_study_runs_every_stage_on_a_cheap_learner():
    cfg = dataclasses.replace(mesa.PROMPT.cpu, tune_steps=5, tune_batch=8, eval_size=16, n_prefix=2)
    ex = _ex(seed=8, B=32, K=4, D=10)
    gd = lambda s: solvers.causal_gd_predict(s, 0.05)
    study = mesa.tuning_study(gd, ex, cfg, seed=0, progress=False)
    assert set(study.curves) == {"random separator (start)", "zero separator", "tuned separator",
                                 "tuned from a small start", "tuned separator + tuned prefix",
                                 "zero separator + tuned prefix"}
    assert all(c.shape == (4,) for c in study.curves.values())
    assert torch.equal(study.prompts["zero separator + tuned prefix"].separator, torch.zeros(10, dtype=F64))
    assert study.gain.zero == pytest.approx(float(study.curves["zero separator"].mean()))


# ---------------------------------------------------------------- the exercise: the limit for the task α W x
@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_the_exercise_s_limit_agrees_with_a_long_prompt(alpha):
    """Independent of the derivation: least squares on every pair of one long prompt x_1, y_1, x_2, y_2, …
    (200,000 examples) of the task y = α W x, then the loss on fresh queries."""
    g = torch.Generator().manual_seed(7)
    D, r, n = 4, 1.5, 200_000
    W = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))[0]
    x = (2 * torch.rand(n, D, generator=g, dtype=torch.float64) - 1) * r
    seq = torch.stack([x, alpha * x @ W.T], 1).reshape(-1, D)  # every token predicts the next
    fit = torch.linalg.solve(seq[:-1].T @ seq[:-1], seq[:-1].T @ seq[1:]).T
    xq = (2 * torch.rand(n, D, generator=g, dtype=torch.float64) - 1) * r
    measured = float(0.5 * (xq @ fit.T - alpha * xq @ W.T).pow(2).sum(-1).mean())
    all_exercises()
    limit = REGISTRY["mesa.spurious_limit_loss"].solution(D, r, alpha)
    assert measured == pytest.approx(limit, rel=0.03)
    assert REGISTRY["mesa.spurious_limit_loss"].solution(10, 1.0, 1.0) == pytest.approx(mesa.spurious_limit(10, 1.0))


def test_the_exercise_s_checker_names_its_slips():
    from icl_course.exercises import ExerciseFailed

    all_exercises()
    ex = REGISTRY["mesa.spurious_limit_loss"]
    slips = {"the fit does not tend to 0": lambda d, r, a: a**2 * d * r**2 / 6,
             "no longer W/2": lambda d, r, a: a**2 * d * r**2 / 24,
             "keep the factor ½": lambda d, r, a: 2 * ex.solution(d, r, a),
             "the range enters squared": lambda d, r, a: ex.solution(d, r, a) / r}
    for message, wrong in slips.items():
        with pytest.raises(ExerciseFailed, match=message):
            ex.check(wrong)
