"""Few-shot learning by prompting: a model trained only to continue linear dynamics, given a regression prompt.

A prompt lays ``K`` examples of one regression task ``y = W x + ε`` out as one sequence — ``[x_1, y_1, x_2, y_2, …]``
(:func:`interleave`), optionally with a separator token after every ``y_i`` and a prefix before the first ``x_1`` —
and the model's prediction of the token after ``x_i`` is its answer for ``y_i`` (:func:`query_losses`). A
mesa-optimizer regresses every token on the one before it, so it fits the task's pairs ``(x_i, y_i)`` *and* the
spurious pairs ``(y_i, x_{i+1})`` (or ``(y_i, e)`` and ``(e, x_{i+1})`` with a separator ``e``). Two consequences
the chapter proves and measures: with a zero separator one GD step on the prompt is exactly one GD step on the
task's pairs (:func:`zero_separator_gd_error`), and ridge regression on all the pairs of a long prompt predicts
half of ``y`` (:func:`spurious_limit`). :class:`LearnedPrompt` and :func:`tune_prompt` learn a separator and a prefix
with the model frozen (prompt tuning, the official ``EOSFineTuner`` and ``PrefixFineTuner``).

References
----------
von Oswald et al. (2023), "Uncovering mesa-optimization algorithms in Transformers" (few-shot prompting of models
trained on linear dynamics, a separator token and prompt tuning); official ``src/data/icl/*.py``,
``src/data/token_finetuning/*.py``, ``src/util/in_context_learning/icl_eval.py``. Part IV, chapter "Few-shot
learning by prompting" (``book/part4_prompting.ipynb``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from .. import _checks, metrics, runtime, solvers, tasks, train
from ._common import DYNAMICS, Tokenizer, _tokenizer, readout_next

__all__ = ["PromptSettings", "PROMPT", "RegressionExamples", "regression_examples", "interleave", "query_losses",
           "model_predictor", "task_pair_ridge_losses", "spurious_limit", "prompt_gd_line_search",
           "zero_separator_gd_error", "SpuriousPairs", "spurious_pairs", "LearnedPrompt", "tune_prompt",
           "separator_norm_scan", "PromptedLoss", "prompted_losses", "TuningGain", "TuningStudy", "tuning_study"]

Predictor = Callable[[torch.Tensor], torch.Tensor]
"""A learner on a prompt: states ``(B, T, D)`` → its prediction of the next state at every position ``(B, T, D)``."""


@dataclass(frozen=True)
class PromptSettings:
    """The prompting experiment: ``n_examples`` examples per prompt, ``x ~ U(−x_range, x_range)^D``,
    ``y = W x + noise_std·ε`` with a Haar-random orthogonal ``W`` per prompt (the official ``ICLSingleGenerator``);
    prompt tuning runs Adam at ``tune_lr`` for ``tune_steps`` updates of ``tune_batch`` fresh prompts, a prefix has
    ``n_prefix`` tokens; losses are measured on ``eval_size`` prompts."""

    n_examples: int = 16
    x_range: float = 1.0
    noise_std: float = 0.01
    n_prefix: int = 4
    tune_steps: int = 200
    tune_batch: int = 128
    tune_lr: float = 0.03
    eval_size: int = 2000


PROMPT = runtime.Scales(cpu=PromptSettings(),
                        paper=PromptSettings(tune_steps=2000, tune_batch=256, tune_lr=1e-3, eval_size=10_000))
"""``cpu``: 16 examples, 200 Adam steps at 0.03 of 128 prompts for each tuning stage (a few CPU-seconds each through
one mesa layer); ``paper``: the official fine-tuners' learning rate (1e-3 for the separator; the prefix's 9e-4 is
within rounding) with ten times the updates."""


class RegressionExamples(NamedTuple):
    """``K`` examples of one regression task per prompt: ``x, y (B, K, D)`` and the task ``W (B, D, D)``."""

    x: torch.Tensor
    y: torch.Tensor
    W: torch.Tensor


def regression_examples(n_prompts: int, settings: PromptSettings = PROMPT.cpu, *, seed: int, dim: int = DYNAMICS.dim,
                        n_examples: int | None = None, dtype: torch.dtype = torch.float32) -> RegressionExamples:
    """Fresh examples from ``seed``: ``W`` Haar-orthogonal, ``x ~ U(−r, r)^D``, ``y = W x + σ ε`` (independent noise
    per prompt; the official generator reuses one noise key across the batch)."""
    B, D = _checks.positive_int("n_prompts", n_prompts), _checks.positive_int("dim", dim)
    K = _checks.positive_int("n_examples", settings.n_examples if n_examples is None else n_examples)
    gen = runtime.generator(seed)
    W = tasks.haar_orthogonal(B, D, generator=gen, dtype=torch.float64)
    x = (torch.rand(B, K, D, generator=gen, dtype=torch.float64) * 2 - 1) * settings.x_range
    y = x @ W.transpose(1, 2) + settings.noise_std * torch.randn(B, K, D, generator=gen, dtype=torch.float64)
    return RegressionExamples(x.to(dtype), y.to(dtype), W.to(dtype))


def interleave(x: torch.Tensor, y: torch.Tensor, separator: torch.Tensor | None = None,
               prefix: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt ``[prefix, x_1, y_1, (e), x_2, y_2, (e), …]`` ``(B, T, D)`` and the positions of the ``x_i``
    ``(K,)`` (0-based; the model's output there is its answer for ``y_i``). ``separator`` is one token ``e (D,)``
    after every ``y_i``; ``prefix`` is ``(P, D)`` tokens before ``x_1``; both are shared by every prompt."""
    _checks.tensor("x", x, 3, "(B, K, D)")
    _checks.tensor("y", y, 3, "(B, K, D)")
    if x.shape != y.shape:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must have the same shape (B, K, D)")
    B, K, D = x.shape
    parts = [x, y]
    if separator is not None:
        _checks.tensor("separator", separator, 1, f"(D={D},)")
        if separator.shape[0] != D:
            raise ValueError(f"separator must have shape (D={D},), got {tuple(separator.shape)}")
        parts.append(separator.to(x.dtype).expand(B, K, D))
    states = torch.stack(parts, dim=2).reshape(B, K * len(parts), D)  # x_1, y_1, (e), x_2, …
    P = 0
    if prefix is not None:
        _checks.tensor("prefix", prefix, 2, f"(P, D={D})")
        if prefix.shape[1] != D:
            raise ValueError(f"prefix must have shape (P, D={D}), got {tuple(prefix.shape)}")
        P = prefix.shape[0]
        states = torch.cat([prefix.to(x.dtype).expand(B, P, D), states], dim=1)
    return states, P + len(parts) * torch.arange(K, device=x.device)


