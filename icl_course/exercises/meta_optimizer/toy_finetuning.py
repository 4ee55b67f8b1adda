"""Exercises of Part II, chapter "ICL versus fine-tuning on a transformer trained from scratch".

Each reference solution is the exact code of the chapter's solution block; each stub is what the student edition
shows. The checkers compare against the package (:func:`icl_course.meta_optimizer.kv_parameters`,
:func:`~icl_course.meta_optimizer.finetune_kv`, :func:`~icl_course.meta_optimizer.paired_difference`,
:func:`~icl_course.meta_optimizer.record`) on fixed seeds and recognise the classic slips by name: fine-tuning the
queries or the output projection too, a step up the gradient, an unpaired standard error, and the ICL logits of the
demonstrations instead of the query text.
"""

from __future__ import annotations

import torch

from ... import meta_optimizer as mo
from ... import runtime
from .. import exercise
from ._common import PART, _expect

__all__ = ["check_freeze_all_but_kv", "check_kv_sgd_step", "check_paired_gap", "check_align_icl_logits"]

F64 = torch.float64


# ---------------------------------------------------------------- 1. freeze everything but K and V
@exercise(part=PART, name="freeze_all_but_kv", title="Freeze everything but the keys and values",
          difficulty="★☆☆", minutes=10,
          hint="Loop over model.named_parameters(): requires_grad True only for blocks.<i>.mix.W_K.weight and "
               "blocks.<i>.mix.W_V.weight (every layer), False for everything else — queries, W_O, MLPs, LayerNorms, "
               "embeddings. Return the names left trainable.",
          stub='''def freeze_all_but_kv(model):
    """Set requires_grad so that only the key and value projections of every attention layer of the GPT are
    trainable; return the list of trainable parameter names."""
    # YOUR CODE HERE
    raise NotImplementedError("freeze_all_but_kv")
''')
def check_freeze_all_but_kv(fn) -> None:
    model = mo.new_toy_model(seed=3)
    names = fn(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    want = {n for n, _ in model.named_parameters() if n.endswith(("mix.W_K.weight", "mix.W_V.weight"))}
    assert not any("W_Q" in n for n in trainable), "the queries must stay frozen: Dai et al. fine-tune K and V only"
    assert not any("W_O" in n for n in trainable), "the output projection W_O must stay frozen"
    assert trainable >= want, f"these key/value projections are frozen but must train: {sorted(want - trainable)}"
    assert trainable == want, f"only K and V may train; also trainable: {sorted(trainable - want)}"
    assert sorted(names) == sorted(want), "return the names of the trainable parameters"
    ids = {id(p) for p in mo.kv_parameters(model)}
    assert {id(p) for p in model.parameters() if p.requires_grad} == ids, "the trainable tensors differ"


# ---------------------------------------------------------------- 2. one K/V-only SGD step by hand
@exercise(part=PART, name="kv_sgd_step", title="One fine-tuning step on the keys and values", difficulty="★★☆",
          minutes=15,
          hint="Cross-entropy of the logits at the *last* position of items[None] (1, L) against label; gradients "
               "with respect to mo.kv_parameters(model) only (torch.autograd.grad); then W ← W − lr·g in place "
               "under torch.no_grad(). Return the loss before the step.",
          stub='''def kv_sgd_step(model, items, label, lr):
    """One plain-SGD step of Dai's fine-tuning baseline on one demonstration: items (L,) int64 in the zero-shot
    format, label () int64 its target at the last position; update only the K and V projections of every layer,
    in place. Return the loss before the step (float)."""
    # YOUR CODE HERE
    raise NotImplementedError("kv_sgd_step")
''')
def check_kv_sgd_step(fn) -> None:
    tasks = mo.sample_toy_tasks(1, generator=runtime.generator(8))
    items, label, lr = tasks.demos[0, 0], tasks.demo_labels[0, 0], 0.5
    ref, mine = mo.new_toy_model(seed=4), mo.new_toy_model(seed=4)
    with torch.no_grad():  # a less symmetric start than the initialisation
        for p in list(ref.parameters()) + list(mine.parameters()):
            p.add_(0.05 * torch.randn(p.shape, generator=runtime.generator(p.numel())))
    before = {n: p.detach().clone() for n, p in mine.named_parameters()}
    want = float(mo.finetune_kv(ref, items[None], label[None], lr).loss[0])
    loss = fn(mine, items.clone(), label.clone(), lr)
    changed = [n for n, p in mine.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert all(n.endswith(("W_K.weight", "W_V.weight")) for n in changed), (
        f"only the key and value projections may change; these changed too: "
        f"{[n for n in changed if not n.endswith(('W_K.weight', 'W_V.weight'))]}")
    assert changed, "no weight changed: update W_K and W_V in place"
    for (n, a), b in zip(mine.named_parameters(), ref.parameters()):
        if torch.allclose(a, b, rtol=1e-5, atol=1e-7):
            continue
        flipped = before[n] - (b.detach() - before[n])
        assert not torch.allclose(a, flipped, rtol=1e-5, atol=1e-7), f"{n}: step *against* the gradient (W − lr·g)"
        raise AssertionError(f"{n} differs from one SGD step of finetune_kv (max abs error "
                             f"{float((a - b).abs().max()):.3g}); use the logits at the last position")
    assert isinstance(loss, float), "return the loss as a float"
    assert abs(loss - want) < 1e-5 * max(1.0, abs(want)), (
        f"return the cross-entropy at the last position *before* the step: expected {want:.6f}, got {loss:.6f}")


# ---------------------------------------------------------------- 3. the paired statistic of a baseline
@exercise(part=PART, name="paired_gap", title="A metric against its baseline, paired", difficulty="★☆☆",
          minutes=5,
          hint="Subtract per example first, d = a − b; return d's mean and its standard error std(d, n − 1)/√n.",
          stub='''def paired_gap(a, b):
    """Per-example scores a, b (n_ex,) on the same examples (e.g. SimAOU and its baseline) -> (mean of a − b, its
    standard error), two floats."""
    # YOUR CODE HERE
    raise NotImplementedError("paired_gap")
''')
def check_paired_gap(fn) -> None:
    g = runtime.generator(13)
    shared = torch.randn(50, generator=g, dtype=F64)
    a, b = shared + 0.2 + 0.1 * torch.randn(50, generator=g, dtype=F64), shared
    mean, sem = (float(x) for x in fn(a, b))
    ref = mo.paired_difference(a, b)
    unpaired = float((a.var() / 50 + b.var() / 50) ** 0.5)
    assert abs(sem - unpaired) > 1e-9, (
        "that is the unpaired standard error: subtract per example first, so what a and b share cancels")
    assert abs(sem - float((a - b).std(correction=0)) / 50**0.5) > 1e-12, "use the n − 1 standard deviation"
    assert abs(sem - ref.std) > 1e-12, "divide the standard deviation by √n: the standard error of the mean"
    assert abs(mean - ref.mean) < 1e-10 and abs(sem - ref.sem) < 1e-10, (
        f"expected ({ref.mean:.6f}, {ref.sem:.6f}), got ({mean:.6f}, {sem:.6f})")


# ---------------------------------------------------------------- 4. align ICL logits to the zero-shot positions
@exercise(part=PART, name="align_icl_logits", title="Align ICL attention logits to the zero-shot positions",
          difficulty="★☆☆", minutes=5,
          hint="The ICL prompt is demonstrations then the query text, so the query text is the *last* n_text "
               "positions; keep them in order (the zero-shot prompt's positions 0 … n_text − 1).",
          stub='''def align_icl_logits(icl_logits, n_text):
    """Pre-softmax logits of the last token over the whole ICL prompt (n_ex, n_heads, T_icl) -> those over the
    query text (n_ex, n_heads, n_text), aligned with the zero-shot prompt's positions."""
    # YOUR CODE HERE
    raise NotImplementedError("align_icl_logits")
''')
def check_align_icl_logits(fn) -> None:
    g = runtime.generator(5)
    tasks = mo.sample_toy_tasks(6, generator=g)
    model = mo.new_toy_model(seed=1)
    L = tasks.query.shape[1]
    full = mo.record(model, mo.icl_prompt(tasks), mo.icl_prompt(tasks).shape[1]).am[:, 0]  # (n, H, T_icl)
    got = _expect(fn(full.clone(), L), tuple(full.shape[:2]) + (L,), "align_icl_logits(icl_logits, n_text)")
    ref = mo.record(model, mo.icl_prompt(tasks), L).am[:, 0]
    if torch.allclose(got, ref):
        return
    assert not torch.allclose(got, full[..., :L]), (
        "the first n_text positions are the first demonstration; the query text is at the end of the ICL prompt")
    assert not torch.allclose(got, ref.flip(-1)), "keep the positions in order"
    raise AssertionError("the aligned logits differ from the query text's")
