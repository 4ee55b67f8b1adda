"""Part I, "Learning to learn in context": Garg et al.'s experiment on a CPU budget.

A GPT-style transformer (:class:`~icl_course.gpt.RegressionGPT`: linear read-in, softmax attention, MLPs, LayerNorm,
linear read-out) is trained from scratch on prompts of noisy linear-regression demonstrations. Token ``i`` holds the
previous demonstration and the next input, ``(x_{i−1}, y_{i−1}, x_i)`` (:func:`~icl_course.tasks.previous_pair_tokens`;
Garg et al. interleave input and label tokens instead, :func:`~icl_course.tasks.interleaved_tokens`, which on this
budget left model seeds on the loss plateau); its output at every token is scored, so one prompt of ``n_points``
demonstrations trains and evaluates every prefix length ``N = 0 … n_points − 1`` at once.
Teacher ``w ~ N(0, s² I)``, inputs ``x ~ N(0, I)``, labels ``y = w·x + ε`` with ``ε ~ N(0, σ²)``: ridge with
``λ = σ²/s²`` is then the Bayes-optimal predictor, the reference the trained model is held to
(:func:`prefix_errors`, :func:`bayes_comparison`); least squares, one optimally sized GD step, 3-NN and averaging
are the other learners on the same tasks. :func:`out_of_distribution` evaluates the trained model on longer prompts
than it was trained on and on scaled inputs.

References
----------
Garg et al. (2022), §2–§4 and the official ``dtsip/in-context-learning`` (model, curriculum, baselines); the CPU
version adds label noise so that the Bayes-optimal estimator is ridge, not least squares. Part I,
``book/part1_regression_gpt.ipynb`` (claims B1, B2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .. import _checks, runtime, solvers, tasks, train
from ..gpt import GPTConfig, RegressionGPT

__all__ = ["GargSettings", "GARG", "garg_batch", "new_regression_gpt", "train_regression_gpt", "ridge_loss",
           "PrefixErrors", "prefix_errors", "LEARNERS", "BayesComparison", "bayes_comparison", "OutOfDistribution",
           "out_of_distribution"]


@dataclass(frozen=True)
class GargSettings:
    """The experiment: the task (``dx`` inputs, prompts of ``n_points`` demonstrations, label noise ``noise_std``,
    teacher scale ``teacher_scale``); the transformer (``n_layer`` blocks of ``n_head`` heads, width ``d_model``;
    positions for ``extra_points`` more demonstrations than it is trained on, to test longer prompts); its training
    (Adam at ``lr`` with ``warmup`` steps of linear warm-up then cosine decay, global-norm clip ``clip``, ``steps``
    batches of ``batch_size`` prompts; with ``curriculum > 0`` the prompt grows linearly from 2 demonstrations to
    ``n_points`` over the first ``curriculum`` steps, a simpler schedule than Garg et al.'s); ``n_eval`` evaluation
    tasks; ``knn`` neighbours; B1's margin ``ridge_margin`` (relative to ridge's error); and the token ``layout``:
    ``"previous_pair"`` (:func:`~icl_course.tasks.previous_pair_tokens`, the course's) or ``"interleaved"``
    (:func:`~icl_course.tasks.interleaved_tokens`, Garg et al.'s)."""

    dx: int = 4
    n_points: int = 12
    noise_std: float = 0.5
    teacher_scale: float = 1.0
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    extra_points: int = 4
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 200
    clip: float = 1.0
    curriculum: int = 0
    n_eval: int = 2000
    knn: int = 3
    ridge_margin: float = 0.1
    layout: str = "previous_pair"

    def __post_init__(self) -> None:
        for name in ("dx", "n_points", "n_layer", "n_head", "d_model", "steps", "batch_size", "warmup", "n_eval",
                     "knn"):
            _checks.positive_int(f"GargSettings.{name}", getattr(self, name))
        for name in ("extra_points", "curriculum"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"GargSettings.{name} must be >= 0, got {getattr(self, name)}")
        if self.n_points < 4:
            raise ValueError(f"GargSettings.n_points must be >= 4 (N >= 3 is scored), got {self.n_points}")
        _checks.positive_float("GargSettings.noise_std", self.noise_std)
        _checks.positive_float("GargSettings.teacher_scale", self.teacher_scale)
        _checks.positive_float("GargSettings.ridge_margin", self.ridge_margin, allow_zero=True)
        if self.layout not in ("previous_pair", "interleaved"):
            raise ValueError(f"GargSettings.layout must be 'previous_pair' or 'interleaved', got {self.layout!r}")

    @property
    def tokens_per_point(self) -> int:
        """Tokens per demonstration: 1 (``previous_pair``) or 2 (``interleaved``, Garg et al.'s layout)."""
        return 1 if self.layout == "previous_pair" else 2

    @property
    def lam(self) -> float:
        """Ridge's Bayes-optimal ``λ = σ²/s²``."""
        return self.noise_std**2 / self.teacher_scale**2


GARG = runtime.Scales(cpu=GargSettings(),
                      paper=GargSettings(dx=20, n_points=41, n_layer=12, n_head=8, d_model=256, extra_points=0,
                                         steps=500_000, batch_size=64, lr=1e-4, warmup=1, n_eval=6400))
"""``cpu``: d = 4, prompts of 12 demonstrations, σ = 0.5, s = 1 (so λ = 0.25); a 2-block GPT (4 heads, width 64);
3,000 Adam steps of 64 prompts (about a minute on one CPU thread), no curriculum. ``ridge_margin`` 0.1 is about 2.5
times the between-seed standard deviation of the transformer's excess over ridge (0.01–0.08 per N, mean 0.04, model
seeds 0, 1, 2). ``paper``: Garg et al.'s sizes (d = 20, 41 points, 12 blocks of 8 heads, width 256, 500,000 steps at
10⁻⁴) with our label noise; their curriculum (d from 5 and N from 11, raised in steps every 2,000 updates) is not
implemented — ``curriculum`` here grows only the prompt, linearly from 2 demonstrations."""


def garg_batch(settings: GargSettings, batch_size: int, n_points: int, generator: torch.Generator | None = None, *,
               input_scale: float = 1.0) -> tasks.RegressionBatch:
    """``batch_size`` tasks of ``n_points`` demonstrations (the query is not used: every demonstration is scored):
    ``x ~ N(0, input_scale² I)``, ``w ~ N(0, s² I)``, label noise σ."""
    return tasks.sample_linear_regression(
        _checks.positive_int("batch_size", batch_size), _checks.positive_int("n_points", n_points), settings.dx,
        input_dist="gaussian", input_range=12**0.5 * _checks.positive_float("input_scale", input_scale),
        teacher_scale=settings.teacher_scale, noise_std=settings.noise_std, generator=generator)


def new_regression_gpt(settings: GargSettings = GARG.cpu, *, seed: int = 0) -> RegressionGPT:
    """The untrained transformer, weights drawn from ``seed``."""
    config = GPTConfig(vocab_size=1, block_size=settings.tokens_per_point * (settings.n_points + settings.extra_points),
                       n_layer=settings.n_layer, n_head=settings.n_head, d_model=settings.d_model)
    in_dim = 2 * settings.dx + 1 if settings.layout == "previous_pair" else settings.dx + 1
    return RegressionGPT(config, in_dim, 1, generator=runtime.generator(seed))


def _predictions(model: RegressionGPT, batch: tasks.RegressionBatch) -> torch.Tensor:
    """The model's prediction of every label ``(B, N)``: its output at the token that shows ``x_i`` (and not
    ``y_i``), in the layout its input width implies."""
    if model.in_dim == 2 * batch.x.shape[2] + 1:
        return model(tasks.previous_pair_tokens(batch.x, batch.y))[..., 0]
    return model(tasks.interleaved_tokens(batch.x, batch.y))[:, 0::2, 0]


def _loss(model: RegressionGPT, batch: tasks.RegressionBatch) -> torch.Tensor:
    return ((_predictions(model, batch) - batch.y[..., 0]) ** 2).mean()


def train_regression_gpt(settings: GargSettings = GARG.cpu, *, seed: int = 0, steps: int | None = None,
                         progress: bool | None = None) -> train.TrainedRun:
    """Train :func:`new_regression_gpt` (weights ``seed``, batches ``seed + 1``, the 500 tracked evaluation tasks
    ``seed + 2``) on the squared error of every label prediction, with the curriculum of :class:`GargSettings`."""
    model = new_regression_gpt(settings, seed=seed)
    g = runtime.generator(seed + 1)
    ev = garg_batch(settings, 500, settings.n_points, runtime.generator(seed + 2))
    total = steps or settings.steps

    def batch(step: int) -> tasks.RegressionBatch:
        frac = min(1.0, step / settings.curriculum) if settings.curriculum else 1.0
        return garg_batch(settings, settings.batch_size, round(2 + frac * (settings.n_points - 2)), g)

    return train.train_run(model, _loss, batch, total, eval_set=ev, eval_batch=ev, lr=settings.lr,
                           clip=settings.clip, lr_schedule=train.warmup_cosine(settings.warmup, total),
                           eval_every=250, progress=progress, desc=f"GPT on regression, seed {seed}")


LEARNERS = ("transformer", "ridge (Bayes)", "least squares", "one GD step", "3-NN", "averaging")
"""The learners of :func:`prefix_errors`, in its row order."""


class PrefixErrors(NamedTuple):
    """Squared error of the prediction of demonstration ``N + 1`` from the first ``N``, divided by d, on the same
    evaluation tasks for every learner: ``n (N,)`` the prefix lengths, ``error (L, N)`` the means and ``sem (L, N)``
    their standard errors, rows in :data:`LEARNERS` order; ``per_task (L, n_tasks, N)`` keeps the per-task errors
    (paired comparisons)."""

    names: tuple[str, ...]
    n: torch.Tensor
    error: torch.Tensor
    sem: torch.Tensor
    per_task: torch.Tensor

    def row(self, name: str) -> torch.Tensor:
        return self.error[self.names.index(name)]


@torch.no_grad()
def _learner_errors(settings: GargSettings, batch: tasks.RegressionBatch, model: RegressionGPT | None,
                    n_max: int) -> torch.Tensor:
    """Per-task squared errors / d ``(L, B, n_max)`` of every learner at prefix lengths 0 … n_max − 1."""
    x, y = batch.x.double(), batch.y.double()  # (B, n, d), (B, n, 1)
    B, d = x.shape[0], settings.dx
    out = torch.zeros(len(LEARNERS), B, n_max, dtype=torch.float64)
    if model is not None:
        out[0] = ((_predictions(model, batch)[:, :n_max].double() - y[:, :n_max, 0]) ** 2) / d
    for n in range(n_max):
        target = y[:, n, 0]
        if n == 0:  # no demonstration: every learner predicts 0, the prior mean
            out[1:, :, 0] = (target**2 / d)[None]
            continue
        xc, yc, xq = x[:, :n], y[:, :n], x[:, n]
        eta = solvers.optimal_gd_lr(d, n, input_range=12**0.5, input_dist="gaussian",
                                    teacher_scale=settings.teacher_scale, noise_std=settings.noise_std)
        preds = (solvers.predict(solvers.ridge(xc, yc, settings.lam), xq),
                 solvers.predict(solvers.least_squares(xc, yc), xq),
                 solvers.predict(solvers.gd(xc, yc, eta), xq),
                 solvers.nearest_neighbours(xc, yc, xq, settings.knn),
                 solvers.predict(solvers.averaging(xc, yc), xq))
        for i, p in enumerate(preds, start=1):
            out[i, :, n] = (p[:, 0] - target) ** 2 / d
    if model is None:
        out[0] = float("nan")
    return out


def prefix_errors(settings: GargSettings = GARG.cpu, model: RegressionGPT | None = None, *, seed: int = 0,
                  n_tasks: int | None = None, n_points: int | None = None, input_scale: float = 1.0) -> PrefixErrors:
    """Error / d vs the number of demonstrations ``N = 0 … n_points − 1`` for the trained ``model`` and the
    baselines, on ``n_tasks`` (default ``settings.n_eval``) evaluation tasks drawn from ``seed + 3`` (with inputs
    scaled by ``input_scale``); without ``model`` the transformer's row is NaN."""
    n_tasks = settings.n_eval if n_tasks is None else _checks.positive_int("n_tasks", n_tasks)
    n_points = settings.n_points if n_points is None else _checks.positive_int("n_points", n_points)
    most = settings.n_points + settings.extra_points
    if model is not None and n_points > most:
        raise ValueError(f"n_points must be <= {most} (the model's positions), got {n_points}")
    batch = garg_batch(settings, n_tasks, n_points, runtime.generator(seed + 3), input_scale=input_scale)
    per_task = _learner_errors(settings, batch, model, n_points)
    sem = per_task.std(1) / math.sqrt(n_tasks)
    return PrefixErrors(LEARNERS, torch.arange(n_points), per_task.mean(1), sem, per_task)


class BayesComparison(NamedTuple):
    """B1 and B2 at every ``N ≥ 3`` (``n``): the transformer's error / d against ridge's, 3-NN's and averaging's;
    ``excess`` its relative excess over ridge, ``tf / ridge − 1``, with the standard error of the paired difference
    relative to ridge (``excess_sem``); ``margin`` B1's allowed excess; ``near_bayes`` (B1: ``excess ≤ margin`` at
    every N) and ``beats_baselines`` (B2: strictly below 3-NN and averaging at every N)."""

    n: torch.Tensor
    transformer: torch.Tensor
    ridge: torch.Tensor
    knn: torch.Tensor
    averaging: torch.Tensor
    excess: torch.Tensor
    excess_sem: torch.Tensor
    margin: float
    near_bayes: bool
    beats_baselines: bool


def bayes_comparison(errors: PrefixErrors, margin: float) -> BayesComparison:
    """Reduce :func:`prefix_errors` (with a transformer row) to B1 and B2 at every ``N ≥ 3``."""
    if not isinstance(errors, PrefixErrors):
        raise TypeError(f"errors must be a PrefixErrors, got {type(errors).__name__}")
    if torch.isnan(errors.error[0]).any():
        raise ValueError("errors has no transformer row: call prefix_errors with the trained model")
    margin = _checks.positive_float("margin", margin, allow_zero=True)
    keep = errors.n >= 3
    tf, rg = errors.row("transformer")[keep], errors.row("ridge (Bayes)")[keep]
    knn, avg = errors.row("3-NN")[keep], errors.row("averaging")[keep]
    diff = errors.per_task[0][:, keep] - errors.per_task[1][:, keep]  # (n_tasks, N): paired with ridge
    excess_sem = diff.std(0) / math.sqrt(diff.shape[0]) / rg
    excess = tf / rg - 1
    return BayesComparison(errors.n[keep], tf, rg, knn, avg, excess, excess_sem, margin,
                           bool((excess <= margin).all()), bool(((tf < knn) & (tf < avg)).all()))


def ridge_loss(settings: GargSettings, batch: tasks.RegressionBatch) -> float:
    """The training loss the Bayes-optimal learner would have on ``batch``: ridge's squared error (not divided by d)
    averaged over tasks and every prefix length ``N = 0 … n − 1`` — the floor of the training curve."""
    if not isinstance(batch, tasks.RegressionBatch):
        raise TypeError(f"batch must be a tasks.RegressionBatch, got {type(batch).__name__}")
    n = batch.x.shape[1]
    return float(_learner_errors(settings, batch, None, n)[LEARNERS.index("ridge (Bayes)")].mean()) * settings.dx


class OutOfDistribution(NamedTuple):
    """The transformer and ridge (error / d) on prompts longer than trained (``long``: every prefix length up to
    ``n_points + extra_points``) and with inputs scaled by each of ``scales`` (``scaled``: one
    :class:`PrefixErrors` per scale, prompts of the trained length)."""

    long: PrefixErrors
    scales: tuple[float, ...]
    scaled: tuple[PrefixErrors, ...]


def out_of_distribution(model: RegressionGPT, settings: GargSettings = GARG.cpu, *, seed: int = 0,
                        scales: Sequence[float] = (0.5, 1.0, 2.0, 3.0), n_tasks: int = 1000) -> OutOfDistribution:
    """Evaluate ``model`` beyond its training distribution (Garg et al. §4): more demonstrations than any training
    prompt held (positions it never trained), and inputs ``x ~ N(0, c² I)`` for each scale ``c``."""
    long = prefix_errors(settings, model, seed=seed, n_tasks=n_tasks,
                         n_points=settings.n_points + settings.extra_points)
    scaled = tuple(prefix_errors(settings, model, seed=seed, n_tasks=n_tasks, input_scale=float(c)) for c in scales)
    return OutOfDistribution(long, tuple(float(c) for c in scales), scaled)
