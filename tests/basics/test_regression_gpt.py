"""Tests of Part I's "Learning to learn in context": the learners on one prompt's prefixes, the Bayes comparison,
the training recipe and the out-of-distribution evaluation."""

import dataclasses
import math

import pytest
import torch

from icl_course import basics, reproduce, runtime
from icl_course.basics.regression_gpt import _learner_errors

S = basics.GARG.cpu
SMALL = dataclasses.replace(S, n_layer=1, d_model=16, n_head=2, steps=60, warmup=5, lr=3e-3, n_eval=200, extra_points=2)


def test_batches_are_gaussian_with_the_settings_noise():
    b = basics.garg_batch(S, 4000, 6, runtime.generator(0))
    assert b.x.shape == (4000, 6, S.dx) and b.y.shape == (4000, 6, 1)
    assert abs(float(b.x.var()) - 1) < 0.03
    resid = b.y[..., 0] - (b.x * b.w[:, 0, None, :]).sum(-1)
    assert abs(float(resid.std()) - S.noise_std) < 0.01
    assert abs(float(basics.garg_batch(S, 4000, 6, runtime.generator(0), input_scale=2.0).x.std()) - 2) < 0.03


def test_ridge_row_attains_the_bayes_error():
    """Ridge with λ = σ²/s² attains E σ²(1 + x_qᵀ(XᵀX + λI)⁻¹x_q) / d: a wrong λ or a shifted prefix fails this."""
    b = basics.garg_batch(S, 20000, 8, runtime.generator(1))
    err = _learner_errors(S, b, None, 8)
    names = list(basics.LEARNERS)
    for n in (2, 4, 7):
        x, xq = b.x[:, :n].double(), b.x[:, n].double()
        A = x.transpose(1, 2) @ x + S.lam * torch.eye(S.dx, dtype=torch.float64)
        bayes = S.noise_std**2 * (1 + (xq[:, None] @ torch.linalg.solve(A, xq[..., None]))[:, 0, 0]) / S.dx
        ridge = err[names.index("ridge (Bayes)"), :, n]
        assert abs(float(ridge.mean() - bayes.mean())) < 4 * float(ridge.std()) / math.sqrt(len(ridge))
        for other in ("least squares", "one GD step", "3-NN", "averaging"):  # the Bayes error is the floor
            assert float(err[names.index(other), :, n].mean()) > float(ridge.mean())


def test_every_learner_uses_only_the_first_n_demonstrations():
    model = basics.new_regression_gpt(SMALL, seed=0).double()
    b = basics.garg_batch(SMALL, 64, 8, runtime.generator(2))
    b = b._replace(x=b.x.double(), y=b.y.double())
    late = b._replace(y=b.y.clone())
    late.y[:, 5:] += 3.0  # labels from demonstration 5 on change: errors at N ≤ 4 must not (N = 5 is scored on y_5)
    with torch.no_grad():
        model.read_out.weight.normal_(generator=runtime.generator(3))
        a, c = _learner_errors(SMALL, b, model, 8), _learner_errors(SMALL, late, model, 8)
    assert torch.equal(a[:, :, :5], c[:, :, :5])
    assert not torch.allclose(a[:, :, 6:], c[:, :, 6:])
    assert torch.allclose(a[1:, :, 0], (b.y[:, 0, 0] ** 2 / SMALL.dx).expand(5, -1))  # N = 0: everyone predicts 0


def _fake(tf_over_ridge: float, knn=2.0, avg=3.0) -> basics.PrefixErrors:
    n = 6
    ridge = torch.linspace(1.0, 0.5, n, dtype=torch.float64)
    per_task = torch.stack([ridge * tf_over_ridge, ridge, ridge * 1.3, ridge * 1.2, ridge * knn, ridge * avg])
    per_task = per_task[:, None, :] + 0.01 * torch.randn(6, 50, n, dtype=torch.float64,
                                                          generator=runtime.generator(0))
    return basics.PrefixErrors(basics.LEARNERS, torch.arange(n), per_task.mean(1), per_task.std(1) / 50**0.5,
                               per_task)


