"""Tests of Part II's real-LM protocol (``_lm_protocol``, ``real_lm``, ``critiques``): the split and the
demonstrations, the metrics of a run against hand-made recordings, and (slow) one small run of the real model."""

from dataclasses import replace

import pytest
import torch

from icl_course import lm, runtime, tasks
from icl_course.meta_optimizer import (
    LM_PROTOCOL,
    LMRun,
    auc,
    demonstrations,
    mr_split,
    rec2ftp,
    relaxation_cost,
    run_lm_protocol,
    simaou,
    simaou_beats_random,
    summarise_lm_run,
)

S = LM_PROTOCOL.cpu


def test_split_is_disjoint_seeded_and_sized():
    split = mr_split(S)
    assert (len(split.test), len(split.val), len(split.pool)) == (S.n_test, S.n_val, 8530 - 2000)
    everything = torch.cat([split.test, split.val, split.pool])
    assert len(everything) == len(set(everything.tolist()))
    assert torch.equal(mr_split(S).test, split.test)
    assert not torch.equal(mr_split(replace(S, split_seed=1)).test, split.test)
    with pytest.raises(ValueError, match="n_test"):
        mr_split(replace(S, n_test=1501))


def test_the_demonstrations_do_not_depend_on_how_many_reviews_are_tested():
    """A smaller test set (``--quick``, the order experiment) must see the same demonstrations."""
    for n_test, n_val in ((48, 64), (1000, 500), (3, 1)):
        other = replace(S, n_test=n_test, n_val=n_val)
        assert torch.equal(demonstrations(other, 0), demonstrations(S, 0))
        assert torch.equal(mr_split(other).test, mr_split(S).test[:n_test]) if n_test <= S.n_test else True


def test_demonstrations_are_balanced_from_the_pool_and_reordered_by_order_seed():
    _, labels = tasks.movie_review_polarity()
    pool = set(mr_split(S).pool.tolist())
    d = demonstrations(S, 0)
    assert len(d) == S.k and set(d.tolist()) <= pool and int(labels[d].sum()) == S.k // 2
    other = demonstrations(S, 0, order_seed=5)
    assert sorted(other.tolist()) == sorted(d.tolist()) and other.tolist() != d.tolist()
    assert set(demonstrations(S, 1).tolist()) != set(d.tolist())


@pytest.mark.parametrize("kw, match", [({"k": 7}, "even"), ({"lr": -1.0}, "lr"), ({"labels": (" a", " a")}, "two"),
                                       ({"template": "no slot"}, "text"), ({"n_test": 0}, "n_test")])
