"""The one training loop of the course: Adam after exact global-norm clipping, fresh or injected batches.

Every trained model in the book goes through :func:`fit`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import _checks

__all__ = ["History", "fit", "clip_global_norm_", "progress_default", "Escape", "TrainedRun", "train_run",
           "warmup_cosine"]

LossFn = Callable[[nn.Module, Any], torch.Tensor]


@dataclass
class History:
    """What :func:`fit` recorded: per-step training loss and unclipped gradient norm, periodic evaluations."""

    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    extras: dict[str, list] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        """Number of updates made."""
        return len(self.loss)

    def final_eval(self, last: int = 1) -> float:
        """Mean of the last ``last`` evaluation losses (smooths Adam's step-to-step noise at the end of training)."""
        if not self.eval_loss:
            raise ValueError("no evaluation was recorded: pass eval_batch to fit")
        tail = self.eval_loss[-_checks.positive_int("last", last):]
        return sum(tail) / len(tail)

    def to_dict(self) -> dict:
        return {"loss": self.loss, "grad_norm": self.grad_norm, "eval_step": self.eval_step,
                "eval_loss": self.eval_loss, "extras": self.extras, "seconds": self.seconds}


def clip_global_norm_(params: Sequence[torch.Tensor], max_norm: float | None) -> float:
    """Clip gradients in place by their global norm; return the unclipped norm.

    The exact rule of the official (optax) code: ``g ← g · c / ‖g‖`` only when ``‖g‖ ≥ c`` — no epsilon
    (``torch.nn.utils.clip_grad_norm_`` divides by ``‖g‖ + 1e-6``, which the golden test can tell apart).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if max_norm is not None and norm >= max_norm:
        scale = max_norm / norm
        for g in grads:
            g.mul_(scale)
    return float(norm)


def progress_default() -> bool | None:
    """Progress bars are off when ``$ICL_COURSE_PROGRESS`` is ``0`` (set when notebooks are executed for the book
    and by ``make test``); otherwise tqdm decides (shown in Jupyter and terminals, hidden in pipes)."""
    return False if os.environ.get("ICL_COURSE_PROGRESS", "1") == "0" else None


def _get_batch(batches: Callable[[int], Any] | Sequence[Any], step: int) -> Any:
    return batches(step) if callable(batches) else batches[step]


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Callable[[int], Any] | Sequence[Any],
    steps: int,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.98),
    eps: float = 1e-8,
    clip: float | None = 1e-3,
    clip_mode: str = "norm",
    weight_decay: float = 0.0,
    lr_schedule: Callable[[int], float] | None = None,
    optimizer: str = "adam",
    eval_batch: Any = None,
    eval_every: int = 100,
    callbacks: dict[str, Callable[[nn.Module], Any]] | None = None,
    on_step: Callable[[int, nn.Module, Any, torch.Tensor], None] | None = None,
    stop: Callable[[History], bool] | None = None,
    progress: bool | None = None,
    desc: str = "training",
) -> History:
    """Train ``model`` in place on ``loss_fn(model, batch)`` with Adam (or plain SGD) after exact global-norm
    clipping; only the parameters with ``requires_grad`` are updated.

    Parameters
    ----------
    model : nn.Module
        Its current weights are the initial weights (build it with ``from_matrices`` to inject them).
    loss_fn : callable
        ``loss_fn(model, batch) -> scalar tensor``.
    batches : callable or sequence
        ``batches(step)`` returns a fresh batch (fresh tasks every step), or a sequence indexed by step
        (injected batches, e.g. the golden data).
    steps : int
        Number of updates.
    lr, betas, eps : Adam settings; defaults are the official code's (1e-3, (0.9, 0.98), 1e-8).
    clip : float or None
        Clip threshold: global-norm (official von Oswald et al. 2022: 0.001 for up to 2 layers, 10 for deeper
        models) or, with ``clip_mode="value"``, element-wise to ``[−clip, clip]`` (the official mesa code's
        ``optax.clip(1)``).
    clip_mode : {"norm", "value"}
    weight_decay : float
        Decoupled weight decay (AdamW, as optax's ``adamw``); 0 is Adam.
    lr_schedule : callable, optional
        ``lr_schedule(step)`` multiplies ``lr`` at each step (e.g. the official mesa code's warm-up and cosine
        decay, :func:`warmup_cosine`).
    optimizer : {"adam", "sgd"}
        ``"sgd"`` is plain SGD ``θ ← θ − lr·g`` (no momentum; ``betas``, ``eps`` and ``weight_decay`` unused): the
        fine-tuning baseline of Dai et al. (2022), one epoch over the demonstrations with batch size 1.
    eval_batch : optional
        A fixed batch; ``loss_fn`` on it (no grad) is recorded after update 0 and every ``eval_every``
        updates, and after the last one.
    callbacks : dict, optional
        ``name -> fn(model)`` evaluated at the same times into ``History.extras[name]``.
    on_step : callable, optional
        ``on_step(step, model, batch, loss)`` after the loss and before the update (weights in use at ``step``).
    stop : callable, optional
        ``stop(history)`` checked after each evaluation; training ends early when it returns True.
    progress : bool, optional
        A tqdm bar; defaults to :func:`progress_default`.

    Returns
    -------
    History

    Raises
    ------
    FloatingPointError
        When the training loss or the gradient is NaN or infinite (before the update, so the model keeps its last
        finite weights).

    References
    ----------
    The official training step of von Oswald et al. (2022): ``optax.chain(clip_by_global_norm(c), adam(...))``.
    """
    steps = _checks.positive_int("steps", steps)
    lr = _checks.positive_float("lr", lr)
    eval_every = _checks.positive_int("eval_every", eval_every)
    if clip is not None:
        _checks.positive_float("clip", clip)
    if clip_mode not in ("norm", "value"):
        raise ValueError(f"clip_mode must be 'norm' (global norm) or 'value' (element-wise), got {clip_mode!r}")
    if not callable(batches) and len(batches) < steps:
        raise ValueError(f"batches holds {len(batches)} batches but steps={steps}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameter with requires_grad=True: nothing to train")
    wd = _checks.positive_float("weight_decay", weight_decay, allow_zero=True)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr)
    else:
        opt = (torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=wd) if wd > 0
               else torch.optim.Adam(params, lr=lr, betas=betas, eps=eps))
    hist = History(extras={name: [] for name in (callbacks or {})})
    show = progress_default() if progress is None else progress  # None: tqdm shows it only on a terminal
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc=desc, disable=None if show is None else not show, leave=False)
    start = time.perf_counter()
    for step in range(steps):
        if lr_schedule is not None:
            for group in opt.param_groups:
                group["lr"] = lr * float(lr_schedule(step))
        batch = _get_batch(batches, step)
        loss = loss_fn(model, batch)
        value = float(loss.detach())
        if not math.isfinite(value):  # caught before the update, so the model keeps its last finite weights
            bar.close()
            raise FloatingPointError(f"the training loss is {value} at step {step}: training diverged (lower lr, "
                                     "or clip the gradients)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if on_step is not None:
            on_step(step, model, batch, loss.detach())
        hist.grad_norm.append(clip_global_norm_(params, clip if clip_mode == "norm" else None))
        if not math.isfinite(hist.grad_norm[-1]):
            bar.close()
            raise FloatingPointError(f"the gradient norm is {hist.grad_norm[-1]} at step {step} (loss {value}): "
                                     "training diverged (lower lr, or clip the gradients)")
        if clip_mode == "value" and clip is not None:
            for p in params:
                if p.grad is not None:
                    p.grad.clamp_(-clip, clip)
        opt.step()
        hist.loss.append(value)
        bar.update(1)
        if step % eval_every == 0 or step == steps - 1:
            _evaluate(model, loss_fn, eval_batch, callbacks, hist, step)
            bar.set_postfix(loss=f"{hist.loss[-1]:.4f}")
            if stop is not None and stop(hist):
                break
    bar.close()
    hist.seconds = time.perf_counter() - start
    return hist


def _evaluate(model, loss_fn, eval_batch, callbacks, hist: History, step: int) -> None:
    if eval_batch is None and not callbacks:
        return
    hist.eval_step.append(step)
    with torch.no_grad():
        if eval_batch is not None:
            hist.eval_loss.append(float(loss_fn(model, eval_batch)))
    for name, fn in (callbacks or {}).items():
        hist.extras[name].append(fn(model))


@dataclass(frozen=True)
class Escape:
    """The escape-then-continue stopping rule: training can sit on a plateau near the zero predictor for a
    seed-dependent number of steps; the *escape* is the first evaluation below ``loss``, and training stops
    ``then`` steps after it (the step cap still applies)."""

    loss: float
    then: int

    def __post_init__(self) -> None:
        _checks.positive_float("Escape.loss", self.loss, allow_zero=True)
        _checks.positive_int("Escape.then", self.then)


@dataclass
class TrainedRun:
    """A trained model with its history, the evaluation set it was tracked on, and its escape step (``None`` when
    trained without :class:`Escape`, or when it never escaped)."""

    model: nn.Module
    history: History
    eval_set: Any
    escape: int | None = None

    @property
    def layer(self) -> nn.Module:
        """The first attention layer of a layer stack (``model.layer(0)``)."""
        return self.model.layer(0)  # type: ignore[operator]


def train_run(model: nn.Module, loss_fn: LossFn, batches: Callable[[int], Any] | Sequence[Any], steps: int, *,
              eval_set: Any, eval_batch: Any, escape: Escape | None = None, **fit_kw) -> TrainedRun:
    """The course's one training recipe: :func:`fit` tracked on a fixed evaluation set, optionally stopped by an
    :class:`Escape` rule; returns the :class:`TrainedRun`.

    ``eval_set`` is the record kept with the run (e.g. a ``RegressionBatch``), ``eval_batch`` the same tasks in the
    form ``loss_fn`` takes; ``fit_kw`` go to :func:`fit` (``stop`` is set by ``escape``).
    """
    if escape is not None and not isinstance(escape, Escape):
        raise TypeError(f"escape must be a train.Escape or None, got {type(escape).__name__}")
    seen: list[int] = []

    def stop(h: History) -> bool:
        if not seen and h.eval_loss[-1] < escape.loss:  # type: ignore[union-attr]
            seen.append(h.eval_step[-1])
        return bool(seen) and h.steps >= seen[0] + escape.then  # type: ignore[union-attr]

    hist = fit(model, loss_fn, batches, steps, eval_batch=eval_batch, stop=stop if escape else None, **fit_kw)
    return TrainedRun(model, hist, eval_set, seen[0] if seen else None)


def warmup_cosine(warmup: int, total: int, final: float = 0.0) -> Callable[[int], float]:
    """A learning-rate multiplier: linear warm-up from 0 to 1 over ``warmup`` steps, then cosine decay to ``final``
    at step ``total`` (optax's ``warmup_cosine_decay_schedule``; the official mesa code: 1,000, 20,000, 1e-5/3e-4)."""
    import math

    warmup, total = _checks.positive_int("warmup", warmup), _checks.positive_int("total", total)

    def multiplier(step: int) -> float:
        if step < warmup:
            return step / warmup
        frac = min(1.0, (step - warmup) / max(1, total - warmup))
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * frac))

    return multiplier
