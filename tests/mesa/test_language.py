"""Tests for :mod:`icl_course.mesa.language` and the foundation it stands on (:mod:`icl_course.gpt`, the
``residual``/``average`` options of :class:`~icl_course.causal.CausalSelfAttention`): shapes, causality of every
mixer and of the whole GPT, equal parameter counts and equal initial weights across mixers, the counting baselines,
validation, the claim-value function and a smoke training run."""

import math

import pytest
import torch

from icl_course import gpt, mesa, runtime, tasks
from icl_course.causal import CausalSelfAttention
from icl_course.mesa import language as lang
from tests.helpers import F64, rel

SMALL = lang.LanguageSettings(block_size=12, d_model=16, n_head=2, steps=3, batch_size=4, eval_every=2,
                              eval_windows=8, warmup=1)
KINDS = (*lang.MIXERS, lang.LINEAR_SUM)


def _model(kind, seed=0, dtype=F64):
    return lang.new_language_model(kind, 11, SMALL, seed=seed, dtype=dtype)


def _ids(seed, B=3, T=12, V=11):
    return torch.randint(0, V, (B, T), generator=runtime.generator(seed))


# ------------------------------------------------------------------------------------------- the GPT
@pytest.mark.parametrize("kind", KINDS)
def test_logits_shape_and_dtype(kind):
    logits = _model(kind)(_ids(0))
    assert logits.shape == (3, 12, 11) and logits.dtype == F64


