"""Exercises of Part I, chapter "What in-context learning is".

The checkers need no language model: they compare with the chapter's functions on small made-up inputs (a few
reviews, random logits, probabilities and losses) and recognise the classic slips by name — a missing separator,
swapped label words, the query's label leaked into the prompt, an argmax over the whole vocabulary, multiplying by
the content-free probabilities instead of dividing, forgetting to renormalise, splitting the two copies one
position off, and counting the unpredictable first token of the second copy.
"""

from __future__ import annotations

import torch

from ... import runtime
from ...basics import FEW_SHOT, calibrate, k_shot_prompt
from .. import exercise

__all__ = ["check_few_shot_prompt", "check_two_label_accuracy", "check_contextual_calibration",
           "check_copy_losses"]

PART = "basics"
F64 = torch.float64
REVIEWS = ["a gorgeous , witty , seductive movie .", "the plot is nothing but boilerplate clichés .",
           "an utterly charming french comedy .", "a dull , simple-minded and stereotypical tale ."]
QUERY = "a masterpiece four years in the making ."


def _expect(value: object, shape: tuple, what: str) -> torch.Tensor:
    assert isinstance(value, torch.Tensor), f"{what} must be a torch.Tensor, got {type(value).__name__}"
    assert tuple(value.shape) == shape, f"{what} must have shape {shape}, got {tuple(value.shape)}"
    return value


# ---------------------------------------------------------------- 1. the k-shot prompt
@exercise(part=PART, name="few_shot_prompt", title="A k-shot prompt", difficulty="★☆☆", minutes=5,
          hint="Each demonstration is the template filled with its review, then its label word (label_words[y], with "
               "its leading space), then the separator; the query comes last, as the template alone — its label is "
               "what the model must predict. With no demonstrations the prompt is the query alone (zero-shot).",
          stub='''def few_shot_prompt(demos, demo_labels, query, label_words, template, separator):
    """demos: list of k reviews; demo_labels: list of k labels 0/1; query: the review to classify; label_words:
    (word for 0, word for 1); template with '{text}'; separator after each demonstration -> the prompt (a str)."""
    # YOUR CODE HERE
    raise NotImplementedError("few_shot_prompt")
''')
def check_few_shot_prompt(fn) -> None:
    s = FEW_SHOT.cpu
    labels = [1, 0, 1, 0]
    for k in (4, 0):
        got = fn(list(REVIEWS[:k]), list(labels[:k]), QUERY, s.natural, s.template, s.separator)
        assert isinstance(got, str), f"few_shot_prompt must return a str, got {type(got).__name__}"
        ref = k_shot_prompt(REVIEWS[:k], labels[:k], QUERY, s.natural, s.template, s.separator)
        if got == ref:
            continue
        assert k, f"with no demonstrations (zero-shot) the prompt is the query alone: expected {ref!r}, got {got!r}"
        assert got != "".join(s.template.format(text=t) + s.natural[y] for t, y in zip(REVIEWS, labels)) + \
            s.template.format(text=QUERY), "the demonstrations run into each other: end each one with the separator"
        assert got != k_shot_prompt(REVIEWS, [1 - y for y in labels], QUERY, s.natural, s.template, s.separator), (
            "the label words are swapped: label_words[0] names class 0 (a negative review)")
        assert not got.endswith(s.natural[0]) and not got.endswith(s.natural[1]), (
            "the prompt ends with a label word: the query's label is what the model predicts, leave it out")
        raise AssertionError(f"expected …{ref[-120:]!r}, got …{got[-120:]!r}")


# ---------------------------------------------------------------- 2. accuracy from two label tokens
@exercise(part=PART, name="two_label_accuracy", title="From next-token logits to an accuracy", difficulty="★☆☆",
          minutes=5,
          hint="Keep only the two label tokens' columns (label_ids[0] names class 0), take the argmax over those two "
               "(not over the whole vocabulary: a class is 0 or 1, not a token id), and compare with y.",
          stub='''def two_label_accuracy(logits, label_ids, y):
    """logits (n, V) next-token logits; label_ids (2,) token ids of class 0 and class 1; y (n,) true classes ->
    a 0-dim tensor: the fraction of reviews whose more probable label token is the right one."""
    # YOUR CODE HERE
    raise NotImplementedError("two_label_accuracy")
''')
def check_two_label_accuracy(fn) -> None:
    g = runtime.generator(31)
    logits = torch.randn(40, 60, generator=g, dtype=F64)
    label_ids = torch.tensor([7, 31])
    y = torch.randint(0, 2, (40,), generator=g)
    got = fn(logits.clone(), label_ids.clone(), y.clone())
    got = _expect(torch.as_tensor(got, dtype=F64), (), "two_label_accuracy(logits, label_ids, y)")
    ref = (torch.where(logits[:, label_ids[1]] > logits[:, label_ids[0]], 1, 0) == y).to(F64).mean()
    if torch.allclose(got, ref):
        return
    assert not torch.allclose(got, (logits.argmax(1) == y).double().mean()), (
        "you took the argmax over the whole vocabulary: restrict to the two label tokens first")
    assert not torch.allclose(got, 1 - ref), "the label tokens are in the wrong order: label_ids[0] names class 0"
    raise AssertionError(f"expected {float(ref):.4f}, got {float(got):.4f}")


