"""Part I, "What in-context learning is": prompts, calibration, the split, the repeated-token task, the claim values,
and (two fast tests) the real LM."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from icl_course import basics, tasks

F64 = torch.float64
S = basics.FEW_SHOT.cpu


def test_k_shot_prompt_layout():
    p = basics.k_shot_prompt(["good .", "bad ."], [1, 0], "fine .", S.natural, S.template, S.separator)
    assert p == ("Review: good .\nSentiment: positive\n\nReview: bad .\nSentiment: negative\n\n"
                 "Review: fine .\nSentiment:")
    zero = basics.k_shot_prompt([], [], "fine .", S.natural, S.template, S.separator)
    assert zero == S.template.format(text="fine .")
    with pytest.raises(ValueError, match="same length"):
        basics.k_shot_prompt(["a"], [], "q", S.natural, S.template, S.separator)
    with pytest.raises(ValueError, match="0 or 1"):
        basics.k_shot_prompt(["a"], [2], "q", S.natural, S.template, S.separator)


def test_label_probabilities_is_a_two_way_softmax():
    logits = torch.randn(5, 30, dtype=F64, generator=torch.Generator().manual_seed(0))
    p = basics.label_probabilities(logits, [4, 9])
    ratio = torch.exp(logits[:, 9] - logits[:, 4])
    torch.testing.assert_close(p[:, 1] / p[:, 0], ratio)
    torch.testing.assert_close(p.sum(1), torch.ones(5, dtype=F64))
    with pytest.raises(ValueError, match="logits"):
        basics.label_probabilities(logits[0], [4, 9])


def test_calibration_makes_the_content_free_input_uniform():
    free = torch.tensor([0.8, 0.2], dtype=F64)
    probs = torch.tensor([[0.8, 0.2], [0.9, 0.1], [0.5, 0.5]], dtype=F64)
    cal = basics.calibrate(probs, free)
    torch.testing.assert_close(cal[0], torch.tensor([0.5, 0.5], dtype=F64))
    torch.testing.assert_close(cal.sum(1), torch.ones(3, dtype=F64))
    assert cal[1].argmax() == 0 and cal[2].argmax() == 1  # a 0.5/0.5 review flips to the disfavoured label
    with pytest.raises(ValueError, match="content_free"):
        basics.calibrate(probs, torch.tensor([0.5, 0.3, 0.2], dtype=F64))


def test_split_is_disjoint_and_demonstrations_are_balanced_and_reproducible():
    _, y = tasks.movie_review_polarity()
    test, pool = basics.fs_split(S)
    assert len(test) == S.n_test and not set(test.tolist()) & set(pool.tolist())
    d = basics.draw_demonstrations(8, 0, S)
    assert set(d.tolist()) <= set(pool.tolist()) and len(set(d.tolist())) == 8
    assert int(y[d].sum()) == 4
    assert torch.equal(d, basics.draw_demonstrations(8, 0, S))
    assert not torch.equal(d, basics.draw_demonstrations(8, 1, S))
    assert len(basics.draw_demonstrations(0, 0, S)) == 0
    with pytest.raises(ValueError, match="even"):
        basics.draw_demonstrations(3, 0, S)


def test_repeated_tokens_and_loss_drop():
    ids = basics.repeated_tokens(5, 0, 10, 20, bos_id=1)
    assert ids.shape == (11,) and ids[0] == 1 and torch.equal(ids[1:6], ids[6:])
    assert ((ids[1:] >= 10) & (ids[1:] < 20)).all()
    losses = torch.tensor([9.0, 8.0, 7.0, 12.0, 0.5, 0.0], dtype=F64)  # 12: the second copy's first token
    assert basics.in_context_loss_drop(losses, 3) == (8.0, 0.25)
    run = basics.RepeatedTokenRun(losses[None], 3, 1.0)
    assert [float(m) for m in run.copy_means()] == [8.0, 0.25]
    with pytest.raises(ValueError, match="2 \\* length"):
        basics.in_context_loss_drop(losses, 4)


def test_in_context_gain_judges_against_the_spread():
    ok = basics.InContextGain("t", (10.0, 11.0), (2.0, 3.0), False)
    assert ok.gain == pytest.approx(8.0) and ok.spread == pytest.approx(1.0) and ok.passed
    wide = basics.InContextGain("t", (0.5,), (0.9, 0.55, 0.52), True)  # gain 0.157 < spread 0.38
    assert not wide.passed
    narrow = basics.InContextGain("t", (0.5,), (0.7, 0.69, 0.71), True)  # gain 0.2 > spread 0.02
    assert narrow.passed and narrow.gain == pytest.approx(0.2)


def test_natural_label_finding_fails_only_when_demonstrations_help_reliably():
    f = basics.NaturalLabelFinding(0.7, 0.6, (8,), ((0.6, 0.7),), ((0.6, 0.6),), 8, (0.7, 0.8), 64)
    assert f.gain == pytest.approx(-0.05) and f.spread == pytest.approx(0.1) and f.no_reliable_gain
    assert not f._replace(few_shot=((0.8, 0.81),)).no_reliable_gain  # demonstrations help reliably
    assert f._replace(few_shot=((0.5, 0.52),)).no_reliable_gain  # they hurt reliably: still no gain
    assert f._replace(few_shot=((0.72, 0.78),)).no_reliable_gain  # gain 0.05 within the spread 0.06
    assert not f._replace(random_labels=(float("nan"), 0.8)).no_reliable_gain
    assert not f._replace(ks=(), few_shot=()).no_reliable_gain


def test_random_labels_are_balanced_and_drawn_independently_of_gold():
    agree = set()
    for draw in range(10):
        shown, gold = basics.fs_demo_labels(8, draw, S, random_labels=True)
        assert sum(shown) == 4 and sum(gold) == 4 and len(shown) == 8
        assert (shown, gold) == basics.fs_demo_labels(8, draw, S, random_labels=True)
        assert basics.fs_demo_labels(8, draw, S)[0] == gold
        n_pos, n_agree = basics.random_label_balance(8, draw, S)
        assert n_pos == 4 and n_agree == sum(a == b for a, b in zip(shown, gold))
        agree.add(n_agree)
    assert len(agree) > 1  # the agreement with gold varies: the order is not tied to the gold labels


def test_settings_validate():
    with pytest.raises(ValueError, match="ks"):
        replace(S, ks=(0, 3))
    with pytest.raises(ValueError, match="draws"):
        replace(S, draws=(0,))
    for bad in ((), "N/A", ("N/A", 0)):
        with pytest.raises(ValueError, match="content_free"):
            replace(S, content_free=bad)
    with pytest.raises(TypeError, match="FewShotSettings"):
        basics.fs_split("cpu")


# ---------------------------------------------------------------- the real LM (few, fast)
@pytest.fixture(scope="module")
def model():
    from icl_course import lm

    return lm.load()


def test_cached_prefix_matches_the_full_prompt(model):
    s = replace(S, n_test=3, ks=(0, 2), draws=(0, 1))
    sweep = basics.mr_sweep(model, s.natural, s)
    texts, _ = tasks.movie_review_polarity()
    test, _ = basics.fs_split(s)
    ids = [model.token_id(w) for w in s.natural]
    for a, k in enumerate(s.ks):
        idx = basics.draw_demonstrations(k, 1, s)
        demo_labels = [int(tasks.movie_review_polarity()[1][i]) for i in idx.tolist()]
        query = s.template.format(text=texts[int(test[2])])
        prompt = basics.k_shot_prompt([texts[i] for i in idx.tolist()], demo_labels, texts[int(test[2])], s.natural,
                                      s.template, s.separator)
        whole = basics.fs_prompt_ids(model, prompt[: len(prompt) - len(query)], query, s.bos)  # no cache
        full = basics.label_probabilities(model.logits(whole)[None].double(), ids)[0]
        torch.testing.assert_close(sweep.probs[a, 1, 2], full, atol=2e-4, rtol=0)
        demos = prompt[: len(prompt) - len(query)]
        free = torch.stack([basics.label_probabilities(model.logits(basics.fs_prompt_ids(
            model, demos, s.template.format(text=c), s.bos))[None].double(), ids)[0] for c in s.content_free])
        assert len(s.content_free) == 3
        torch.testing.assert_close(sweep.content_free[a, 1], free.mean(0), atol=2e-4, rtol=0)  # the average


def test_second_copy_is_predicted_from_context(model):
    run = basics.repeated_token_run(model, replace(S, rep_draws=2, rep_length=20))
    first, second = run.copy_means()
    assert (first - second > 5).all()  # measured on the book's settings: about 14 vs 2-3 nats
