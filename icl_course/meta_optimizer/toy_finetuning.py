"""ICL versus fine-tuning on a small GPT trained from scratch: Dai et al.'s protocol where everything is controlled.

A GPT is trained on the toy in-context classification task of :mod:`._toy_task`. Then, per evaluation task, three
runs of the same model on the same query: zero-shot (ZSL, the query alone), in-context (ICL, ``k`` demonstrations
then the query) and fine-tuned (FT: plain SGD on only the key and value projections of every attention layer, one
epoch, batch size 1, the demonstrations in prompt order, each in the zero-shot format with its label as target; the
weights are restored after each task). At the last query token every layer's attention output and pre-softmax
logits over the query text are recorded; Dai's metrics (:mod:`._dai_metrics`) compare them, next to the baselines
that decide what the numbers mean: Dai's ``U(0, 1)`` update, a zero-mean random update, the same protocol on an
untrained copy of the model (Deutch et al. 2023), fine-tuning on reversed demonstrations (Shen et al. 2023), and
two label-swapped controls on the trained model (FT, or ICL, on demonstrations whose class→label mapping is
swapped). Rec2FTP is tested against its null of independence (exact hypergeometric) where ICL is off its ceiling.

References
----------
Dai et al. (2022), §4 (Rec2FTP, SimAOU, SimAM; FT of K/V only); Deutch et al. (2023) (untrained-model baseline);
Shen et al. (2023) (order). Part II, ``book/part2_toy_finetuning.ipynb`` (claims D4a, D5a, D9, D10).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .. import _checks, runtime, train
from ..gpt import GPT
from ._dai_metrics import (
    PairedDifference,
    kendall_tau,
    paired_difference,
    rec2ftp,
    simam,
    simaou,
    uniform_update,
    zero_mean_update,
)
from ._toy_task import (
    TOY,
    Recording,
    ToySettings,
    ToyTasks,
    _ids,
    icl_prompt,
    label_correct,
    new_toy_model,
    record,
    sample_toy_tasks,
    train_toy_model,
    training_batch,
    zsl_prompt,
)

__all__ = ["ToySettings", "TOY", "ToyTasks", "sample_toy_tasks", "icl_prompt", "zsl_prompt", "training_batch",
           "new_toy_model", "train_toy_model", "Recording", "record", "label_correct", "kv_parameters",
           "finetune_kv", "Protocol", "run_protocol", "choose_ft_lr", "ToyMetrics", "toy_metrics", "ToySummary",
           "toy_summary", "toy_experiment", "swap_labels", "Rec2FTPTest", "rec2ftp_test", "label_argmax_correct"]


def kv_parameters(model: GPT) -> list[torch.Tensor]:
    """The key and value projection weights of every attention layer, ``[W_K⁽⁰⁾, W_V⁽⁰⁾, W_K⁽¹⁾, …]``."""
    return [p for b in model.blocks for p in (b.mix.W_K.weight, b.mix.W_V.weight)]


def finetune_kv(model: GPT, demos: torch.Tensor, demo_labels: torch.Tensor, lr: float) -> train.History:
    """Dai et al.'s fine-tuning baseline, in place: plain SGD (``train.fit(optimizer="sgd", clip=None)``) on only
    the key and value projections, one epoch over the demonstrations ``demos (k, L)`` in the given order, batch size
    1, each in the zero-shot format (its items) with its label ``demo_labels (k,)`` as the target at the last item.
    Every other parameter keeps ``requires_grad=False`` during the call (restored after)."""
    _ids("demos", demos, 2, "(k, L)")
    _ids("demo_labels", demo_labels, 1, "(k,)")
    _checks.same("demos' k", demos.shape[0], "demo_labels' k", demo_labels.shape[0], "demonstrations")
    lr = _checks.positive_float("lr", lr)
    kv = {id(p) for p in kv_parameters(model)}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(id(p) in kv)

    def loss_fn(m: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        idx, y = batch
        return F.cross_entropy(m(idx)[:, -1], y)

    batches = [(demos[i:i + 1], demo_labels[i:i + 1]) for i in range(demos.shape[0])]
    try:
        return train.fit(model, loss_fn, batches, len(batches), lr=lr, optimizer="sgd", clip=None, progress=False)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class Protocol(NamedTuple):
    """One model on ``n`` tasks: :class:`Recording` of ZSL, ICL and FT, and the FT runs' per-step gradient norms
    ``ft_grad_norm (n, k)``."""

    zsl: Recording
    icl: Recording
    ft: Recording
    ft_grad_norm: torch.Tensor


def run_protocol(model: GPT, tasks: ToyTasks, ft_lr: float, *, ft_order: torch.Tensor | None = None) -> Protocol:
    """ZSL, ICL (demonstrations in prompt order) and FT (in ``ft_order``, default prompt order) of ``model`` on every
    task; the model's weights are unchanged afterwards."""
    n_text = tasks.query.shape[1]
    zsl = record(model, zsl_prompt(tasks), n_text)
    icl = record(model, icl_prompt(tasks), n_text)
    saved = [p.detach().clone() for p in kv_parameters(model)]
    demos, labels = (tasks.demos, tasks.demo_labels) if ft_order is None else (
        tasks.demos[:, ft_order], tasks.demo_labels[:, ft_order])
    fts, norms = [], []
    for i in range(tasks.query.shape[0]):
        hist = finetune_kv(model, demos[i], labels[i], ft_lr)
        fts.append(record(model, tasks.query[i:i + 1], n_text))
        norms.append(hist.grad_norm)
        with torch.no_grad():
            for p, w in zip(kv_parameters(model), saved):
                p.copy_(w)
    ft = Recording(*(torch.cat([getattr(r, f) for r in fts]) for f in Recording._fields))
    return Protocol(zsl, icl, ft, torch.tensor(norms))


