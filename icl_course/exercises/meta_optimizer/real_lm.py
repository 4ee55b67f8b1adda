"""Exercises of Part II, chapter "ICL versus fine-tuning on a real language model".

The checkers need no language model: they compare with the package's protocol pieces on small made-up inputs
(prompts from a few reviews, random logits and scores), and recognise the classic slips by name — a missing
separator, the label logits in the wrong order, Rec2FTP's denominator taken over all ZSL-wrong reviews, and the
first query-text positions instead of the last.
"""

from __future__ import annotations

import torch

from ... import runtime
from ...meta_optimizer import LM_PROTOCOL, rec2ftp, simam
from .. import exercise
from ._common import PART, _expect

__all__ = ["check_demonstration_prompt", "check_label_margin", "check_rec2ftp_counts", "check_simam_one_review"]

F64 = torch.float64
REVIEWS = ["a gorgeous , witty , seductive movie .", "the plot is nothing but boilerplate clichés .",
           "an utterly charming french comedy .", "a dull , simple-minded and stereotypical tale ."]


# ---------------------------------------------------------------- 1. the demonstrations' prompt
@exercise(part=PART, name="demonstration_prompt", title="The demonstrations as one prompt prefix", difficulty="★☆☆",
          minutes=5,
          hint="Each demonstration is the template filled with its review, then its label word (label_words[y], with "
               "its leading space), then the separator; concatenate them in the order given. The query text follows "
               "the last separator.",
          stub='''def demonstration_prompt(texts, labels, label_words, template, separator):
    """texts: list of reviews; labels: list of 0/1; label_words: (word for 0, word for 1); template with '{text}';
    separator between demonstrations -> the prompt prefix (a str) that precedes the query text."""
    # YOUR CODE HERE
    raise NotImplementedError("demonstration_prompt")
''')
def check_demonstration_prompt(fn) -> None:
    s = LM_PROTOCOL.cpu
    labels = [1, 0, 1, 0]
    got = fn(list(REVIEWS), list(labels), s.labels, s.template, s.separator)
    assert isinstance(got, str), f"demonstration_prompt must return a str, got {type(got).__name__}"
    def prompt(ys):  # the checker's own reference
        return "".join(s.template.format(text=t) + s.labels[y] + s.separator for t, y in zip(REVIEWS, ys))

    ref = prompt(labels)
    if got == ref:
        return
    assert got != "".join(s.template.format(text=t) + s.labels[y] for t, y in zip(REVIEWS, labels)), (
        "the demonstrations run into each other: end each one with the separator")
    assert got != prompt([1 - y for y in labels]), (
        "the label words are swapped: label_words[0] names class 0 (a negative review)")
    raise AssertionError(f"expected {ref[:120]!r}…, got {got[:120]!r}…")


# ---------------------------------------------------------------- 2. the label margin
@exercise(part=PART, name="label_margin", title="From next-token logits to a margin and a prediction",
          difficulty="★☆☆", minutes=5,
          hint="Keep only the two label tokens' logits, then subtract the wrong label's logit from the right one's for "
               "every review: the margin is positive exactly when the prediction is correct.",
          stub='''def label_margin(logits, label_ids, y):
    """logits (n, V) next-token logits; label_ids (2,) the token ids naming class 0 and class 1; y (n,) the true
    classes -> (n,) the correct label's logit minus the other label's."""
    # YOUR CODE HERE
    raise NotImplementedError("label_margin")
''')
def check_label_margin(fn) -> None:
    g = runtime.generator(21)
    logits = torch.randn(12, 50, generator=g, dtype=F64)
    label_ids = torch.tensor([7, 31])
    y = torch.randint(0, 2, (12,), generator=g)
    got = _expect(fn(logits.clone(), label_ids.clone(), y.clone()), (12,), "label_margin(logits, label_ids, y)")
    rows = torch.arange(12)
    ref = logits[rows, label_ids[y]] - logits[rows, label_ids[1 - y]]
    if torch.allclose(got.to(F64), ref, atol=1e-12):
        return
    assert not torch.allclose(got.to(F64), -ref, atol=1e-12), "the sign is flipped: correct label minus the other one"
    assert not torch.allclose(got.to(F64), logits[:, 31] - logits[:, 7], atol=1e-12), (
        "that is the class-1 minus class-0 logit for every review; the margin depends on each review's label y")
    raise AssertionError("the margins differ from logit[right label] − logit[other label]")


