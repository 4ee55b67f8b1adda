"""Part II, "What the critiques found": the relaxation's cost on a real LM's layers, an untrained copy of the LM,
and the order of the demonstrations.

Three measurements on the protocol of ``_lm_protocol`` (shared with "A real language model"):

- :func:`relaxation_cost` — per layer, how far the pretrained LM's softmax attention at the last token is from Dai
  et al.'s linear relaxation (cosines of the outputs and of the ICL-induced changes; keys after RoPE, per key/value
  group);
- :func:`untrained_baseline` — the same protocol and metrics on a randomly initialised copy of the LM (Deutch et
  al. 2023: similarity metrics need a baseline that has learned nothing);
- :func:`order_sensitivity` — the same demonstrations in other orders (Shen et al. 2023): how many predictions flip
  for ICL and for fine-tuning (which also sees the demonstrations in prompt order).

References
----------
Deutch et al. (2023), "In-context learning and gradient descent revisited"; Shen et al. (2023), "Do pretrained
Transformers learn in-context by gradient descent?"; Dai et al. (2022), §3.2 (the relaxation), §4.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import torch

from .. import lm
from ._dai_metrics import paired_difference
from ._lm_protocol import LM_PROTOCOL, DaiSummary, LMProtocolSettings, LMRun, run_lm_protocol, summarise_lm_run

__all__ = ["RelaxationCost", "relaxation_cost", "UntrainedBaseline", "untrained_baseline", "OrderSensitivity",
           "order_sensitivity"]


def _settings(settings: LMProtocolSettings | None) -> LMProtocolSettings:
    settings = LM_PROTOCOL.cpu if settings is None else settings
    if not isinstance(settings, LMProtocolSettings):
        raise TypeError(f"settings must be an LMProtocolSettings, got {type(settings).__name__}")
    return settings


class RelaxationCost(NamedTuple):
    """Per layer ``(L,)``, averaged over heads and reviews: ``output_cos`` — cosine of the softmax attention output
    and the linear form ``(W_zsl + ΔW_ICL) q``; ``update_cos`` — cosine of softmax's ICL-induced change and
    ``ΔW_ICL q``; ``update_cos_sem (L,)`` its standard error over reviews; ``n`` reviews."""

    output_cos: torch.Tensor
    update_cos: torch.Tensor
    update_cos_sem: torch.Tensor
    n: int


def relaxation_cost(run: LMRun) -> RelaxationCost:
    """Reduce a run made with ``relaxation=True`` to :class:`RelaxationCost`."""
    if not isinstance(run, LMRun) or run.relaxation is None:
        raise ValueError("run must be a LMRun made with run_lm_protocol(..., relaxation=True)")
    out, upd = run.relaxation["output_cos"].mean(-1), run.relaxation["update_cos"].mean(-1)  # (n, L)
    n = upd.shape[0]
    sem = upd.std(0, correction=1) / n ** 0.5 if n > 1 else torch.full_like(upd[0], float("nan"))
    return RelaxationCost(out.mean(0), upd.mean(0), sem, n)


class UntrainedBaseline(NamedTuple):
    """The protocol on the pretrained LM and on an untrained copy, same demonstrations and reviews:
    their summaries, and the paired difference of per-review SimAOU (pretrained − untrained)."""

    pretrained: DaiSummary
    untrained: DaiSummary
    mean: float
    sem: float


def untrained_baseline(pretrained: DaiSummary, *, settings: LMProtocolSettings | None = None, demo_seed: int = 0,
                       model_seed: int = 0, metric_seed: int = 0) -> UntrainedBaseline:
    """Run the protocol on ``lm.load(untrained=True, seed=model_seed)`` with the demonstrations of ``demo_seed``
    and compare its SimAOU, review by review, with ``pretrained`` (the same draw's summary on the pretrained LM)."""
    if not isinstance(pretrained, DaiSummary):
        raise TypeError(f"pretrained must be a DaiSummary, got {type(pretrained).__name__}")
    settings = _settings(settings)
    run = run_lm_protocol(lm.load(untrained=True, seed=model_seed), settings, demo_seed)
    untrained = summarise_lm_run(run, seed=metric_seed)
    if untrained.simaou_examples.shape != pretrained.simaou_examples.shape:
        raise ValueError("pretrained must summarise_lm_run the same reviews (same settings.n_test)")
    d = paired_difference(pretrained.simaou_examples, untrained.simaou_examples)
    return UntrainedBaseline(pretrained, untrained, d.mean, d.sem)


class OrderSensitivity(NamedTuple):
    """The same demonstrations in ``len(orders)`` orders (the first is the reference): ICL and FT accuracy per order,
    and for each other order the fraction of reviews whose ICL (``icl_flips``) or FT (``ft_flips``) prediction
    differs from the reference order's; the mean absolute change of the label margin (``icl_margin_change``,
    ``ft_margin_change``)."""

    orders: tuple[int, ...]
    icl_accuracy: tuple[float, ...]
    ft_accuracy: tuple[float, ...]
    icl_flips: tuple[float, ...]
    ft_flips: tuple[float, ...]
    icl_margin_change: tuple[float, ...]
    ft_margin_change: tuple[float, ...]


def order_sensitivity(*, settings: LMProtocolSettings | None = None, demo_seed: int = 0,
                      orders: Sequence[int] = (0, 1, 2), n_test: int | None = 48) -> OrderSensitivity:
    """Run the protocol with ``demo_seed``'s demonstrations in each order of ``orders`` (order seeds; ``orders[0]``
    is the reference) on the first ``n_test`` test reviews, and count flipped predictions."""
    settings = _settings(settings)
    if n_test is not None:
        settings = replace(settings, n_test=n_test)
    orders = tuple(int(o) for o in orders)
    if len(orders) < 2 or len(set(orders)) != len(orders):
        raise ValueError(f"orders must hold at least two different order seeds, got {orders}")
    model = lm.load()
    runs = [run_lm_protocol(model, settings, demo_seed, order_seed=o, methods=("icl", "ft")) for o in orders]
    ref = runs[0]

    def flips(m: str) -> tuple[float, ...]:
        return tuple(float(((r.margin[m] > 0) != (ref.margin[m] > 0)).double().mean()) for r in runs[1:])

    def change(m: str) -> tuple[float, ...]:
        return tuple(float((r.margin[m] - ref.margin[m]).abs().mean()) for r in runs[1:])

    return OrderSensitivity(orders, tuple(float(r.correct["icl"].double().mean()) for r in runs),
                            tuple(float(r.correct["ft"].double().mean()) for r in runs), flips("icl"), flips("ft"),
                            change("icl"), change("ft"))