def choose_ft_lr(model: GPT, settings: ToySettings = TOY.cpu, *, seed: int = 100, n_tasks: int = 200,
                 grid: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)) -> tuple[float, dict[float, float]]:
    """The fine-tuning learning rate: FT accuracy on ``n_tasks`` held-out tasks (``runtime.generator(seed)``, never
    the evaluation tasks) for each rate of ``grid``; returns the best rate and every rate's accuracy. Run once;
    the chosen value is recorded in :data:`TOY` (``ft_lr``)."""
    tasks = sample_toy_tasks(n_tasks, settings, generator=runtime.generator(seed))
    acc = {}
    for lr in grid:
        acc[lr] = float(label_correct(run_protocol(model, tasks, lr).ft.logits, tasks).double().mean())
    return max(acc, key=lambda lr: (acc[lr], -lr)), acc


def swap_labels(tasks: ToyTasks) -> ToyTasks:
    """The same tasks with the demonstrations' class→label mapping swapped (each demonstration gets its task's other
    label); items, query and the query's correct ``label`` are unchanged."""
    return tasks._replace(demo_labels=tasks.pair.sum(1, keepdim=True) - tasks.demo_labels)


def label_argmax_correct(logits: torch.Tensor, tasks: ToyTasks, settings: ToySettings = TOY.cpu) -> torch.Tensor:
    """``(n,)`` bool: the correct label is the arg-max of the logits ``(n, V)`` over *all* ``n_labels`` label tokens
    (chance ``1/n_labels``), the stricter scoring under which one demonstration leaves ICL off its ceiling."""
    return logits[:, settings.n_items:].argmax(1) + settings.n_items == tasks.label


class ToyMetrics(NamedTuple):
    """Dai's metrics of one model on one set of tasks. ``correct`` maps ``"ZSL"``, ``"ICL"``, ``"FT"`` (and with
    controls ``"ICL, swapped labels"``, ``"FT, swapped labels"``) to ``(n,)`` bool; ``simaou`` maps ``"FT"``,
    ``"U(0,1)"``, ``"N(0,1)"``, ``"FT, reversed"`` (and with controls ``"FT, swapped labels"``: FT on swapped
    demonstrations against true ICL; ``"ICL, swapped labels"``: ICL on swapped demonstrations against true FT) to
    per-example cosines ``(n, n_layers)``; ``simam`` maps ``"ICL vs FT"``, ``"ICL vs ZSL"`` (pre-softmax logits) and
    ``"update"`` (cosine of the logit changes ICL − ZSL and FT − ZSL) to ``(n, n_layers)``; ``kendall`` maps
    exploratory per-task τ ``(n,)`` (NaN where undefined): ``"mass vs FT step"`` (ICL's last-layer attention mass on
    each demonstration vs that demonstration's FT gradient norm), ``"mass vs FT step, reversed FT"`` (the same with
    FT run in reversed order), ``"mass vs position"`` and ``"FT step vs position"``."""

    correct: dict[str, torch.Tensor]
    simaou: dict[str, torch.Tensor]
    simam: dict[str, torch.Tensor]
    kendall: dict[str, torch.Tensor]