def query_losses(predict: Predictor, examples: RegressionExamples, separator: torch.Tensor | None = None,
                 prefix: torch.Tensor | None = None) -> torch.Tensor:
    """``(K,)``: ``½ ‖ŷ_i − y_i‖²`` averaged over prompts, for the ``i``-th example (``i − 1`` examples seen before
    it), where ``ŷ_i`` is ``predict``'s output at the position of ``x_i`` (the official ``run_single_task_icl``)."""
    states, queries = interleave(examples.x, examples.y, separator, prefix)
    pred = predict(states)
    _checks.tensor("predict(states)", pred, 3, "(B, T, D)")
    return 0.5 * (pred[:, queries] - examples.y).pow(2).sum(-1).mean(0)


def model_predictor(model: nn.Module, tokens: Tokenizer | None = None) -> Predictor:
    """A sequence model as a :data:`Predictor`: lay the prompt out as ``tokens`` (default: the constructed tokens
    ``(0, s_t, s_t, s_{t−1})``) and read its prediction of the next state from the first slot. Prompting leaves the
    model as it is: its weights are frozen here (``requires_grad=False``), so prompt tuning moves only the prompt."""
    model.requires_grad_(False)
    layout = _tokenizer(tokens, False)
    return lambda states: readout_next(model(layout(states)), states.shape[-1])


