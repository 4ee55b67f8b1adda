"""Part I, "What in-context learning is": zero-, one- and few-shot prompting of SmolLM2-135M-Instruct, offline.

Two tasks. **Repeated random tokens** (Olsson et al. 2022): a sequence of random tokens followed by an exact copy of
itself; the model cannot predict the first copy, and its per-token loss on the second copy measures what it learned
from its own context (:func:`repeated_token_losses`, :func:`in_context_loss_drop`). **MR** movie-review polarity
(Pang and Lee 2005) as a ``k``-shot classification prompt (Brown et al. 2020): ``k`` labelled demonstrations, then the
query review; the prediction is the more probable of the two label tokens (:func:`mr_sweep`). Labels are either the
natural words (``" negative"``/``" positive"``), arbitrary tokens (``" foo"``/``" bar"``: the query alone carries no
information about which is which), or the demonstrations' labels replaced by random ones (Min et al. 2022: here
balanced, ``k/2`` of each class in a random order independent of the gold labels, :func:`fs_demo_labels`);
:func:`calibrate` divides by the label probabilities averaged over content-free queries ("N/A", "" and "[MASK]", as
Zhao et al. 2021).

Data split: a seeded permutation of the 8,530 MR sentences of the ``rotten_tomatoes`` train split (``split_seed``;
MR has 10,662 in all); test reviews are the first ``n_test`` of positions 0–999 (:data:`FS_TEST_RANGE`),
demonstrations are drawn from positions 1,000 onwards (:data:`FS_POOL_START`), ``k/2`` of each class, so the two
never overlap. The demonstrations' key/value cache is
computed once per draw and shared by every test review (:meth:`icl_course.lm.LanguageModel.prefix`). So the prompt's
tokens are ``encode(bos + demonstrations) + encode(query)``: the two parts are tokenised separately (the separator
``"\\n\\n"`` is then one token, where inside a longer text it would be two); :func:`fs_prompt_ids` builds exactly
these ids, for the widget and for the test that the cached prefix gives the same logits as the whole prompt.

References
----------
Brown et al. (2020), §2 (zero-, one-, few-shot); Olsson et al. (2022) (in-context loss on repeated random tokens);
Zhao et al. (2021) (contextual calibration); Min et al. (2022) (random labels in the demonstrations).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .. import _checks, lm, runtime, tasks

__all__ = ["FewShotSettings", "FEW_SHOT", "FS_TEST_RANGE", "FS_POOL_START", "fs_split", "draw_demonstrations",
           "k_shot_prompt", "fs_prompt_ids", "label_probabilities", "calibrate", "repeated_tokens",
           "in_context_loss_drop", "RepeatedTokenRun", "repeated_token_run", "KShotSweep", "mr_sweep",
           "InContextGain", "in_context_gain", "NaturalLabelFinding", "natural_label_finding", "prompt_view",
           "fs_demo_labels", "random_label_balance"]

FS_TEST_RANGE, FS_POOL_START = 1000, 1000
"""Positions of the seeded MR permutation: test reviews from ``[0, 1000)``, the demonstration pool from 1,000 on."""


@dataclass(frozen=True)
class FewShotSettings:
    """The chapter's experiments.

    MR prompts: ``bos`` opens every prompt, each demonstration is ``template`` (with ``{text}``) + label token +
    ``separator``, the query is ``template`` alone; ``natural``/``arbitrary`` the label tokens of class 0 (negative)
    and class 1 (positive); ``ks`` the numbers of demonstrations swept (even, ``k/2`` per class), ``draws`` the
    demonstration draws, ``n_test`` test reviews, ``content_free`` the query texts of contextual calibration (their
    label probabilities are averaged).
    Repeated tokens: ``rep_draws`` sequences of ``rep_length`` tokens drawn uniformly from ids
    ``[rep_low, rep_high)``.
    """

    bos: str = "<|endoftext|>"
    template: str = "Review: {text}\nSentiment:"
    separator: str = "\n\n"
    natural: tuple[str, str] = (" negative", " positive")
    arbitrary: tuple[str, str] = (" foo", " bar")
    ks: tuple[int, ...] = (0, 8)
    draws: tuple[int, ...] = (0, 1, 2)
    n_test: int = 64
    content_free: tuple[str, ...] = ("N/A", "", "[MASK]")
    split_seed: int = 0
    rep_length: int = 40
    rep_draws: int = 8
    rep_low: int = 1000
    rep_high: int = 40000

    def __post_init__(self) -> None:
        for name in ("n_test", "rep_length", "rep_draws"):
            _checks.positive_int(f"FewShotSettings.{name}", getattr(self, name))
        if self.n_test > FS_TEST_RANGE:
            raise ValueError(f"FewShotSettings.n_test must be <= {FS_TEST_RANGE}, got {self.n_test}")
        if not self.ks or any(not isinstance(k, int) or k < 0 or k % 2 for k in self.ks):
            raise ValueError(f"FewShotSettings.ks must be non-negative even integers, got {self.ks}")
        if len(self.draws) < 2:
            raise ValueError(f"FewShotSettings.draws must name at least two draws (a spread), got {self.draws}")
        if (not isinstance(self.content_free, tuple) or not self.content_free
                or not all(isinstance(c, str) for c in self.content_free)):
            raise ValueError(f"FewShotSettings.content_free must be a non-empty tuple of strings, got "
                             f"{self.content_free!r}")
        if "{text}" not in self.template:
            raise ValueError(f"FewShotSettings.template must contain '{{text}}', got {self.template!r}")
        if not 0 <= self.rep_low < self.rep_high:
            raise ValueError(f"need 0 <= rep_low < rep_high, got {self.rep_low}, {self.rep_high}")


FEW_SHOT = runtime.Scales(cpu=FewShotSettings(),
                          paper=FewShotSettings(ks=(0, 2, 4, 8, 16, 32), draws=(0, 1, 2, 3, 4), n_test=1000,
                                                rep_draws=64))
"""The book's size (``cpu``: 64 test reviews, k = 0 and 8, three draws; about 120 s of CPU for the chapter's three
sweeps at roughly 100 tokens/s on one thread) and a larger one (``paper``)."""


def _settings(settings: FewShotSettings | None) -> FewShotSettings:
    settings = FEW_SHOT.cpu if settings is None else settings
    if not isinstance(settings, FewShotSettings):
        raise TypeError(f"settings must be a FewShotSettings, got {type(settings).__name__}")
    return settings


def fs_split(settings: FewShotSettings | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(test, pool)``: indices into :func:`icl_course.tasks.movie_review_polarity` — the first ``n_test`` of the
    seeded permutation, and every review from position :data:`FS_POOL_START` on."""
    s = _settings(settings)
    _, labels = tasks.movie_review_polarity()
    perm = torch.randperm(len(labels), generator=runtime.generator(s.split_seed))
    return perm[: s.n_test], perm[FS_POOL_START:]


