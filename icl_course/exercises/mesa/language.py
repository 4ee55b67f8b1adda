"""Exercises of Part IV, chapter "A small language model with mesa layers".

Each reference solution below is the exact code the chapter shows in its solution block (a test keeps them
identical); each stub is what the student edition shows instead. The checkers compare against the package
(:meth:`icl_course.tasks.CharCorpus.windows`, :func:`icl_course.tasks.ngram_log_probs`,
:func:`icl_course.mesa.position_losses`'s formula) on fixed seeds, accept float32 answers, and name the classic
slips: targets not shifted, counts without smoothing or normalised by the wrong total, a transposed bigram table,
bits for nats, the mean over the wrong axis, and logits used as log-probabilities.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ... import runtime, tasks
from .. import exercise
from ._common import PART, _expect

F64 = torch.float64


def _ids(seed: int, n: int, vocab: int, high: int | None = None) -> torch.Tensor:
    """``n`` random ids in ``[0, high or vocab)``, int64."""
    return torch.randint(0, high or vocab, (n,), generator=runtime.generator(seed))


def _number(value: object, what: str) -> float:
    if isinstance(value, torch.Tensor):
        assert value.numel() == 1, f"{what} must be one number, got a tensor of shape {tuple(value.shape)}"
        value = value.item()
    assert isinstance(value, (int, float)) and not isinstance(value, bool), (
        f"{what} must be a number (float or 0-d tensor), got {type(value).__name__}")
    return float(value)


def _near(a: float, b: float) -> bool:
    return math.isfinite(a) and abs(a - b) <= 1e-5 * abs(b) + 1e-9


# ---------------------------------------------------------------- 1. windows and their targets
@exercise(part=PART, name="next_char_windows", title="Windows and their next characters", difficulty="★☆☆",
          minutes=10,
          hint="x[b] = ids[s_b : s_b + T] and y[b] = ids[s_b + 1 : s_b + T + 1]: the target of position t is the "
               "character at t + 1, so y is x shifted left by one.",
          stub='''def next_char_windows(ids, starts, block_size):
    """ids (N,) int64, starts (B,) int64, block_size T -> (x, y), both (B, T): each window's characters and, for
    every position, the character that follows it."""
    # YOUR CODE HERE
    raise NotImplementedError("next_char_windows")
''')
def check_next_char_windows(fn) -> None:
    ids = _ids(0, 200, 30)
    for starts, T in ((torch.tensor([0, 17, 120]), 8), (torch.tensor([5, 190 - 9]), 9)):
        out = fn(ids.clone(), starts.clone(), T)
        assert isinstance(out, (tuple, list)) and len(out) == 2, "return the pair (x, y)"
        x, y = (_expect(o, (len(starts), T), f"next_char_windows(...)[{i}]") for i, o in enumerate(out))
        ref_x = torch.stack([ids[s:s + T] for s in starts.tolist()])
        ref_y = torch.stack([ids[s + 1:s + T + 1] for s in starts.tolist()])
        assert torch.equal(x, ref_x), "x[b] must be ids[starts[b] : starts[b] + T]"
        assert not torch.equal(y, ref_x), "y equals x: the targets must be shifted by one character"
        assert torch.equal(y, ref_y), "y[b] must be ids[starts[b] + 1 : starts[b] + T + 1]"
    corpus = tasks.CharCorpus("abcd", ids % 4, ids % 4, ())
    x, y = fn(corpus.val, torch.tensor([0, 11]), 10)
    ref = corpus.windows("val", 10, 2)
    assert torch.equal(x, ref[0]) and torch.equal(y, ref[1]), "windows at 0 and T + 1 must match CharCorpus.windows"


# ---------------------------------------------------------------- 2. the unigram baseline
@exercise(part=PART, name="unigram_loss", title="The unigram baseline", difficulty="★☆☆", minutes=10,
          hint="p(c) = (n_c + 1) / (N + V) from the training counts (add-one smoothing); the loss is the mean of "
               "−ln p(c) over the validation characters, in nats (natural log).",
          stub='''def unigram_loss(train_ids, val_ids, vocab_size):
    """train_ids (N,), val_ids (M,) int64 -> the validation cross-entropy (nats/char, a float) of the add-one
    smoothed unigram model fitted on train_ids."""
    # YOUR CODE HERE
    raise NotImplementedError("unigram_loss")
''')
def check_unigram_loss(fn) -> None:
    V = 12
    train, val = _ids(1, 500, V, high=V - 2), _ids(2, 300, V)  # the last two characters never occur in training
    got = _number(fn(train.clone(), val.clone(), V), "unigram_loss(train_ids, val_ids, vocab_size)")
    ref = float(-tasks.ngram_log_probs(train, V, 1)[val].mean())
    if _near(got, ref):
        return
    assert math.isfinite(got), ("the loss is infinite: characters unseen in training get probability 0 without "
                                "add-one smoothing")
    counts = torch.bincount(train, minlength=V).double() + 1
    assert not _near(got, ref / math.log(2)), "this is in bits (log₂): the course reports nats (natural log)"
    assert not _near(got, float(-(counts / len(train)).log()[val].mean())), (
        "normalise by N + V (the total of the smoothed counts), not by N")
    raise AssertionError(f"expected {ref:.6f} nats/char, got {got:.6f}")


# ---------------------------------------------------------------- 3. the bigram baseline
@exercise(part=PART, name="bigram_loss", title="The bigram baseline", difficulty="★☆☆", minutes=10,
          hint="Count the training pairs (b, c) of consecutive characters into a V × V table, add one to every cell, "
               "and divide each row b by its sum (n_b + V). The loss averages −ln p(c | b) over the M − 1 "
               "consecutive pairs of the validation text.",
          stub='''def bigram_loss(train_ids, val_ids, vocab_size):
    """train_ids (N,), val_ids (M,) int64 -> the validation cross-entropy (nats/char, a float) of the add-one
    smoothed bigram model p(c | b) fitted on train_ids, over the M − 1 consecutive pairs of val_ids."""
    # YOUR CODE HERE
    raise NotImplementedError("bigram_loss")
''')
def check_bigram_loss(fn) -> None:
    V = 9
    train = _ids(3, 2_000, V)
    train = torch.where(train[:-1] == 0, 1 + train[1:] % 2, train[1:])  # after a 0 comes a 1 or a 2 only: skewed
    val = _ids(4, 400, V)
    got = _number(fn(train.clone(), val.clone(), V), "bigram_loss(train_ids, val_ids, vocab_size)")
    log_p = tasks.ngram_log_probs(train, V, 2)
    ref = float(-log_p[val[:-1], val[1:]].mean())
    if _near(got, ref):
        return
    assert math.isfinite(got), "the loss is infinite: add one to every cell so no pair has probability 0"
    assert not _near(got, float(-log_p.T[val[:-1], val[1:]].mean())), (
        "the table is transposed: row b (the previous character) must be normalised, p(c | b) = n_bc+1 / n_b+V")
    counts = torch.bincount(train[:-1] * V + train[1:], minlength=V * V).double().view(V, V) + 1
    assert not _near(got, float(-(counts / counts.sum()).log()[val[:-1], val[1:]].mean())), (
        "this is the joint p(b, c): divide each row by its own sum to get p(c | b)")
    assert not _near(got, ref / math.log(2)), "this is in bits (log₂): the course reports nats (natural log)"
    raise AssertionError(f"expected {ref:.6f} nats/char, got {got:.6f}")


# ---------------------------------------------------------------- 4. the loss at each position of the window
@exercise(part=PART, name="window_position_losses", title="The loss at each position of the window",
          difficulty="★☆☆", minutes=5,
          hint="Turn the logits into log-probabilities with log_softmax over the vocabulary (last axis), pick the "
               "target's entry at every (window, position), negate, and average over the windows (axis 0) only.",
          stub='''def window_position_losses(logits, targets):
    """logits (B, T, V) float, targets (B, T) int64 -> (T,): the cross-entropy in nats at each position, averaged
    over the B windows."""
    # YOUR CODE HERE
    raise NotImplementedError("window_position_losses")
''')
def check_window_position_losses(fn) -> None:
    B, T, V = 6, 5, 7
    gen = runtime.generator(5)
    for dtype in (F64, torch.float32):
        logits = (3 * torch.randn(B, T, V, generator=gen, dtype=F64)).to(dtype)
        targets = torch.randint(0, V, (B, T), generator=gen)
        got = _expect(fn(logits.clone(), targets.clone()), (T,), "window_position_losses(logits, targets)")
        full = F.cross_entropy(logits.double().reshape(-1, V), targets.reshape(-1), reduction="none").view(B, T)
        ref = full.mean(0)
        tol = 1e-10 if dtype == F64 else 1e-5
        if torch.allclose(got.detach().double(), ref, rtol=tol, atol=tol):
            continue
        picked = logits.double().gather(-1, targets[..., None])[..., 0]
        assert not torch.allclose(got.detach().double(), -picked.mean(0), rtol=1e-4), (
            "the logits are not log-probabilities: apply log_softmax over the vocabulary first")
        assert not torch.allclose(got.detach().double(), ref / math.log(2), rtol=1e-4), (
            "this is in bits (log₂): the course reports nats")
        raise AssertionError(f"the per-position losses differ (max abs error "
                             f"{float((got.detach().double() - ref).abs().max()):.3g}, {dtype})")