def task_pair_ridge_losses(examples: RegressionExamples, lam: float) -> torch.Tensor:
    """``(K,)``: the loss of ridge regression fitted on the task's pairs ``(x_j, y_j), j < i`` alone, predicting
    ``y_i`` (0 before any example) — what a learner that could tell inputs from targets would reach."""
    lam = _checks.positive_float("lam", lam)
    x, y = examples.x.double(), examples.y.double()
    B, K, D = x.shape
    mask = torch.ones(K, K, dtype=x.dtype).tril(-1)  # (i, j): example j is seen before example i
    A = torch.einsum("ij,bjd,bje->bide", mask, x, x) + lam * torch.eye(D, dtype=x.dtype)  # (B, K, D, D)
    C = torch.einsum("ij,bjd,bje->bide", mask, y, x)  # Σ_j y_j x_jᵀ, (B, K, D, D)
    pred = (C @ torch.linalg.solve(A, x[..., None]))[..., 0]  # (B, K, D)
    return 0.5 * (pred - y).pow(2).sum(-1).mean(0)


def spurious_limit(dim: int, x_range: float = 1.0) -> float:
    """The limiting loss of ridge regression on *all* pairs of a long prompt, with or without a zero separator.

    The spurious pairs (a target followed by the next input) are independent, so for the task ``y = W x`` the fit
    tends to ``W/2``: it predicts half of ``y``. (The chapter's exercise ``spurious_limit_loss`` asks for the limit
    of the task ``α W x``.)
    """
    return _checks.positive_int("dim", dim) * _checks.positive_float("x_range", x_range) ** 2 / 24


def prompt_gd_line_search(examples: RegressionExamples, separator: torch.Tensor | None = None, lo: float = 0.0,
                          hi: float = 0.5) -> tuple[float, float]:
    """The step size ``η`` of one GD step (from ``W = 0``, on every pair of the prompt) that minimises the mean of
    :func:`query_losses` over the examples of ``examples``: ``(η, loss)`` — GD-1's best step *for prompts*, where the
    dynamics task's best step suits sums over 50 pairs."""
    loss = lambda eta: float(query_losses(lambda s: solvers.causal_gd_predict(s, eta), examples, separator).mean())
    eta = solvers.line_search(loss, lo, hi, tol=1e-4)
    return eta, loss(eta)


def zero_separator_gd_error(*, seed: int = 0, n_prompts: int = 8, n_examples: int = 12, lr: float = 0.1) -> float:
    """Relative float64 error of one GD step on a zero-separator prompt, read at the ``x_i``, against one GD step on
    the task's pairs alone, ``η Σ_{j<i} (x_j·x_i) y_j``: every pair with the zero token as input or target adds
    nothing, so the two are the same."""
    ex = regression_examples(n_prompts, seed=seed, n_examples=n_examples, dtype=torch.float64)
    states, queries = interleave(ex.x, ex.y, torch.zeros(ex.x.shape[-1], dtype=torch.float64))
    got = solvers.causal_gd_predict(states, lr)[:, queries]  # (B, K, D)
    ref = lr * (ex.x @ ex.x.transpose(1, 2)).tril(-1) @ ex.y  # (B, K, D)
    return metrics.relative_error(got, ref)


class SpuriousPairs(NamedTuple):
    """M23: the zero-separator identity's float64 error, and ridge regression (λ = 1e-3) on all pairs of long prompts
    against the limit :func:`spurious_limit`: the mean loss over the last quarter of the examples, without and with
    a zero separator."""

    gd_identity_error: float
    limit: float
    raw: float
    separator: float