def test_bad_settings_are_named(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        replace(S, **kw)


def _fake_run(seed=0, n=12, L=3, d=8, T=5, H=2):
    g = runtime.generator(seed)
    margin = {m: torch.randn(n, generator=g, dtype=torch.float64) for m in ("zsl", "icl", "ft")}
    output = {m: torch.randn(n, L, d, generator=g, dtype=torch.float64) for m in ("zsl", "icl", "ft")}
    return LMRun(correct={m: v > 0 for m, v in margin.items()}, margin=margin, output=output,
                 simam_ft=torch.rand(n, L, generator=g, dtype=torch.float64),
                 simam_zsl=torch.rand(n, L, generator=g, dtype=torch.float64),
                 relaxation={"output_cos": torch.rand(n, L, H, generator=g, dtype=torch.float64),
                             "update_cos": torch.rand(n, L, H, generator=g, dtype=torch.float64)},
                 prefix_tokens=10, tokens=100, seconds=1.0, labels=torch.randint(0, 2, (n,), generator=g))


def test_summary_agrees_with_the_metric_functions():
    run = _fake_run()
    s = summarise_lm_run(run, seed=3)
    c = run.correct
    fixed = ~c["zsl"] & c["ft"]
    if int(fixed.sum()):
        assert s.rec2ftp == pytest.approx(rec2ftp(zsl=c["zsl"], icl=c["icl"], ft=c["ft"]))
    assert (s.fixed_by_ft, s.fixed_by_both) == (int(fixed.sum()), int((fixed & c["icl"]).sum()))
    per_layer = simaou(zsl=run.output["zsl"], icl=run.output["icl"], ft=run.output["ft"])
    assert torch.allclose(s.simaou, per_layer) and s.simaou_mean == pytest.approx(float(per_layer.mean()))
    assert s.accuracy["icl"] == pytest.approx(float(c["icl"].double().mean()))
    assert torch.allclose(s.simam_ft, run.simam_ft.mean(0)) and torch.allclose(s.simam_zsl, run.simam_zsl.mean(0))
    assert float(s.uniform_examples.mean()) != pytest.approx(float(s.zero_mean_examples.mean()))
    assert s.versus_zero_mean().n == 12
    upd = {m: run.output[m] / run.output[m].norm(dim=-1, keepdim=True) - run.output["zsl"] / run.output["zsl"].norm(
        dim=-1, keepdim=True) for m in ("icl", "ft")}
    mism = simaou(zsl=run.output["zsl"], icl=run.output["icl"], ft_update=upd["ft"].roll(1, 0), per_example=True)
    assert torch.allclose(s.mismatched_examples, mism.mean(1))
    assert torch.allclose(s.update_norm["ft"], upd["ft"].norm(dim=-1).mean(0))
    predicted = torch.where(c["icl"], run.labels, 1 - run.labels)
    assert s.predicted_positive["icl"] == int(predicted.sum())


def test_mismatched_baseline_equals_simaou_when_every_review_gets_the_same_update():
    run = _fake_run()
    g = runtime.generator(9)
    base, shift = (torch.randn(3, 8, generator=g, dtype=torch.float64) for _ in range(2))
    noise = 1e-3 * torch.randn(12, 3, 8, generator=g, dtype=torch.float64)  # reviews differ a little
    same = {"zsl": base + noise, "icl": base + shift + noise, "ft": base + 2 * shift + noise}
    s = summarise_lm_run(run._replace(output=same))
    assert torch.allclose(s.simaou_examples, s.mismatched_examples, atol=1e-2)
    assert abs(s.versus_mismatched().mean) < 0.01


def test_simaou_against_random_reduces_each_draw_and_takes_the_worst():
    a, b = summarise_lm_run(_fake_run(0)), summarise_lm_run(_fake_run(1))
    v = simaou_beats_random([a, b])
    assert v.simaou == (a.simaou_mean, b.simaou_mean)
    assert v.margin == pytest.approx(min(d / s for d, s in zip(v.difference, v.sem)))


def test_relaxation_cost_averages_heads_then_reviews():
    run = _fake_run()
    rc = relaxation_cost(run)
    assert torch.allclose(rc.update_cos, run.relaxation["update_cos"].mean(-1).mean(0)) and rc.n == 12
    with pytest.raises(ValueError, match="relaxation=True"):
        relaxation_cost(run._replace(relaxation=None))


def test_auc_by_hand_ties_and_offsets():
    labels = torch.tensor([0, 0, 1, 1])
    assert auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), labels) == pytest.approx(0.75)
    assert auc(torch.tensor([0.1, 0.4, 0.4, 0.8]), labels) == pytest.approx(0.875)  # a tie counts half
    assert auc(torch.tensor([0.1, 0.4, 0.35, 0.8]) + 7, labels) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="both classes"):
        auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1]))


@pytest.mark.slow
def test_a_small_run_of_the_real_model():
    model = lm.load()
    small = replace(S, k=4)
    reviews = mr_split(S).test[:3]
    run = run_lm_protocol(model, small, 0, reviews=reviews, relaxation=True)
    L, d = model.n_layers, model.d_model
    assert run.output["icl"].shape == (3, L, d) and run.simam_ft.shape == (3, L)
    assert run.relaxation["update_cos"].shape == (3, L, model.n_heads)
    texts, labels = tasks.movie_review_polarity()
    demo = demonstrations(small, 0)
    prefix = "".join(small.template.format(text=texts[i]) + small.labels[int(labels[i])] + small.separator
                     for i in demo.tolist())
    i = int(reviews[0])
    bos = torch.tensor([model.tokenizer.convert_tokens_to_ids(small.bos)])
    whole = model.logits(torch.cat([bos, model.encode(prefix + small.template.format(text=texts[i]))]))  # one string
    ids = [model.token_id(w) for w in small.labels]
    y = int(labels[i])
    assert float(run.margin["icl"][0]) == pytest.approx(float(whole[ids[y]] - whole[ids[1 - y]]), abs=1e-3)
    only = run_lm_protocol(model, small, 0, reviews=reviews, methods=("icl",))
    assert torch.allclose(only.margin["icl"], run.margin["icl"], atol=1e-4) and only.simam_ft is None
    with pytest.raises(ValueError, match="methods"):
        run_lm_protocol(model, small, 0, reviews=reviews, methods=("icl", "sft"))