@pytest.mark.parametrize("kind", KINDS)
def test_every_mixer_and_the_whole_model_are_causal(kind):
    """Changing a future token must not change any earlier output — of one mixer and of the whole GPT."""
    model = _model(kind)
    with torch.no_grad():  # make the layers matter: larger weights than the 0.02 initialisation
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=runtime.generator(1), dtype=F64))
    mix = model.blocks[0].mix
    E = torch.randn(2, 12, 16, generator=runtime.generator(2), dtype=F64)
    E2 = E.clone()
    E2[:, 7:] += 1.0
    assert torch.allclose(mix(E)[:, :7], mix(E2)[:, :7], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(mix(E)[:, 7], mix(E2)[:, 7]), "position t must see itself"
    idx = _ids(3)
    idx2 = idx.clone()
    idx2[:, 5:] = (idx2[:, 5:] + 1) % 11
    with torch.no_grad():
        assert torch.allclose(model(idx)[:, :5], model(idx2)[:, :5], rtol=1e-10, atol=1e-12)


def test_parameter_counts_equal_across_mixers_up_to_the_mesa_lambdas():
    counts = {kind: _model(kind).num_params() for kind in KINDS}
    assert counts["softmax"] == counts["linear"] == counts[lang.LINEAR_SUM]
    assert counts["mesa"] == counts["softmax"] + SMALL.n_layer * SMALL.n_head  # one learnt λ per head and layer


def test_one_seed_gives_every_mixer_the_same_initial_weights():
    a, b = _model("softmax", seed=4), _model("mesa", seed=4)
    sa, sb = a.state_dict(), b.state_dict()
    renamed = {k.replace(".mix.P.", ".mix.W_O."): v for k, v in sb.items() if not k.endswith("lam_raw")}
    assert set(renamed) == set(sa)
    assert all(torch.equal(sa[k], renamed[k]) for k in sa)
    assert not torch.equal(sa["tok_emb.weight"], _model("softmax", seed=5).state_dict()["tok_emb.weight"])


def test_tied_head_and_untied_head():
    model = _model("softmax")
    x = model.ln_f(model.blocks[1](model.blocks[0](model.tok_emb(_ids(6)) + model.pos_emb.weight)))
    assert rel(model(_ids(6)), x @ model.tok_emb.weight.T) < 1e-12
    cfg = dict(vocab_size=11, block_size=12, d_model=16, n_head=2)
    tied, untied = gpt.GPT(gpt.GPTConfig(**cfg)), gpt.GPT(gpt.GPTConfig(**cfg, tie_weights=False))
    assert untied.num_params() == tied.num_params() + 11 * 16 and tied.head is None


def test_average_is_the_sum_divided_by_the_number_of_keys():
    g = runtime.generator(7)
    kw = dict(attention="linear", init_std=0.3, residual=False, dtype=F64)
    plain = CausalSelfAttention(6, 2, 3, generator=runtime.generator(8), **kw)
    mean = CausalSelfAttention(6, 2, 3, generator=runtime.generator(8), average=True, **kw)
    E = torch.randn(2, 5, 6, generator=g, dtype=F64)
    t = torch.arange(1, 6, dtype=F64)[:, None]
    ref = plain.W_O((plain.scores(E) / t @ plain.heads(E)[2]).transpose(1, 2).reshape(2, 5, 6))
    assert rel(mean(E), ref) < 1e-12
    assert rel(mean.scores(E) * t, plain.scores(E)) < 1e-12
    with pytest.raises(ValueError, match="average=True is for attention='linear'"):
        CausalSelfAttention(6, 2, 3, attention="softmax", average=True)


def test_residual_false_returns_the_update_alone():
    kw = dict(init_std=0.3, dtype=F64)
    with_res = CausalSelfAttention(6, 2, 3, attention="softmax", generator=runtime.generator(9), **kw)
    update = CausalSelfAttention(6, 2, 3, attention="softmax", residual=False, generator=runtime.generator(9), **kw)
    E = torch.randn(2, 5, 6, generator=runtime.generator(10), dtype=F64)
    assert rel(with_res(E), E + update(E)) < 1e-12


def test_bad_input_is_refused_with_the_argument_and_shape():
    model = _model("softmax")
    with pytest.raises(ValueError, match=r"idx must be an integer tensor of shape \(B, T\)"):
        model(torch.zeros(12, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"idx must be an integer tensor of shape \(B, T\)"):
        model(torch.zeros(2, 12))
    with pytest.raises(ValueError, match="block_size=12"):
        model(torch.zeros(2, 13, dtype=torch.int64))
    with pytest.raises(ValueError, match="targets must have the shape of idx"):
        model.token_losses(_ids(0), _ids(0)[:, :5])
    with pytest.raises(ValueError, match="d_model"):
        gpt.GPTConfig(vocab_size=5, d_model=10, n_head=4)
    with pytest.raises(ValueError, match="kind must be one of"):
        lang.new_language_model("rnn", 11, SMALL)
    with pytest.raises(TypeError, match="must build modules of the GPT's dtype"):
        gpt.GPT(SMALL.gpt_config(11), gpt.attention_mixer(SMALL.gpt_config(11)), dtype=F64)


def test_generate_extends_the_prompt_and_is_seeded():
    model = _model("mesa", dtype=torch.float32)
    out = model.generate(_ids(0, B=1, T=3), 15, generator=runtime.generator(0))
    assert out.shape == (1, 18) and torch.equal(out[:, :3], _ids(0, B=1, T=3))
    assert torch.equal(out, model.generate(_ids(0, B=1, T=3), 15, generator=runtime.generator(0)))


def test_the_chapter_corpus():
    sents = tasks.movie_review_sentences()
    corpus = lang.language_corpus()
    assert len(corpus.val_sentences) == 853 and corpus.vocab_size == len(set("".join(sents)) | {"\n"})


def test_position_losses_average_to_the_loss():
    model, idx, tgt = _model("linear"), _ids(11, B=5), _ids(12, B=5)
    curve = lang.position_losses(model, idx, tgt, chunk=2)
    assert curve.shape == (12,)
    assert math.isclose(float(curve.mean()), float(lang.lm_loss(model, (idx, tgt))), rel_tol=1e-10)


def test_bigram_losses_are_the_counts_indexed_by_the_windows():
    corpus = tasks.char_corpus(["abab", "ba", "aab", "bb"], 0.25, split_seed=0)
    x, y = corpus.windows("val", 2) if len(corpus.val) > 2 else corpus.windows("train", 2)
    V, ids = corpus.vocab_size, corpus.train.tolist()
    pairs = list(zip(ids[:-1], ids[1:]))
    by_hand = torch.tensor([[-math.log((pairs.count((b, c)) + 1) / (sum(p[0] == b for p in pairs) + V))
                             for b, c in zip(xr.tolist(), yr.tolist())] for xr, yr in zip(x, y)], dtype=F64)
    losses = lang.bigram_losses(corpus, x, y)
    assert losses.shape == x.shape and losses.dtype == F64
    assert torch.allclose(losses, by_hand, rtol=1e-12)
    assert math.isclose(float(losses.mean()), lang.ngram_baselines(corpus, y, x).bigram, rel_tol=1e-12)


def test_window_losses_are_the_per_character_losses():
    model, idx, tgt = _model("mesa"), _ids(13, B=5), _ids(14, B=5)
    w = lang.window_losses(model, idx, tgt, chunk=2)
    assert w.shape == (5, 12) and torch.allclose(w, model.token_losses(idx, tgt).detach(), rtol=1e-12)


def _perturbed(kind, seed=0):
    model = _model(kind, seed)
    with torch.no_grad():  # larger weights than the 0.02 initialisation, so that every layer matters
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=runtime.generator(seed + 20), dtype=F64))
    return model