def _taus(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    out = []
    for x, y in zip(a.double(), b.double()):
        try:
            out.append(kendall_tau(x, y))
        except ValueError:
            out.append(float("nan"))
    return torch.tensor(out, dtype=torch.float64)


def toy_metrics(model: GPT, tasks: ToyTasks, ft_lr: float, *, seed: int = 0, controls: bool = False) -> ToyMetrics:
    """Run :func:`run_protocol` (and FT on reversed demonstrations; with ``controls`` also the protocol on
    :func:`swap_labels` tasks) and compute :class:`ToyMetrics`; the random updates come from
    ``runtime.generator(seed)``."""
    p = run_protocol(model, tasks, ft_lr)
    k = tasks.demos.shape[1]
    shuffled = run_protocol(model, tasks, ft_lr, ft_order=torch.arange(k - 1, -1, -1))
    g = runtime.generator(seed)
    z, i = p.zsl.aou.double(), p.icl.aou.double()
    aou = {"FT": simaou(zsl=z, icl=i, ft=p.ft.aou.double(), per_example=True),
           "U(0,1)": simaou(zsl=z, icl=i, ft_update=uniform_update(z, g), per_example=True),
           "N(0,1)": simaou(zsl=z, icl=i, ft_update=zero_mean_update(z, g), per_example=True),
           "FT, reversed": simaou(zsl=z, icl=i, ft=shuffled.ft.aou.double(), per_example=True)}
    za = p.zsl.am.double()
    am = {"ICL vs FT": simam(icl=p.icl.am.double(), other=p.ft.am.double(), per_example=True),
          "ICL vs ZSL": simam(icl=p.icl.am.double(), other=za, per_example=True),
          "update": simam(icl=p.icl.am.double() - za, other=p.ft.am.double() - za, per_example=True)}
    runs = [("ZSL", p.zsl), ("ICL", p.icl), ("FT", p.ft)]
    if controls:
        sw = run_protocol(model, swap_labels(tasks), ft_lr)
        aou["FT, swapped labels"] = simaou(zsl=z, icl=i, ft=sw.ft.aou.double(), per_example=True)
        aou["ICL, swapped labels"] = simaou(zsl=z, icl=sw.icl.aou.double(), ft=p.ft.aou.double(), per_example=True)
        runs += [("ICL, swapped labels", sw.icl), ("FT, swapped labels", sw.ft)]
    correct = {name: label_correct(r.logits, tasks) for name, r in runs}
    L1 = tasks.query.shape[1] + 1
    mass = p.icl.weights[:, -1].mean(1)[:, : k * L1].reshape(-1, k, L1).sum(-1)  # (n, k) last layer, mean heads
    pos = torch.arange(k).expand(mass.shape[0], k)
    tau = {"mass vs FT step": _taus(mass, p.ft_grad_norm),
           "mass vs FT step, reversed FT": _taus(mass, shuffled.ft_grad_norm.flip(1)),  # back to prompt order
           "mass vs position": _taus(mass, pos), "FT step vs position": _taus(p.ft_grad_norm, pos)}
    return ToyMetrics(correct, aou, am, tau)


def _cat(ms: list[ToyMetrics], field: str) -> dict[str, torch.Tensor]:
    return {key: torch.cat([getattr(m, field)[key] for m in ms]) for key in getattr(ms[0], field)}


class ToySummary(NamedTuple):
    """What the claims judge, pooled over demonstration seeds: accuracies (``acc``, with ``acc_sem``), ICL − ZSL
    accuracy as paired statistics (``icl_gain``), Rec2FTP (NaN where undefined) and ICL's accuracy on the ZSL-wrong
    examples (its chance level), SimAOU per layer (``simaou``: name → ``(n_layers,)``), SimAM per layer, and the
    paired differences of the layer-mean SimAOU: trained FT minus the zero-mean update (``vs_zero_mean``, D4a),
    trained minus the untrained copy (``vs_untrained``, D5a), FT minus FT on the reversed demonstrations
    (``vs_shuffled``), FT minus FT on label-swapped demonstrations (``vs_swapped``) and ICL minus ICL on swapped
    demonstrations (``vs_icl_swapped``; both ``None`` without controls); ``simam_gap``: layer-mean SimAM, ICL vs FT
    minus ICL vs ZSL; ``rec_test``: the :class:`Rec2FTPTest` (D10) when computed; ``ft_lr`` and ``ft_lr_accuracy``:
    the fine-tuning step :func:`toy_experiment` used and how it was chosen."""

    acc: dict[str, float]
    acc_sem: dict[str, float]
    icl_gain: PairedDifference
    rec2ftp: float
    icl_on_zsl_wrong: float
    simaou: dict[str, torch.Tensor]
    simam: dict[str, torch.Tensor]
    vs_zero_mean: PairedDifference
    vs_untrained: PairedDifference
    vs_shuffled: PairedDifference
    vs_swapped: PairedDifference | None = None
    vs_icl_swapped: PairedDifference | None = None
    simam_gap: PairedDifference | None = None
    rec_test: Rec2FTPTest | None = None
    ft_lr: float = math.nan  # the fine-tuning step used (chosen on the trained model by toy_experiment)
    ft_lr_accuracy: dict[float, float] | None = None  # choose_ft_lr's held-out FT accuracy per step on its grid


def _rec2ftp_or_nan(c: dict[str, torch.Tensor]) -> float:
    try:
        return rec2ftp(zsl=c["ZSL"], icl=c["ICL"], ft=c["FT"])
    except ValueError:  # no example is ZSL-wrong and FT-right: undefined
        return float("nan")


def toy_summary(trained: list[ToyMetrics], untrained: list[ToyMetrics],
                rec_test: Rec2FTPTest | None = None) -> ToySummary:
    """Pool :class:`ToyMetrics` over demonstration seeds (same tasks for ``trained`` and ``untrained``) into a
    :class:`ToySummary` (``rec_test`` is passed through)."""
    if not trained or len(trained) != len(untrained):
        raise ValueError("trained and untrained must be non-empty lists of ToyMetrics of the same length")
    c, aou, am = _cat(trained, "correct"), _cat(trained, "simaou"), _cat(trained, "simam")
    aou_u = _cat(untrained, "simaou")
    n = c["ZSL"].shape[0]
    acc = {name: float(v.double().mean()) for name, v in c.items()}
    sem = {name: (a * (1 - a) / n) ** 0.5 for name, a in acc.items()}
    zw = ~c["ZSL"]
    per = {name: v.mean(1) for name, v in aou.items()}  # layer means, (n,)
    sw = {key: paired_difference(per["FT"], per[key]) if key in per else None
          for key in ("FT, swapped labels", "ICL, swapped labels")}
    return ToySummary(
        acc, sem, paired_difference(c["ICL"].double(), c["ZSL"].double()),
        _rec2ftp_or_nan(c), 100 * float(c["ICL"][zw].double().mean()),
        {**{name: v.mean(0) for name, v in aou.items()}, "untrained": aou_u["FT"].mean(0)},
        {name: v.mean(0) for name, v in am.items()},
        paired_difference(per["FT"], per["N(0,1)"]), paired_difference(per["FT"], aou_u["FT"].mean(1)),
        paired_difference(per["FT"], per["FT, reversed"]), sw["FT, swapped labels"], sw["ICL, swapped labels"],
        paired_difference(am["ICL vs FT"].mean(1), am["ICL vs ZSL"].mean(1)), rec_test)


def toy_experiment(*, seed: int = 0, settings: ToySettings = TOY.cpu, n_eval: int | None = None,
                   run: train.TrainedRun | None = None,
                   choose_lr: bool = True) -> tuple[ToySummary, list[ToyMetrics], list[ToyMetrics]]:
    """The chapter's experiment end to end: train (or take ``run``); choose the fine-tuning step on the trained model
    (:func:`choose_ft_lr` on its 200 held-out tasks; ``choose_lr=False`` keeps ``settings.ft_lr``); then
    :func:`toy_metrics` of the trained model (with the label-swapped controls) and of its untrained copy (same initial
    weights, same step) on ``n_eval`` tasks per demonstration seed (tasks of seed ``1000·seed + 10 + s``), and
    :func:`rec2ftp_test` on as many tasks in all (seed ``1000·seed + 5``). Returns the summary (with the step used)
    and the per-seed metrics (trained, untrained).

    The step is chosen per trained model because the model is: on two CPUs the same seed trains along different
    floating-point paths, and a step recorded on one machine's model can leave one-demonstration fine-tuning inert
    on another's."""
    run = run or train_toy_model(settings, seed=seed)
    grid_acc = None
    if choose_lr:
        lr, grid_acc = choose_ft_lr(run.model, settings)
        settings = dataclasses.replace(settings, ft_lr=lr)
    untrained = new_toy_model(settings, seed=seed)
    n = n_eval or settings.n_eval
    ms, mu = [], []
    for s in settings.demo_seeds:
        tasks = sample_toy_tasks(n, settings, generator=runtime.generator(1000 * seed + 10 + s))
        ms.append(toy_metrics(run.model, tasks, settings.ft_lr, seed=s, controls=True))
        mu.append(toy_metrics(untrained, tasks, settings.ft_lr, seed=s))
    rt = rec2ftp_test(run.model, settings, n=n * len(settings.demo_seeds), seed=1000 * seed + 5)
    return toy_summary(ms, mu, rt)._replace(ft_lr=settings.ft_lr, ft_lr_accuracy=grid_acc), ms, mu


class Rec2FTPTest(NamedTuple):
    """Rec2FTP against its null of independence, on the examples zero-shot gets wrong (percent). ``rec2ftp``;
    ``null`` = ICL's accuracy on them (Rec2FTP's expectation if FT-correctness and ICL-correctness were independent
    there); ``null_sd``: its exact hypergeometric standard deviation given the counts; ``lift`` = rec2ftp − null;
    ``strat_lift`` and ``strat_sd``: the same within the two strata "the query's label is / is not among the
    demonstrations" (summed); ``n_fixed``: examples FT fixed (Rec2FTP's denominator; 0, with the rates NaN, when FT
    fixed none), ``n_fixed_unseen`` of them with the label not among the demonstrations; ``acc``: ZSL/ICL/FT
    accuracy (arg-max over all labels); ``k``."""

    rec2ftp: float
    null: float
    null_sd: float
    lift: float
    strat_lift: float
    strat_sd: float
    n_fixed: int
    n_fixed_unseen: int
    acc: dict[str, float]
    k: int


def _hypergeom(zw: torch.Tensor, ft: torch.Tensor, icl: torch.Tensor) -> tuple[int, float, float]:
    """Count of ``ft ∧ icl`` within ``zw``, its mean and variance if ``ft`` and ``icl`` were independent there (the
    hypergeometric law given the counts)."""
    N, a, b = int(zw.sum()), int((zw & ft).sum()), int((zw & icl).sum())
    x = int((zw & ft & icl).sum())
    if N < 2:
        return x, float(a * b / N) if N else 0.0, 0.0
    return x, a * b / N, a * b * (N - a) * (N - b) / (N * N * (N - 1))


def rec2ftp_test(model: GPT, settings: ToySettings = TOY.cpu, *, n: int, seed: int, k: int = 1) -> Rec2FTPTest:
    """Rec2FTP of ``model`` on ``n`` tasks with ``k`` demonstrations (``runtime.generator(seed)``), scored by
    :func:`label_argmax_correct` so that ICL is off its ceiling, against the exact hypergeometric null of
    independence (overall and stratified by whether the query's label is among the demonstrations). ``k = 1``:
    a query of the other class than the demonstration has an unseen label (ICL can only guess among 7)."""
    tasks = sample_toy_tasks(n, settings, generator=runtime.generator(seed), n_demos=k)
    p = run_protocol(model, tasks, settings.ft_lr)
    c = {name: label_argmax_correct(r.logits, tasks, settings) for name, r in (("ZSL", p.zsl), ("ICL", p.icl),
                                                                                  ("FT", p.ft))}
    zw, seen = ~c["ZSL"], (tasks.demo_labels == tasks.label[:, None]).any(1)
    a = int((zw & c["FT"]).sum())
    acc = {name: float(v.double().mean()) for name, v in c.items()}
    if a == 0:  # fine-tuning fixed no zero-shot error: Rec2FTP (a ratio over those examples) is undefined
        nan = math.nan
        return Rec2FTPTest(nan, nan, nan, nan, nan, nan, 0, 0, acc, k)
    x, mean, var = _hypergeom(zw, c["FT"], c["ICL"])
    parts = [_hypergeom(zw & (seen == s), c["FT"], c["ICL"]) for s in (True, False)]
    sx, smean, svar = (sum(q[j] for q in parts) for j in range(3))
    return Rec2FTPTest(100 * x / a, 100 * mean / a, 100 * math.sqrt(var) / a, 100 * (x - mean) / a,
                       100 * (sx - smean) / a, 100 * math.sqrt(svar) / a, a, int((zw & c["FT"] & ~seen).sum()),
                       acc, k)
