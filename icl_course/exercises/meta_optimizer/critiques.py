"""Exercises of Part II, chapter "What the critiques found".

The checkers need no language model. They compare with the package (:func:`icl_course.meta_optimizer.auc`,
:func:`~icl_course.meta_optimizer.softmax_vs_linear`, :func:`~icl_course.meta_optimizer.paired_difference`) on
made-up inputs and recognise the classic slips by name: ties in the AUC, key/value heads tiled instead of grouped,
the ICL change measured against the wrong zero-shot output, and a standard deviation where a standard error goes.
"""

from __future__ import annotations

import torch

from ... import runtime
from ...meta_optimizer import auc, paired_difference, softmax_vs_linear
from .. import exercise
from ._common import PART, _expect

__all__ = ["check_margin_auc", "check_expand_kv_heads", "check_softmax_update_cosine", "check_paired_sem"]

F64 = torch.float64


# ---------------------------------------------------------------- 1. AUC of a margin
@exercise(part=PART, name="margin_auc", title="Does a score know the task? The AUC of a margin", difficulty="★☆☆",
          minutes=10,
          hint="Over every pair of one positive and one negative review, count the pairs where the positive one has "
               "the larger margin; a tie counts one half. Divide by the number of pairs.",
          stub='''def margin_auc(margin, labels):
    """margin (n,) a score, labels (n,) 0/1 -> the probability that a random positive review scores higher than a
    random negative one (ties count half), a float in [0, 1]."""
    # YOUR CODE HERE
    raise NotImplementedError("margin_auc")
''')
def check_margin_auc(fn) -> None:
    g = runtime.generator(31)
    labels = torch.tensor([0, 1] * 10)
    margin = torch.randn(20, generator=g, dtype=F64) + 0.8 * labels
    margin[3] = margin[4]  # one tie between a negative and a positive review
    got = float(fn(margin.clone(), labels.clone()))
    ref = auc(margin, labels)
    if abs(got - ref) > 1e-12:
        assert abs(got - (ref - 0.5 / 100)) > 1e-12, "a tie counts one half, not zero"
        assert abs(got - (1 - ref)) > 1e-12, "positive and negative are swapped: P(positive scores higher)"
        raise AssertionError(f"expected {ref:.4f}, got {got:.4f}")
    shifted = float(fn(margin + 5.0, labels.clone()))
    assert abs(shifted - ref) < 1e-12, "the AUC must not change when every margin shifts by the same amount"


# ---------------------------------------------------------------- 2. shared key/value heads
@exercise(part=PART, name="expand_kv_heads", title="One key per query head, from shared key/value heads",
          difficulty="★☆☆", minutes=5,
          hint="With grouped-query attention, query heads 0..g−1 read key/value head 0, heads g..2g−1 head 1, and so "
               "on (g = n_heads / n_kv_heads): repeat each key/value head g times in place (repeat_interleave), do "
               "not tile the whole stack.",
          stub='''def expand_kv_heads(k, n_heads):
    """k (H_kv, T, d) keys (or values) of H_kv shared heads -> (n_heads, T, d), the keys each query head reads."""
    # YOUR CODE HERE
    raise NotImplementedError("expand_kv_heads")
''')
def check_expand_kv_heads(fn) -> None:
    k = torch.randn(3, 5, 4, generator=runtime.generator(32), dtype=F64)
    got = _expect(fn(k.clone(), 9), (9, 5, 4), "expand_kv_heads(k, 9)")
    if torch.equal(got, k.repeat_interleave(3, dim=0)):
        return
    assert not torch.equal(got, k.repeat(3, 1, 1)), (
        "you tiled the stack (heads 0, 1, 2, 0, 1, 2, …); query head h reads key/value head h // 3 (0, 0, 0, 1, …)")
    raise AssertionError("query head h must read key/value head h // (n_heads / H_kv)")


# ---------------------------------------------------------------- 3. softmax's change against ΔW_ICL q
@exercise(part=PART, name="softmax_update_cosine", title="Softmax's ICL change against the linear ΔW_ICL q",
          difficulty="★★☆", minutes=15,
          hint="Softmax attention of q over [demonstrations; text] minus softmax attention over the text alone is "
               "what the demonstrations change; the linear form's change is ΔW_ICL q = Σ_demo v_j (k_j·q). Return "
               "the cosine of the two.",
          stub='''def softmax_update_cosine(q, k_demo, v_demo, k_text, v_text, scale):
    """One head: q (d,), k_demo (Td, d), v_demo (Td, dv), k_text (Tt, d), v_text (Tt, dv), logit scale -> the cosine
    (a float) of softmax attention's ICL-induced change and ΔW_ICL q."""
    # YOUR CODE HERE
    raise NotImplementedError("softmax_update_cosine")
''')
def check_softmax_update_cosine(fn) -> None:
    g = runtime.generator(33)
    for Td, Tt, d, scale in ((7, 4, 5, 0.5), (12, 6, 8, 0.125)):
        q = torch.randn(d, generator=g, dtype=F64)
        kd, vd = torch.randn(Td, d, generator=g, dtype=F64), torch.randn(Td, 3, generator=g, dtype=F64)
        kt, vt = torch.randn(Tt, d, generator=g, dtype=F64), torch.randn(Tt, 3, generator=g, dtype=F64)
        got = float(fn(q, kd, vd, kt, vt, scale))
        ref = float(softmax_vs_linear(q[None], kd[None], vd[None], kt[None], vt[None], scale=scale).update_cos[0])
        if abs(got - ref) < 1e-10:
            continue
        whole = torch.softmax(scale * (torch.cat([kd, kt]) @ q), 0) @ torch.cat([vd, vt])
        dw_q = vd.T @ (kd @ q)
        plain = float(whole @ dw_q / (whole.norm() * dw_q.norm()))
        assert abs(got - plain) > 1e-10, (
            "that is the cosine of the whole softmax output; subtract the text-only attention to get the change")
        raise AssertionError(f"expected {ref:.6f}, got {got:.6f} (Td={Td}, Tt={Tt}, scale={scale})")


# ---------------------------------------------------------------- 4. the standard error of a paired difference
@exercise(part=PART, name="paired_sem", title="The standard error of a paired difference", difficulty="★☆☆",
          minutes=5,
          hint="Take the per-review differences a − b first, then their sample standard deviation (n − 1) divided by "
               "√n. Not the difference of two separate standard errors, and not the standard deviation itself.",
          stub='''def paired_sem(a, b):
    """a, b (n,) two scores of the same n reviews -> the standard error of the mean of a − b (a float)."""
    # YOUR CODE HERE
    raise NotImplementedError("paired_sem")
''')
def check_paired_sem(fn) -> None:
    g = runtime.generator(34)
    shared = torch.randn(30, generator=g, dtype=F64)
    a = shared + 0.3 + 0.1 * torch.randn(30, generator=g, dtype=F64)
    b = shared + 0.1 * torch.randn(30, generator=g, dtype=F64)
    got = float(fn(a.clone(), b.clone()))
    ref = paired_difference(a, b).sem
    d = a - b
    assert abs(got - float(d.std(correction=1))) > 1e-12, "that is the standard deviation; divide it by √n"
    unpaired = float((a.var(correction=1) / 30 + b.var(correction=1) / 30).sqrt())
    assert abs(got - unpaired) > 1e-12, ("that is the unpaired standard error; the same reviews give both scores, so "
                                         "take the differences first")
    assert abs(got - ref) < 1e-12, f"expected {ref:.6f}, got {got:.6f}"