def draw_demonstrations(k: int, draw: int, settings: FewShotSettings | None = None) -> torch.Tensor:
    """``k`` demonstration indices (``k/2`` negative, ``k/2`` positive reviews of the pool) in a shuffled order,
    drawn with the generator of ``draw``. Draws are nested: the first ``k`` of a larger ``k`` are not the same set,
    but every ``(k, draw)`` is reproducible."""
    if not isinstance(k, int) or k < 0 or k % 2:
        raise ValueError(f"k must be a non-negative even integer, got {k!r}")
    if not isinstance(draw, int) or draw < 0:
        raise ValueError(f"draw must be a non-negative integer, got {draw!r}")
    _, labels = tasks.movie_review_polarity()
    _, pool = fs_split(settings)
    g = runtime.generator(1000 + draw)
    chosen = []
    for cls in (0, 1):
        members = pool[labels[pool] == cls]
        chosen.append(members[torch.randperm(len(members), generator=g)[: k // 2]])
    both = torch.cat(chosen)
    return both[torch.randperm(k, generator=g)]


def k_shot_prompt(demos: Sequence[str], demo_labels: Sequence[int], query: str, label_words: tuple[str, str],
                  template: str, separator: str) -> str:
    """The ``k``-shot prompt of Brown et al.: each demonstration ``template`` + its label word + ``separator``, then
    the query as ``template`` alone (its label is what the model predicts next). ``k = len(demos)`` may be 0."""
    if len(demos) != len(demo_labels):
        raise ValueError(f"demos and demo_labels must have the same length, got {len(demos)} and {len(demo_labels)}")
    if len(label_words) != 2 or "{text}" not in template:
        raise ValueError("label_words must be two strings and template must contain '{text}'")
    if any(int(y) not in (0, 1) for y in demo_labels):
        raise ValueError(f"demo_labels must be 0 or 1, got {list(demo_labels)}")
    shots = "".join(template.format(text=t) + label_words[int(y)] + separator for t, y in zip(demos, demo_labels))
    return shots + template.format(text=query)


def fs_prompt_ids(model: lm.LanguageModel, demos: str, query: str, bos: str) -> torch.Tensor:
    """The token ids ``(T,)`` of a prompt as :func:`mr_sweep` runs it: ``encode(bos + demos)`` (the cached prefix;
    ``demos`` may be empty) followed by ``encode(query)``."""
    if not isinstance(demos, str) or not isinstance(query, str) or not query:
        raise ValueError("demos must be a string (possibly empty) and query a non-empty string")
    return torch.cat([model.encode(bos + demos), model.encode(query)])


def label_probabilities(logits: torch.Tensor, label_ids: Sequence[int]) -> torch.Tensor:
    """Next-token ``logits (n, V)`` -> ``(n, 2)``: the probabilities of the two label tokens, renormalised to sum
    to 1 (a softmax over the two logits)."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError(f"logits must be a tensor of shape (n, V), got {getattr(logits, 'shape', type(logits))}")
    if len(label_ids) != 2:
        raise ValueError(f"label_ids must name two tokens, got {label_ids}")
    return logits[:, list(label_ids)].softmax(-1)


def calibrate(probs: torch.Tensor, content_free: torch.Tensor) -> torch.Tensor:
    """Contextual calibration (Zhao et al. 2021, W = diag(p_cf)^-1, b = 0): divide each row of ``probs (n, C)`` by
    the content-free label probabilities ``content_free (C,)`` (their mean over the content-free queries) and
    renormalise each row."""
    if not isinstance(probs, torch.Tensor) or probs.ndim != 2:
        raise ValueError(f"probs must be a tensor of shape (n, C), got {getattr(probs, 'shape', type(probs))}")
    if not isinstance(content_free, torch.Tensor) or content_free.shape != probs.shape[1:]:
        raise ValueError(f"content_free must have shape ({probs.shape[1]},), got "
                         f"{getattr(content_free, 'shape', type(content_free))}")
    if bool((content_free <= 0).any()):
        raise ValueError("content_free must hold positive probabilities")
    scaled = probs / content_free
    return scaled / scaled.sum(-1, keepdim=True)


# ------------------------------------------------------------------ repeated random tokens (Olsson et al.)
def repeated_tokens(length: int, draw: int, low: int, high: int, bos_id: int) -> torch.Tensor:
    """``(1 + 2 length,)``: ``bos_id``, then ``length`` token ids uniform in ``[low, high)`` (generator of
    ``draw``), then the same ``length`` ids again."""
    _checks.positive_int("length", length)
    if not 0 <= low < high:
        raise ValueError(f"need 0 <= low < high, got {low}, {high}")
    seq = torch.randint(low, high, (length,), generator=runtime.generator(5000 + draw))
    return torch.cat([torch.tensor([bos_id]), seq, seq])


def in_context_loss_drop(losses: torch.Tensor, length: int) -> tuple[float, float]:
    """From :meth:`~icl_course.lm.LanguageModel.token_losses` of a :func:`repeated_tokens` sequence ``(2 length,)``:
    the mean loss on the first copy (entries ``0 … length-1``) and on the second copy after its first token (entries
    ``length+1 …``: the first token of the second copy follows the last of the first copy, which has no earlier
    occurrence, so it cannot be predicted from the context)."""
    if not isinstance(losses, torch.Tensor) or losses.shape != (2 * length,):
        raise ValueError(f"losses must have shape (2 * length,) = ({2 * length},), got "
                         f"{getattr(losses, 'shape', type(losses))}")
    return float(losses[:length].mean()), float(losses[length + 1:].mean())


class RepeatedTokenRun(NamedTuple):
    """Per-token losses ``(draws, 2 length)`` in nats of the repeated-token sequences and the length of one copy."""

    losses: torch.Tensor
    length: int
    tokens_per_second: float

    def copy_means(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss per draw on the first copy and on the second copy after its (unpredictable) first token, each
        ``(draws,)`` (see :func:`in_context_loss_drop`)."""
        return self.losses[:, : self.length].mean(1), self.losses[:, self.length + 1:].mean(1)


def repeated_token_run(model: lm.LanguageModel, settings: FewShotSettings | None = None, *,
                       first_draw: int = 0) -> RepeatedTokenRun:
    """Run ``rep_draws`` repeated-token sequences (draws ``first_draw …``) through ``model``."""
    import time

    s = _settings(settings)
    bos = model.token_id(s.bos)
    rows, n_tok, t0 = [], 0, time.perf_counter()
    for d in range(first_draw, first_draw + s.rep_draws):
        ids = repeated_tokens(s.rep_length, d, s.rep_low, s.rep_high, bos)
        rows.append(model.token_losses(ids).double())
        n_tok += len(ids)
    return RepeatedTokenRun(torch.stack(rows), s.rep_length, n_tok / (time.perf_counter() - t0))


# ------------------------------------------------------------------ k-shot MR
class KShotSweep(NamedTuple):
    """Accuracy on the test reviews for each ``ks[i]`` and ``draws[j]``: ``accuracy (len(ks), len(draws))``, the
    same after contextual calibration (``calibrated``), the label probabilities ``probs (len(ks), len(draws), n,
    2)`` and the content-free ones ``content_free (len(ks), len(draws), 2)``. ``k = 0`` does not depend on the
    draw (one run, repeated in every column). ``random_labels``: the demonstrations carried random labels."""

    labels: tuple[str, str]
    ks: tuple[int, ...]
    draws: tuple[int, ...]
    accuracy: torch.Tensor
    calibrated: torch.Tensor
    probs: torch.Tensor
    content_free: torch.Tensor
    y: torch.Tensor
    random_labels: bool
    tokens_per_second: float


def _demo_labels(idx: torch.Tensor, draw: int, random_labels: bool) -> list[int]:
    _, y = tasks.movie_review_polarity()
    if not random_labels:
        return [int(y[i]) for i in idx.tolist()]
    k = len(idx)
    balanced = torch.tensor([0] * (k // 2) + [1] * (k - k // 2))
    return balanced[torch.randperm(k, generator=runtime.generator(7000 + draw))].tolist()


def fs_demo_labels(k: int, draw: int, settings: FewShotSettings | None = None, *,
                   random_labels: bool = False) -> tuple[list[int], list[int]]:
    """``(shown, gold)``: the labels the ``k`` demonstrations of ``draw`` carry in the prompt and their gold labels.
    With ``random_labels`` the shown labels are balanced (``k/2`` of each class, the gold demonstrations' label
    prior) in an order drawn independently of the gold labels (generator ``7000 + draw``)."""
    idx = draw_demonstrations(k, draw, settings)
    return _demo_labels(idx, draw, random_labels), _demo_labels(idx, draw, False)


def random_label_balance(k: int, draw: int, settings: FewShotSettings | None = None) -> tuple[int, int]:
    """``(positives, agree)``: how many of the ``k`` random labels of ``draw`` are positive, how many equal gold."""
    shown, gold = fs_demo_labels(k, draw, settings, random_labels=True)
    return sum(shown), sum(a == b for a, b in zip(shown, gold))


_ZERO_SHOT: dict = {}  # the last zero-shot logits: the k = 0 prompt does not depend on the label words
def mr_sweep(model: lm.LanguageModel, labels: tuple[str, str], settings: FewShotSettings | None = None, *,
             ks: Sequence[int] | None = None, draws: Sequence[int] | None = None,
             random_labels: bool = False) -> KShotSweep:
    """Accuracy of ``model`` on the test reviews for each ``k`` in ``ks`` and each demonstration draw, with label
    tokens ``labels`` (class 0, class 1); with ``random_labels`` the demonstrations carry balanced random labels
    (:func:`fs_demo_labels`). ``content_free`` holds the mean label probabilities over ``settings.content_free``."""
    import time

    s = _settings(settings)
    ks = tuple(s.ks if ks is None else ks)
    draws = tuple(s.draws if draws is None else draws)
    if not ks or not draws:
        raise ValueError("ks and draws must be non-empty")
    texts, y = tasks.movie_review_polarity()
    test, _ = fs_split(s)
    ids = [model.token_id(w) for w in labels]
    queries = [model.encode(s.template.format(text=texts[i])) for i in test.tolist()]
    free = [model.encode(s.template.format(text=c)) for c in s.content_free]
    n = len(test)
    probs = torch.zeros(len(ks), len(draws), n, 2, dtype=torch.float64)
    cf = torch.zeros(len(ks), len(draws), 2, dtype=torch.float64)
    n_tok, t0 = 0, time.perf_counter()
    for a, k in enumerate(ks):
        for b, d in enumerate(draws):
            if k == 0 and b > 0:
                probs[a, b], cf[a, b] = probs[a, 0], cf[a, 0]
                continue
            key = (id(model), s.bos, s.template, s.content_free, s.split_seed, s.n_test)  # k = 0: labels play no part
            if k == 0 and _ZERO_SHOT.get("key") == key:
                logits = _ZERO_SHOT["logits"]
            else:
                idx = draw_demonstrations(k, d, s)
                shots = k_shot_prompt([texts[i] for i in idx.tolist()], _demo_labels(idx, d, random_labels), "x",
                                      labels, s.template, s.separator)[: -len(s.template.format(text="x"))]
                pre = model.prefix(model.encode(s.bos + shots))
                logits = model.logits_many([*queries, *free], pre).double()
                n_tok += len(pre) + sum(len(q) for q in queries) + sum(len(f) for f in free)
                _ZERO_SHOT.update({"key": key, "logits": logits} if k == 0 else {})
            p = label_probabilities(logits, ids)
            probs[a, b], cf[a, b] = p[:n], p[n:].mean(0)
    rate = n_tok / (time.perf_counter() - t0)
    acc = (probs.argmax(-1) == y[test]).double().mean(-1)
    cal = torch.stack([torch.stack([calibrate(probs[a, b], cf[a, b]) for b in range(len(draws))])
                       for a in range(len(ks))])
    cal_acc = (cal.argmax(-1) == y[test]).double().mean(-1)
    return KShotSweep(tuple(labels), ks, draws, acc, cal_acc, probs, cf, y[test], random_labels, rate)


class InContextGain(NamedTuple):
    """B3: the in-context gain on one task. ``zero`` the score without context (k = 0 / first copy), ``shot`` the
    scores with context, one per draw; ``higher_is_better`` (accuracy) or not (loss). ``gain`` is the mean
    improvement, ``spread`` the range of ``shot`` over the draws."""

    task: str
    zero: tuple[float, ...]
    shot: tuple[float, ...]
    higher_is_better: bool

    @property
    def gain(self) -> float:
        diff = sum(self.shot) / len(self.shot) - sum(self.zero) / len(self.zero)
        return diff if self.higher_is_better else -diff

    @property
    def spread(self) -> float:
        return max(self.shot) - min(self.shot)

    @property
    def passed(self) -> bool:
        """Gain larger than the spread over draws, and every draw better than the mean without context."""
        base = sum(self.zero) / len(self.zero)
        every = all((v > base) if self.higher_is_better else (v < base) for v in self.shot)
        return self.gain > self.spread and every


def in_context_gain(result: RepeatedTokenRun | KShotSweep, k: int | None = None) -> InContextGain:
    """Reduce a repeated-token run (first copy vs second copy, per draw) or a k-shot sweep (``k = 0`` vs ``k``,
    per draw) to :class:`InContextGain`."""
    if isinstance(result, RepeatedTokenRun):
        first, second = result.copy_means()
        return InContextGain("repeated random tokens (loss, nats)", tuple(first.tolist()), tuple(second.tolist()),
                             False)
    if isinstance(result, KShotSweep):
        if k not in result.ks or 0 not in result.ks:
            raise ValueError(f"k must be one of the sweep's ks {result.ks} and the sweep must include 0, got {k}")
        a0, ak = result.ks.index(0), result.ks.index(k)
        return InContextGain(f"MR with labels {result.labels} (accuracy, k = {k})", (float(result.accuracy[a0, 0]),),
                             tuple(result.accuracy[ak].tolist()), True)
    raise TypeError(f"result must be a RepeatedTokenRun or a KShotSweep, got {type(result).__name__}")


class NaturalLabelFinding(NamedTuple):
    """B4: MR with its natural labels — zero-shot accuracy, and for each ``k > 0`` of the sweep the accuracy per
    draw; the same after contextual calibration; and (when measured) the accuracy with random demonstration labels at
    ``random_k``. ``n`` test reviews."""

    zero_shot: float
    zero_shot_calibrated: float
    ks: tuple[int, ...]
    few_shot: tuple[tuple[float, ...], ...]
    few_shot_calibrated: tuple[tuple[float, ...], ...]
    random_k: int | None
    random_labels: tuple[float, ...]
    n: int

    @property
    def gain(self) -> float:
        """Mean accuracy over the draws at the largest ``k`` minus the zero-shot accuracy."""
        if not self.few_shot:
            raise ValueError("the finding has no k > 0")
        last = self.few_shot[-1]
        return sum(last) / len(last) - self.zero_shot

    @property
    def spread(self) -> float:
        """Range of the accuracy over the draws at the largest ``k``."""
        return max(self.few_shot[-1]) - min(self.few_shot[-1]) if self.few_shot else math.nan

    @property
    def no_reliable_gain(self) -> bool:
        """B4's finding: demonstrations do not reliably help this model — the mean gain over zero-shot at the largest
        ``k`` is not larger than the spread over draws (false for a model whose demonstrations help reliably; true
        when they hurt, reliably or not). Every accuracy must be finite."""
        vals = [self.zero_shot, self.zero_shot_calibrated, *sum(self.few_shot, ()), *self.random_labels]
        if not self.few_shot or not all(math.isfinite(v) for v in vals):
            return False
        return self.gain <= self.spread


def natural_label_finding(sweep: KShotSweep, random: KShotSweep | None = None) -> NaturalLabelFinding:
    """Reduce a natural-label sweep (which must include ``k = 0``) and optionally a random-label one (one ``k``)."""
    if not isinstance(sweep, KShotSweep) or 0 not in sweep.ks:
        raise ValueError("sweep must be a KShotSweep that includes k = 0")
    if random is not None and (not isinstance(random, KShotSweep) or len(random.ks) != 1 or not random.random_labels):
        raise ValueError("random must be a KShotSweep with random_labels=True and exactly one k")
    a0 = sweep.ks.index(0)
    rows = [a for a, k in enumerate(sweep.ks) if k > 0]
    return NaturalLabelFinding(float(sweep.accuracy[a0, 0]), float(sweep.calibrated[a0, 0]),
                               tuple(sweep.ks[a] for a in rows),
                               tuple(tuple(sweep.accuracy[a].tolist()) for a in rows),
                               tuple(tuple(sweep.calibrated[a].tolist()) for a in rows),
                               None if random is None else random.ks[0],
                               () if random is None else tuple(random.accuracy[0].tolist()), len(sweep.y))


def prompt_view(model: lm.LanguageModel, k: int, draw: int, *, review: int = 0, labels: tuple[str, str] | None = None,
                settings: FewShotSettings | None = None) -> str:
    """HTML for the widget: the ``k``-shot prompt (demonstrations of ``draw``) for test review number ``review``, and
    the model's probabilities of the two label tokens with its prediction and the true label."""
    s = _settings(settings)
    labels = s.natural if labels is None else labels
    texts, y = tasks.movie_review_polarity()
    test, _ = fs_split(s)
    if not 0 <= review < len(test):
        raise ValueError(f"review must be in [0, {len(test)}), got {review}")
    q = int(test[review])
    idx = draw_demonstrations(k, draw, s)
    query = s.template.format(text=texts[q])
    prompt = k_shot_prompt([texts[i] for i in idx.tolist()], _demo_labels(idx, draw, False), texts[q], labels,
                           s.template, s.separator)
    ids = fs_prompt_ids(model, prompt[: len(prompt) - len(query)], query, s.bos)
    p = label_probabilities(model.logits(ids)[None].double(), [model.token_id(w) for w in labels])[0]
    pred = int(p.argmax())
    verdict = "correct" if pred == int(y[q]) else "wrong"
    bars = "".join(f"<div>P({html.escape(w)!s}) = {float(p[c]):.3f}</div>" for c, w in enumerate(labels))
    return (f"<pre style='white-space:pre-wrap;font-size:80%;max-height:18em;overflow:auto'>{html.escape(prompt)}"
            f"</pre>{bars}<div><b>prediction:{html.escape(labels[pred])}</b> — true label:"
            f"{html.escape(labels[int(y[q])])} ({verdict})</div>")