def test_bayes_comparison_judges_b1_and_b2():
    c = basics.bayes_comparison(_fake(1.05), 0.1)
    assert c.near_bayes and c.beats_baselines and c.n.tolist() == [3, 4, 5]
    assert torch.allclose(c.excess, torch.full((3,), 0.05, dtype=torch.float64), atol=0.02)
    assert not basics.bayes_comparison(_fake(1.05), 0.01).near_bayes
    assert not basics.bayes_comparison(_fake(2.5), 0.1).beats_baselines  # above 3-NN
    assert reproduce.evaluate("B1", c).status == "PASS" and reproduce.evaluate("B2", c).status == "PASS"
    assert reproduce.evaluate("B2", basics.bayes_comparison(_fake(2.5), 0.1)).status == "FAIL"
    with pytest.raises(ValueError, match="transformer row"):
        basics.bayes_comparison(basics.prefix_errors(SMALL, n_tasks=20), 0.1)


def test_training_is_seeded_and_follows_the_curriculum(monkeypatch):
    lengths = []
    real = basics.regression_gpt.garg_batch
    monkeypatch.setattr(basics.regression_gpt, "garg_batch",
                        lambda s, b, n, g=None, **kw: lengths.append(n) or real(s, b, n, g, **kw))
    a = basics.train_regression_gpt(dataclasses.replace(SMALL, curriculum=30), seed=0, progress=False)
    assert lengths[1] == 2 and lengths[31] == lengths[-1] == SMALL.n_points  # [0] is the evaluation set
    assert lengths[1:32] == sorted(lengths[1:32])
    a = basics.train_regression_gpt(SMALL, seed=0, progress=False)
    b = basics.train_regression_gpt(SMALL, seed=0, progress=False)
    assert a.history.eval_loss == b.history.eval_loss and a.history.steps == SMALL.steps
    fresh = basics.new_regression_gpt(SMALL, seed=0)
    assert not torch.equal(fresh.read_out.weight, a.model.read_out.weight)  # it trained
    ood = basics.out_of_distribution(a.model, SMALL, scales=(1.0, 2.0), n_tasks=50)
    assert ood.long.error.shape == (6, SMALL.n_points + SMALL.extra_points) and len(ood.scaled) == 2
    with pytest.raises(ValueError, match="n_points must be <="):
        basics.prefix_errors(SMALL, a.model, n_points=SMALL.n_points + SMALL.extra_points + 1)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="n_points"):
        basics.GargSettings(n_points=3)
    with pytest.raises(ValueError, match="noise_std"):
        basics.GargSettings(noise_std=0.0)
    with pytest.raises(ValueError, match="curriculum"):
        basics.GargSettings(curriculum=-1)
    assert basics.GargSettings().lam == pytest.approx(0.25)


def test_both_layouts_score_the_same_prefixes():
    """Garg et al.'s interleaved layout and the course's previous-pair layout: same shapes, same targets, and the
    prediction of y_i never sees y_i (a leak would make the error at every N ≥ 1 far below ridge's)."""
    for layout in ("previous_pair", "interleaved"):
        s = dataclasses.replace(SMALL, layout=layout)
        model = basics.new_regression_gpt(s, seed=0)
        assert model.config.block_size == s.tokens_per_point * (s.n_points + s.extra_points)
        e = basics.prefix_errors(s, model, n_tasks=30)
        assert e.error.shape == (6, s.n_points) and not torch.isnan(e.error).any()
    with pytest.raises(ValueError, match="layout"):
        basics.GargSettings(layout="pairs")


def test_ridge_loss_is_the_mean_over_prefixes_of_ridges_error():
    b = basics.garg_batch(S, 300, 5, runtime.generator(4))
    e = _learner_errors(S, b, None, 5)[1]  # ridge, (tasks, N), divided by d
    assert basics.ridge_loss(S, b) == pytest.approx(float(e.mean()) * S.dx)
    assert basics.ridge_loss(S, b) < float((b.y**2).mean())  # below predicting 0
    with pytest.raises(TypeError, match="RegressionBatch"):
        basics.ridge_loss(S, b.x)
