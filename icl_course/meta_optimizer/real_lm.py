"""Part II, "ICL versus fine-tuning on a real language model": Dai et al.'s protocol on SmolLM2-135M-Instruct.

The protocol itself (MR prompts, ZSL / ICL / FT, the recordings, the metrics and their baselines) lives in
``_lm_protocol``, shared with "What the critiques found". This chapter runs it on the pretrained model for two
demonstration draws (:func:`real_lm_comparison`), chooses the fine-tuning learning rate on held-out reviews
(:func:`choose_lr`, run by ``scripts/choose_lm_lr.py``; the chosen value is recorded in
:data:`~._lm_protocol.LM_PROTOCOL`), and reduces the runs to the claim D4b (:func:`simaou_beats_random`).

References
----------
Dai et al. (2022), §4 (the protocol, Rec2FTP, SimAOU, SimAM); Pang and Lee (2005) (MR); Allal et al. (2025)
(SmolLM2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import torch

from .. import lm, tasks
from ._lm_protocol import (
    LM_PROTOCOL,
    DaiSummary,
    LMProtocolSettings,
    LMRun,
    demonstrations,
    mr_split,
    prefix_ids,
    query_ids,
    run_lm_protocol,
    summarise_lm_run,
)

__all__ = ["LMComparison", "real_lm_comparison", "LRChoice", "choose_lr", "SimAOUVersusRandom",
           "simaou_beats_random", "LabelCheck", "label_check", "auc"]


class LMComparison(NamedTuple):
    """One protocol run and its summary per demonstration seed (``runs[i]`` and ``summaries[i]`` belong to
    ``seeds[i]``), the settings used, and the model's description."""

    seeds: tuple[int, ...]
    runs: tuple[LMRun, ...]
    summaries: tuple[DaiSummary, ...]
    settings: LMProtocolSettings
    model: str


def real_lm_comparison(settings: LMProtocolSettings | None = None, *, model: lm.LanguageModel | None = None,
                       seeds: Sequence[int] | None = None, metric_seed: int = 0) -> LMComparison:
    """Run the protocol for each demonstration seed (default ``settings.demo_seeds``) on the pretrained LM (or on
    ``model``, e.g. the untrained copy) and summarise_lm_run each run; ``metric_seed`` draws the random baselines."""
    settings = LM_PROTOCOL.cpu if settings is None else settings
    if not isinstance(settings, LMProtocolSettings):
        raise TypeError(f"settings must be an LMProtocolSettings, got {type(settings).__name__}")
    model = lm.load() if model is None else model
    seeds = tuple(settings.demo_seeds if seeds is None else seeds)
    if not seeds:
        raise ValueError("seeds must name at least one demonstration draw")
    runs = tuple(run_lm_protocol(model, settings, s) for s in seeds)
    summaries = tuple(summarise_lm_run(r, seed=metric_seed + i) for i, r in enumerate(runs))
    return LMComparison(seeds, runs, summaries, settings, repr(model))


class LRChoice(NamedTuple):
    """For each learning rate, on the validation reviews (means over the draws): the fine-tuned accuracy and the
    length of fine-tuning's update of the normalised attention outputs relative to ICL's (``update_ratio``, mean over
    layers and reviews); the zero-shot accuracy; and the chosen rate, whose update is closest in length to ICL's
    (``|log update_ratio|`` smallest)."""

    lrs: tuple[float, ...]
    accuracy: tuple[float, ...]
    update_ratio: tuple[float, ...]
    zero_shot: float
    chosen: float


def _unit(out: torch.Tensor) -> torch.Tensor:
    return out / (torch.linalg.vector_norm(out, dim=-1, keepdim=True) + 1e-20)