# ---------------------------------------------------------------- 3. Rec2FTP's counts
@exercise(part=PART, name="rec2ftp_counts", title="Rec2FTP from the margins", difficulty="★☆☆", minutes=5,
          hint="A review counts when zero-shot is wrong (margin ≤ 0) and fine-tuning right (margin > 0); of those, "
               "how many ICL gets right. Return (denominator, numerator): Rec2FTP = 100 · numerator / denominator.",
          stub='''def rec2ftp_counts(zsl_margin, icl_margin, ft_margin):
    """Three (n,) label margins (> 0: correct) -> (number of reviews ZSL got wrong and FT right, number of those ICL
    got right), two ints."""
    # YOUR CODE HERE
    raise NotImplementedError("rec2ftp_counts")
''')
def check_rec2ftp_counts(fn) -> None:
    g = runtime.generator(22)
    z, i, f = (torch.randn(40, generator=g, dtype=F64) for _ in range(3))
    got = fn(z.clone(), i.clone(), f.clone())
    assert isinstance(got, (tuple, list)) and len(got) == 2, "return a pair (denominator, numerator)"
    den, num = (int(x) for x in got)
    ft_fixes = [k for k in range(40) if z[k] <= 0 < f[k]]
    ref_den, ref_num = len(ft_fixes), sum(1 for k in ft_fixes if i[k] > 0)
    assert den != int((z <= 0).sum()), (
        "the denominator counts the reviews ZSL got wrong *and* FT got right, not every ZSL-wrong review")
    assert (den, num) != (ref_num, ref_den), "the pair is reversed: (denominator, numerator)"
    assert (den, num) == (ref_den, ref_num), f"expected ({ref_den}, {ref_num}), got ({den}, {num})"
    assert abs(100 * num / den - rec2ftp(zsl=z > 0, icl=i > 0, ft=f > 0)) < 1e-9


# ---------------------------------------------------------------- 4. SimAM of one review
@exercise(part=PART, name="simam_one_review", title="SimAM of one review, positions aligned", difficulty="★☆☆",
          minutes=10,
          hint="The ICL prompt is longer (the demonstrations come first), so align by the end: keep the last n_query "
               "scores of both, take the cosine over positions for every layer and head, then average over heads.",
          stub='''def simam_one_review(icl_scores, other_scores, n_query):
    """icl_scores (L, H, T_icl) and other_scores (L, H, T_other): the last token's pre-softmax scores over all
    positions of two prompts that end in the same n_query query-text tokens -> (L,) SimAM per layer."""
    # YOUR CODE HERE
    raise NotImplementedError("simam_one_review")
''')
def check_simam_one_review(fn) -> None:
    g = runtime.generator(23)
    L, H, n_query = 3, 4, 6
    icl = torch.randn(L, H, 20 + n_query, generator=g, dtype=F64)
    other = torch.randn(L, H, n_query, generator=g, dtype=F64)
    other = 0.6 * other + icl[..., -n_query:]  # correlated on the aligned positions only
    got = _expect(fn(icl.clone(), other.clone(), n_query), (L,), "simam_one_review(icl_scores, other_scores, n_query)")
    ref = simam(icl=icl[None, ..., -n_query:], other=other[None], per_example=True)[0]
    if torch.allclose(got.to(F64), ref, atol=1e-10):
        return
    wrong = simam(icl=icl[None, ..., :n_query], other=other[None], per_example=True)[0]
    assert not torch.allclose(got.to(F64), wrong, atol=1e-10), (
        "you compared the *first* n_query ICL positions (the demonstrations); align by the end: [..., -n_query:]")
    raise AssertionError(f"expected {ref.tolist()}, got {got.tolist()}")