def spurious_pairs(*, seed: int = 0, n_prompts: int = 200, n_examples: int = 400, lam: float = 1e-3) -> SpuriousPairs:
    """:class:`SpuriousPairs` on ``n_prompts`` prompts of ``n_examples`` examples (float64; a few CPU-seconds)."""
    ex = regression_examples(n_prompts, seed=seed, n_examples=n_examples, dtype=torch.float64)
    ridge = lambda states: solvers.causal_ridge_predict(states, lam)
    late = lambda losses: float(losses[-(n_examples // 4):].mean())
    zero = torch.zeros(ex.x.shape[-1], dtype=torch.float64)
    return SpuriousPairs(zero_separator_gd_error(seed=seed), spurious_limit(ex.x.shape[-1]),
                         late(query_losses(ridge, ex)), late(query_losses(ridge, ex, zero)))


# ------------------------------------------------------------------------------------------- prompt tuning
class LearnedPrompt(nn.Module):
    """A separator token and an optional prefix as parameters, for prompt tuning with the model frozen.

    ``separator (D,)`` and ``prefix (P, D)`` start at the given values; ``learn_separator`` / ``learn_prefix`` say
    which of them the optimiser may change (the official fine-tuners tune the separator first, then the prefix with
    the tuned separator fixed). :meth:`losses` is :func:`query_losses` through the frozen ``predict``.
    """

    def __init__(self, separator: torch.Tensor, prefix: torch.Tensor | None = None, *, learn_separator: bool = True,
                 learn_prefix: bool = True) -> None:
        super().__init__()
        _checks.tensor("separator", separator, 1, "(D,)")
        self.separator = nn.Parameter(separator.detach().clone(), requires_grad=learn_separator)
        if prefix is not None:
            _checks.tensor("prefix", prefix, 2, "(P, D)")
        self.prefix = None if prefix is None else nn.Parameter(prefix.detach().clone(), requires_grad=learn_prefix)

    def losses(self, predict: Predictor, examples: RegressionExamples) -> torch.Tensor:
        return query_losses(predict, examples, self.separator, self.prefix)


def tune_prompt(predict: Predictor, prompt: LearnedPrompt, settings: PromptSettings = PROMPT.cpu, *, seed: int,
                progress: bool | None = None, desc: str = "prompt tuning") -> train.TrainedRun:
    """Tune ``prompt``'s learnable tokens in place through the frozen ``predict`` with the course's one training loop:
    Adam at ``settings.tune_lr``, fresh prompts from stream ``seed`` at every step, the mean of
    :func:`query_losses` over the examples as the loss, tracked on ``settings.eval_size`` prompts from ``seed + 1``."""
    ev = regression_examples(settings.eval_size, settings, seed=seed + 1)
    gen = runtime.generator(seed)

    def batches(step: int) -> RegressionExamples:
        return regression_examples(settings.tune_batch, settings, seed=int(torch.randint(2**62, (1,), generator=gen)))

    loss = lambda p, ex: p.losses(predict, ex).mean()
    return train.train_run(prompt, loss, batches, settings.tune_steps, eval_set=ev, eval_batch=ev,
                           lr=settings.tune_lr, betas=(0.9, 0.999), clip=None, eval_every=50, progress=progress,
                           desc=desc)


def separator_norm_scan(predict: Predictor, examples: RegressionExamples, direction: torch.Tensor,
                        norms: torch.Tensor) -> torch.Tensor:
    """``(len(norms),)``: the mean of :func:`query_losses` over the examples with the separator ``c · u`` for every
    ``c`` in ``norms``, ``u`` the unit vector along ``direction`` — the tuning objective along one ray (no gradient)."""
    _checks.tensor("direction", direction, 1, "(D,)")
    _checks.tensor("norms", norms, 1, "(N,)")
    u = direction.detach() / direction.detach().norm()
    with torch.no_grad():
        return torch.stack([query_losses(predict, examples, float(c) * u).mean() for c in norms])


class PromptedLoss(NamedTuple):
    """M6: a prompted model's loss at the first and at the last example, with the plain prompt and with a zero
    separator."""

    raw_first: float
    raw_last: float
    separator_first: float
    separator_last: float


def prompted_losses(raw: torch.Tensor, separated: torch.Tensor) -> PromptedLoss:
    """:class:`PromptedLoss` from the per-example losses ``(K,)`` of :func:`query_losses`."""
    return PromptedLoss(float(raw[0]), float(raw[-1]), float(separated[0]), float(separated[-1]))


class TuningGain(NamedTuple):
    """M24: mean loss over the examples with the official random separator ``N(0, I)`` before tuning and after, the
    tuned separator's norm, the same from a start a hundred times smaller, the zero separator, and a prefix tuned on
    top of the tuned separator and on top of the zero separator."""

    random_start: float
    tuned: float
    tuned_norm: float
    small_start: float
    small_start_norm: float
    zero: float
    prefix_on_tuned: float
    prefix_on_zero: float

    @property
    def best_tuned(self) -> float:
        """The lowest loss any tuned prompt reached."""
        return min(self.tuned, self.small_start, self.prefix_on_tuned, self.prefix_on_zero)


class TuningStudy(NamedTuple):
    """:func:`tuning_study`'s per-example losses ``(K,)`` by prompt, the tuned tokens, the runs, and the claim value."""

    curves: dict[str, torch.Tensor]
    prompts: dict[str, LearnedPrompt]
    runs: dict[str, train.TrainedRun]
    gain: TuningGain


def tuning_study(predict: Predictor, examples: RegressionExamples, settings: PromptSettings = PROMPT.cpu, *,
                 seed: int = 0, progress: bool | None = None) -> TuningStudy:
    """Prompt tuning with ``predict`` frozen, measured on ``examples``.

    Four stages, each by :func:`tune_prompt` on its own stream: the separator tuned from the official start
    ``N(0, I)`` and from ``0.01·N(0, I)`` (norm about 0.03); then a ``settings.n_prefix``-token prefix (start
    ``0.1·N(0, I)``) tuned on top of the first tuned separator, and one on top of the zero separator. Starts and
    streams follow from ``seed``.
    """
    D = examples.x.shape[-1]
    gen = lambda k: runtime.generator(seed + k)
    zero = torch.zeros(D, dtype=examples.x.dtype)
    start = torch.randn(D, generator=gen(20), dtype=examples.x.dtype)
    prefix = 0.1 * torch.randn(settings.n_prefix, D, generator=gen(40), dtype=examples.x.dtype)
    prompts = {"tuned separator": LearnedPrompt(start),
               "tuned from a small start": LearnedPrompt(0.01 * torch.randn(D, generator=gen(21),
                                                                           dtype=examples.x.dtype))}
    runs = {name: tune_prompt(predict, p, settings, seed=seed + 30 + i, progress=progress, desc=name)
            for i, (name, p) in enumerate(prompts.items())}
    prompts["tuned separator + tuned prefix"] = LearnedPrompt(prompts["tuned separator"].separator.detach(), prefix,
                                                              learn_separator=False)
    prompts["zero separator + tuned prefix"] = LearnedPrompt(zero, prefix, learn_separator=False)
    for i, name in enumerate(("tuned separator + tuned prefix", "zero separator + tuned prefix")):
        runs[name] = tune_prompt(predict, prompts[name], settings, seed=seed + 50 + i, progress=progress, desc=name)
    with torch.no_grad():
        curves = {"random separator (start)": query_losses(predict, examples, start),
                  "zero separator": query_losses(predict, examples, zero)}
        curves |= {name: p.losses(predict, examples) for name, p in prompts.items()}
    m = {name: float(c.mean()) for name, c in curves.items()}
    norm = lambda name: float(prompts[name].separator.detach().norm())
    gain = TuningGain(m["random separator (start)"], m["tuned separator"], norm("tuned separator"),
                      m["tuned from a small start"], norm("tuned from a small start"), m["zero separator"],
                      m["tuned separator + tuned prefix"], m["zero separator + tuned prefix"])
    return TuningStudy(curves, prompts, runs, gain)