# ---------------------------------------------------------------- 3. contextual calibration
@exercise(part=PART, name="contextual_calibration", title="Contextual calibration", difficulty="★☆☆", minutes=5,
          hint="Divide every row of probs by the content-free probabilities (the bias the prompt puts on each "
               "label), then renormalise each row to sum to 1. Check: calibrating the content-free row itself gives "
               "the uniform distribution.",
          stub='''def contextual_calibration(probs, content_free):
    """probs (n, C) label probabilities; content_free (C,) the label probabilities on a content-free query such as
    'N/A' -> (n, C) calibrated probabilities (rows sum to 1)."""
    # YOUR CODE HERE
    raise NotImplementedError("contextual_calibration")
''')
def check_contextual_calibration(fn) -> None:
    g = runtime.generator(32)
    probs = torch.rand(10, 3, generator=g, dtype=F64).softmax(-1)
    free = torch.tensor([0.7, 0.2, 0.1], dtype=F64)
    got = _expect(fn(probs.clone(), free.clone()), (10, 3), "contextual_calibration(probs, content_free)")
    ref = calibrate(probs, free)
    if torch.allclose(got.to(F64), ref):
        return
    times = probs * free
    assert not torch.allclose(got.to(F64), times / times.sum(-1, keepdim=True)), (
        "you multiplied by the content-free probabilities: divide, so the favoured label is pulled down")
    assert not torch.allclose(got.to(F64), probs / free), "each row must be renormalised to sum to 1"
    raise AssertionError(f"expected row 0 {ref[0].tolist()}, got {got[0].tolist()}")


# ---------------------------------------------------------------- 4. the in-context loss drop
@exercise(part=PART, name="copy_losses", title="The loss on the first and on the second copy", difficulty="★☆☆",
          minutes=10,
          hint="The sequence is [BOS, t_1 … t_L, t_1 … t_L] and losses[t] scores token t+1 given tokens 0 … t, so "
               "losses[0 : L] score the first copy (the BOS is never scored) and losses[L : 2L] the second; "
               "losses[L] scores the second copy's first token, which follows t_L (never seen before): leave it out "
               "of the second-copy mean.",
          stub='''def copy_losses(losses, length):
    """losses (2 * length,) per-token losses of [BOS, seq, seq] (entry t scores token t + 1) -> tensor (2,):
    the mean loss on the first copy, and on the second copy after its first token (which cannot be predicted)."""
    # YOUR CODE HERE
    raise NotImplementedError("copy_losses")
''')
def check_copy_losses(fn) -> None:
    g = runtime.generator(33)
    length = 6
    losses = torch.cat([10 + torch.rand(length, generator=g, dtype=F64), torch.rand(length, generator=g, dtype=F64)])
    losses[length] += 12  # the second copy's first token is as unpredictable as the first copy's
    got = _expect(torch.as_tensor(fn(losses.clone(), length), dtype=F64), (2,), "copy_losses(losses, length)")
    ref = torch.stack([losses[:length].mean(), losses[length + 1:].mean()])
    if torch.allclose(got, ref):
        return
    assert not torch.allclose(got, ref.flip(0)), "first copy first: return (first-copy mean, second-copy mean)"
    assert not torch.allclose(got, torch.stack([losses[:length].mean(), losses[length:].mean()])), (
        "leave out losses[L], the second copy's first token: it follows t_L, which has no earlier occurrence, so the "
        "context cannot predict it")
    for shift in (-1, 1):
        off = torch.stack([losses[: length + shift].mean(), losses[length + shift:].mean()])
        assert not torch.allclose(got, off), (
            f"the split is {shift:+d} position off: losses[t] scores token t + 1, so the first copy is losses[:L]")
    raise AssertionError(f"expected {ref.tolist()}, got {got.tolist()}")