def choose_lr(lrs: Sequence[float] = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1), *,
              settings: LMProtocolSettings | None = None, demo_seeds: Sequence[int] = (100, 101)) -> LRChoice:
    """The fine-tuning learning rate, chosen on the validation reviews with demonstration draws (``demo_seeds``)
    that the book never reports. Dai et al. compare the *directions* of ICL's and fine-tuning's updates; the rate is
    set so that fine-tuning's update of the (normalised) attention outputs is as long as ICL's, and the fine-tuned
    accuracy is reported beside it. (Held-out accuracy cannot choose it on this model: every rate fine-tunes below
    zero-shot, so accuracy prefers no fine-tuning at all.) Slow: run by ``scripts/choose_lm_lr.py``, whose output
    is recorded in :data:`~._lm_protocol.LM_PROTOCOL`."""
    settings = LM_PROTOCOL.cpu if settings is None else settings
    if not lrs or not demo_seeds:
        raise ValueError("lrs and demo_seeds must be non-empty")
    model = lm.load()
    texts, labels = tasks.movie_review_polarity()
    label_ids = [model.token_id(name) for name in settings.labels]
    val = mr_split(settings).val
    prompts = [query_ids(model, settings, texts[i], bos=True) for i in val.tolist()]
    bare = [query_ids(model, settings, texts[i], bos=False) for i in val.tolist()]
    zsl = model.record_many(prompts)
    zero_shot = float((torch.stack([lg for lg, _ in zsl])[:, label_ids].argmax(1) == labels[val]).double().mean())
    zsl_unit = _unit(torch.stack([r["output"] for _, r in zsl]))  # (n, L, d)
    acc = torch.zeros(len(lrs), dtype=torch.float64)
    ratio = torch.zeros(len(lrs), dtype=torch.float64)
    for s in demo_seeds:
        demo = demonstrations(settings, s)
        icl = model.record_many(bare, model.prefix(prefix_ids(model, settings, demo)))
        icl_len = torch.linalg.vector_norm(_unit(torch.stack([r["output"] for _, r in icl])) - zsl_unit, dim=-1)
        for j, lr in enumerate(lrs):
            tuned = model.finetuned([(query_ids(model, settings, texts[i], bos=True), label_ids[int(labels[i])])
                                     for i in demo.tolist()], lr)
            ft = tuned.record_many(prompts)
            logits = torch.stack([lg for lg, _ in ft])
            acc[j] += float((logits[:, label_ids].argmax(1) == labels[val]).double().mean()) / len(demo_seeds)
            ft_len = torch.linalg.vector_norm(_unit(torch.stack([r["output"] for _, r in ft])) - zsl_unit, dim=-1)
            ratio[j] += float(ft_len.mean() / icl_len.mean()) / len(demo_seeds)
    chosen = float(lrs[int(ratio.log().abs().argmin())])
    return LRChoice(tuple(float(x) for x in lrs), tuple(acc.tolist()), tuple(ratio.tolist()), zero_shot, chosen)


class SimAOUVersusRandom(NamedTuple):
    """D4b: per demonstration draw, SimAOU (mean over layers and reviews), the zero-mean random baseline, Dai's
    ``U(0, 1)`` baseline, and the paired difference to the zero-mean one with its standard error over reviews."""

    simaou: tuple[float, ...]
    zero_mean: tuple[float, ...]
    uniform: tuple[float, ...]
    difference: tuple[float, ...]
    sem: tuple[float, ...]

    @property
    def margin(self) -> float:
        """The smallest difference in units of its standard error, over the draws."""
        return min(d / s for d, s in zip(self.difference, self.sem))


def simaou_beats_random(summaries: Sequence[DaiSummary]) -> SimAOUVersusRandom:
    """Reduce summaries (one per draw) to :class:`SimAOUVersusRandom`."""
    if not summaries:
        raise ValueError("summaries must hold at least one DaiSummary")
    pairs = [s.versus_zero_mean() for s in summaries]
    return SimAOUVersusRandom(tuple(s.simaou_mean for s in summaries),
                              tuple(float(s.zero_mean_examples.mean()) for s in summaries),
                              tuple(float(s.uniform_examples.mean()) for s in summaries),
                              tuple(p.mean for p in pairs), tuple(p.sem for p in pairs))


def auc(margin: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of a score ``margin (n,)`` for binary ``labels (n,)``: the probability that a random
    positive outscores a random negative (ties count half). 0.5 means the score carries no information about the
    label, whatever its offset — so it separates "knows the task" from "prefers one label"."""
    if margin.ndim != 1 or labels.shape != margin.shape:
        raise ValueError(f"margin and labels must both have shape (n,), got {tuple(margin.shape)} and "
                         f"{tuple(labels.shape)}")
    pos, neg = margin[labels == 1], margin[labels == 0]
    if not len(pos) or not len(neg):
        raise ValueError("labels must contain both classes")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


class LabelCheck(NamedTuple):
    """Zero-shot and in-context accuracy and AUC of the label margin (positive-class logit minus negative-class
    logit) on ``n`` test reviews, for one choice of label tokens."""

    labels: tuple[str, str]
    accuracy: dict[str, float]
    auc: dict[str, float]
    n: int


def label_check(labels: tuple[str, str], *, settings: LMProtocolSettings | None = None, demo_seed: int = 0,
                n: int = 48) -> LabelCheck:
    """Does the prompt teach the task with these label tokens? ZSL and ICL (no fine-tuning) on the first ``n`` test
    reviews, demonstrations of ``demo_seed`` labelled with ``labels`` (class 0, class 1)."""
    settings = replace(LM_PROTOCOL.cpu if settings is None else settings, labels=tuple(labels))
    model = lm.load()
    texts, y = tasks.movie_review_polarity()
    ids = [model.token_id(t) for t in settings.labels]
    demo = demonstrations(settings, demo_seed)
    prefix = model.prefix(prefix_ids(model, settings, demo))
    test = mr_split(settings).test[:n]
    acc, area = {}, {}
    for name, pre in (("zsl", None), ("icl", prefix)):
        two = model.logits_many([query_ids(model, settings, texts[i], bos=pre is None) for i in test.tolist()],
                                pre)[:, ids]
        margin = two[:, 1] - two[:, 0]
        acc[name] = float(((margin > 0).long() == y[test]).double().mean())
        area[name] = auc(margin, y[test])
    return LabelCheck(settings.labels, acc, area, len(test))