@pytest.mark.parametrize("kind", KINDS)
def test_local_context_of_the_whole_window_is_the_model(kind):
    model, idx = _perturbed(kind), _ids(15)
    with torch.no_grad():
        full = model(idx)
        with lang.local_context(model, 12) as m:
            local = m(idx)
        assert rel(local, full) < 1e-10
        assert torch.equal(model(idx), full), "the mixers' own forward is restored"


@pytest.mark.parametrize("kind", KINDS)
def test_local_context_sees_only_the_last_positions(kind):
    """One mixer with context w: the output at t ignores keys before t − w + 1 and depends on the first visible."""
    model, w, t = _perturbed(kind), 4, 9
    mix = model.blocks[0].mix
    E = torch.randn(2, 12, 16, generator=runtime.generator(16), dtype=F64)
    far, near = E.clone(), E.clone()
    far[:, : t - w + 1] += 1.0  # every key out of reach of position t
    near[:, t - w + 1] += 1.0  # the oldest key in reach
    with torch.no_grad(), lang.local_context(model, w):
        out = mix(E)
        assert torch.allclose(mix(far)[:, t], out[:, t], rtol=1e-10, atol=1e-12)
        assert not torch.allclose(mix(near)[:, t], out[:, t])
        assert not torch.allclose(mix(far)[:, w - 1], out[:, w - 1])  # position w − 1 still sees key 0
    with pytest.raises(ValueError, match="context must be a positive int"):
        with lang.local_context(model, 0):
            pass


def test_language_comparison():
    curves = {k: [torch.full((20,), 2.0 + i, dtype=F64) for i in range(2)] for k in lang.MIXERS}
    curves["linear"][0] = torch.cat([torch.full((4,), 1.0, dtype=F64), torch.full((16,), 2.5, dtype=F64)])
    bigram = torch.full((20,), 2.2, dtype=F64)
    v = lang.language_comparison(curves, {k: 10 for k in lang.MIXERS}, lang.Baselines(3.0, 2.5), (0, 1), bigram)
    assert v.val_loss["mesa"] == (2.0, 3.0) and v.mean("mesa") == 2.5 and v.spread("mesa") == 1.0
    assert v.bigram_curve == (2.2,) * 20
    early_linear = (3 * 1.0 + 4 * 2.5) / 7 - 2.2  # positions 2-8: three at 1.0, four at 2.5
    assert math.isclose(v.early["linear"][0], early_linear) and math.isclose(v.late["linear"][0], 2.5 - 2.2)
    assert math.isclose(v.rise("linear")[0], 2.5 - 2.2 - early_linear) and v.rise("mesa") == (0.0, 0.0)
    with pytest.raises(ValueError, match="one \\(T,\\) curve per seed"):
        lang.language_comparison({"softmax": []}, {}, v.baselines, (0,), bigram)
    with pytest.raises(ValueError, match="must have the shape"):
        lang.language_comparison(curves, {k: 10 for k in lang.MIXERS}, v.baselines, (0, 1), bigram[:5])


@pytest.mark.slow
@pytest.mark.parametrize("kind", lang.MIXERS)
def test_smoke_training_lowers_the_loss(kind):
    corpus = tasks.char_corpus(["the cat sat on the mat"] * 40 + ["a dog"] * 10, 0.1)
    run = mesa.train_language_model(kind, corpus, lang.LanguageSettings(
        block_size=12, d_model=16, n_head=2, steps=40, batch_size=8, eval_every=20, eval_windows=8, warmup=5,
        lr=1e-2), seed=0, progress=False)
    assert run.history.eval_loss[-1] < run.history.eval_loss[0] - 0.5
