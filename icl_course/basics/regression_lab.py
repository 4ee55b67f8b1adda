"""Part I, chapter "The linear-regression lab": the task family of Parts II–IV and the learners a transformer is
compared with, measured on one fixed set of tasks.

The task: teacher ``w ~ N(0, s² I)``, inputs ``x ~ N(0, I)`` (``tasks.sample_linear_regression`` with
``input_dist="gaussian", input_range=12**0.5``), labels ``y = w·x + ε``, ``ε ~ N(0, σ²)`` — the setting of "Learning
to learn in context" (d = 4, σ = 0.5, s = 1; N ≤ 20 here, up to 12 there). The learners come from
:mod:`icl_course.solvers`; this module only measures them: error/d against the number of demonstrations N
(:func:`lab_error_curves`, every prefix length of the same sequences), least squares against its closed-form risk
(:func:`ls_expected_error`, :func:`ls_closed_form_check`), ridge over a grid of λ (:func:`ridge_lambda_scan`) and
K-step GD as K grows (:func:`gd_steps_curves`).

References
----------
Garg et al. (2022), Sec. 2 and Fig. 2 (the task; least squares, 3-NN and averaging); Hastie et al. (2022) (least
squares' risk and its peak at N ≈ d); Bishop (2006), Sec. 3.3 (the Bayesian posterior mean is ridge); Yao et al.
(2007) (early-stopped GD as regularisation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch

from .. import _checks, runtime, solvers, tasks

__all__ = ["LabSettings", "LAB", "LAB_LEARNERS", "lab_tasks", "lab_learners", "LabCurves", "lab_error_curves",
           "ls_expected_error", "ridge_bayes_risk", "LSCheck", "ls_closed_form_check", "BayesCheck",
           "ridge_bayes_check", "RidgeScan",
           "ridge_lambda_scan", "GDCurves", "gd_steps_curves"]

GAUSSIAN = {"input_dist": "gaussian", "input_range": 12**0.5}
"""``tasks`` and ``solvers`` keywords for inputs ``x ~ N(0, I)`` (variance ``r²/12 = 1``)."""

LAB_LEARNERS = ("ridge (Bayes)", "least squares", "GD, 1 step (η*)", "3-NN", "averaging")
"""The learners of :func:`lab_learners`, in the order of the chapter's figure (k-NN's name follows ``knn_k``)."""


@dataclass(frozen=True)
class LabSettings:
    """The lab's experiment: dimension, noise, teacher scale, the largest N, the evaluation tasks, and the grids.

    ``lambda_factors`` multiply the Bayes λ* = σ²/s² in the ridge scan at ``N = lambda_n``; ``gd_steps`` are the K of
    the GD curves (step size 1/λ_max(Σ̂) per task), measured at each N of ``gd_n`` on the first ``gd_tasks`` tasks."""

    dx: int = 4
    noise_std: float = 0.5
    teacher_scale: float = 1.0
    n_max: int = 20
    n_tasks: int = 20_000
    lambda_factors: tuple[float, ...] = (1 / 16, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 16.0)
    lambda_n: int = 4
    gd_steps: tuple[int, ...] = (1, 4, 16, 64, 256)
    gd_n: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20)
    gd_tasks: int = 4_000
    knn_k: int = 3

    def __post_init__(self) -> None:
        for name in ("dx", "n_max", "n_tasks", "lambda_n", "gd_tasks", "knn_k"):
            _checks.positive_int(name, getattr(self, name))
        _checks.positive_float("noise_std", self.noise_std)
        _checks.positive_float("teacher_scale", self.teacher_scale)
        if self.n_tasks < 2:
            raise ValueError(f"n_tasks must be >= 2 (a standard error needs two tasks), got {self.n_tasks}")
        if not self.lambda_factors or 1.0 not in self.lambda_factors or min(self.lambda_factors) <= 0:
            raise ValueError(f"lambda_factors must be positive and contain 1.0 (λ* itself), got {self.lambda_factors}")
        if not self.gd_steps or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.gd_steps):
            raise ValueError(f"gd_steps must be positive ints, got {self.gd_steps}")
        if list(self.gd_steps) != sorted(set(self.gd_steps)):
            raise ValueError(f"gd_steps must be strictly increasing, got {self.gd_steps}")
        if not self.gd_n or max(self.gd_n) > self.n_max or self.lambda_n > self.n_max:
            raise ValueError(f"gd_n and lambda_n must lie in 1 … n_max = {self.n_max}, "
                             f"got {self.gd_n}, {self.lambda_n}")

    @property
    def lam_bayes(self) -> float:
        """The Bayes-optimal ridge parameter λ* = σ²/s²."""
        return self.noise_std**2 / self.teacher_scale**2

    def quick(self) -> LabSettings:
        """The same experiment on a quarter of the tasks (``reproduce --quick``)."""
        return replace(self, n_tasks=max(2, self.n_tasks // 4), gd_tasks=max(2, self.gd_tasks // 4))


LAB = runtime.Scales(cpu=LabSettings(), paper=LabSettings(dx=20, n_max=40, lambda_n=20, n_tasks=50_000,
                                                          gd_n=(5, 10, 15, 19, 20, 21, 25, 30, 40)))
"""The book's lab (d = 4, as "Learning to learn in context") and Garg et al.'s d = 20, N ≤ 40."""


def _settings(settings: object) -> LabSettings:
    if not isinstance(settings, LabSettings):
        raise TypeError(f"settings must be a LabSettings, got {type(settings).__name__}")
    return settings


def lab_tasks(settings: LabSettings, seed: int, n_tasks: int | None = None) -> tasks.RegressionBatch:
    """The fixed evaluation set: ``n_tasks`` (default ``settings.n_tasks``) float64 tasks of ``n_max``
    demonstrations and a query each; the curves use every prefix ``x[:, :N]`` of the same sequences."""
    s = _settings(settings)
    B = s.n_tasks if n_tasks is None else _checks.positive_int("n_tasks", n_tasks)
    return tasks.sample_linear_regression(B, s.n_max, s.dx, teacher_scale=s.teacher_scale, noise_std=s.noise_std,
                                          generator=runtime.generator(seed), dtype=torch.float64, **GAUSSIAN)


Learner = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def lab_learners(settings: LabSettings) -> dict[str, Learner]:
    """Five learners as ``name -> f(x, y, x_query) -> ŷ (B, dy)``, all from :mod:`solvers`: Garg et al.'s three
    baselines (min-norm least squares, k-NN, averaging = one GD step of size 1 from 0) plus the course's two
    additions, ridge at λ* = σ²/s² (the posterior mean, the Bayes reference under label noise) and one GD step from 0
    at the best constant (data-independent) step size for Gaussian inputs."""
    s = _settings(settings)

    def gd_one(x, y, q):
        lr = solvers.optimal_gd_lr(s.dx, x.shape[1], teacher_scale=s.teacher_scale, noise_std=s.noise_std,
                                   **GAUSSIAN)
        return solvers.predict(solvers.gd(x, y, lr), q)

    return {
        LAB_LEARNERS[0]: lambda x, y, q: solvers.predict(solvers.ridge(x, y, s.lam_bayes), q),
        LAB_LEARNERS[1]: lambda x, y, q: solvers.predict(solvers.least_squares(x, y), q),
        LAB_LEARNERS[2]: gd_one,
        f"{s.knn_k}-NN": lambda x, y, q: solvers.nearest_neighbours(x, y, q, k=s.knn_k),
        LAB_LEARNERS[4]: lambda x, y, q: solvers.predict(solvers.averaging(x, y), q),
    }


class LabCurves(NamedTuple):
    """Error/d of each learner at each N on one evaluation set: ``mean[i, j]`` and its standard error ``se[i, j]``
    belong to ``learners[i]`` at ``n[j]`` demonstrations (the mean over tasks of ``‖ŷ − y_query‖² / d``);
    ``median[i, j]`` is the median over tasks (robust where the mean does not exist: least squares at N ≈ d)."""

    learners: tuple[str, ...]
    n: tuple[int, ...]
    mean: torch.Tensor
    se: torch.Tensor
    median: torch.Tensor | None = None

    def curve(self, name: str) -> torch.Tensor:
        """The row of learner ``name``: error/d at every N."""
        if name not in self.learners:
            raise ValueError(f"name must be one of {list(self.learners)}, got {name!r}")
        return self.mean[self.learners.index(name)]


def lab_error_curves(batch: tasks.RegressionBatch, learners: Mapping[str, Learner],
                     n_values: Sequence[int] | None = None) -> LabCurves:
    """Error/d against the number of demonstrations N for each learner, on one fixed set of tasks.

    At each N every learner sees the first N demonstrations of the same sequences ``batch.x[:, :N]``,
    ``batch.y[:, :N]`` and predicts the same query; its error on a task is ``‖ŷ − y_query‖² / d`` (the noisy query
    label, so that the zero predictor scores ``(d s² + σ²)/d``). Mean and standard error are over tasks.

    Parameters
    ----------
    batch : RegressionBatch with ``x (B, N_max, dx)``, ``y (B, N_max, dy)``, ``x_query (B, dx)``, ``y_query (B, dy)``
    learners : mapping ``name -> f(x (B, N, dx), y (B, N, dy), x_query (B, dx)) -> ŷ (B, dy)``
    n_values : the N to evaluate (default 1 … N_max)
    """
    if not isinstance(batch, tasks.RegressionBatch):
        raise TypeError(f"batch must be a tasks.RegressionBatch, got {type(batch).__name__}")
    if not isinstance(learners, Mapping) or not learners or not all(callable(f) for f in learners.values()):
        raise TypeError("learners must be a non-empty mapping from names to functions f(x, y, x_query) -> (B, dy)")
    B, n_max, dx = batch.x.shape
    if B < 2:
        raise ValueError(f"batch must hold at least 2 tasks for a standard error, got {B}")
    ns = tuple(range(1, n_max + 1)) if n_values is None else tuple(_checks.positive_int("n_values", n)
                                                                   for n in n_values)
    if not ns or max(ns) > n_max:
        raise ValueError(f"n_values must be non-empty and at most the batch's N_max = {n_max}, got {ns}")
    mean = torch.zeros(len(learners), len(ns), dtype=torch.float64)
    se, med = torch.zeros_like(mean), torch.zeros_like(mean)
    for j, n in enumerate(ns):
        x, y = batch.x[:, :n], batch.y[:, :n]  # (B, n, dx), (B, n, dy): the first n demonstrations
        for i, (name, fn) in enumerate(learners.items()):
            pred = fn(x, y, batch.x_query)
            if not isinstance(pred, torch.Tensor) or pred.shape != batch.y_query.shape:
                raise ValueError(f"learner {name!r} must return ŷ of shape {tuple(batch.y_query.shape)}, got "
                                 f"{getattr(pred, 'shape', type(pred).__name__)}")
            err = ((pred.double() - batch.y_query.double()) ** 2).sum(-1) / dx  # (B,)
            mean[i, j], se[i, j], med[i, j] = err.mean(), err.std() / math.sqrt(B), err.median()
    return LabCurves(tuple(learners), ns, mean, se, med)


def ls_expected_error(dx: int, n: int, noise_std: float, teacher_scale: float = 1.0) -> float:
    """Expected test error ``E (ŷ − y_query)²`` of min-norm least squares, Gaussian inputs ``x ~ N(0, I)``.

    Finite for ``N ≥ d + 2`` (through the mean of an inverse Wishart matrix) and for ``N ≤ d − 2`` (the part of w
    outside the inputs' span is lost, and the noise enters through ``(XXᵀ)⁻¹``); infinite (``math.inf``) for
    ``d − 1 ≤ N ≤ d + 1``. The closed forms are the chapter's exercise ``ls_test_error``.

    References
    ----------
    Hastie et al. (2022), "Surprises in high-dimensional ridgeless least squares interpolation", Sec. 2–3; Part I,
    "The linear-regression lab".
    """
    d, n = _checks.positive_int("dx", dx), _checks.positive_int("n", n)
    s2 = _checks.positive_float("teacher_scale", teacher_scale, allow_zero=True) ** 2
    var = _checks.positive_float("noise_std", noise_std, allow_zero=True) ** 2
    if n >= d + 2:
        return var * (1 + d / (n - d - 1))
    if n <= d - 2:
        return s2 * (d - n) + var * (1 + n / (d - n - 1))
    return math.inf if var > 0 else s2 * max(d - n, 0)


def ridge_bayes_risk(x: torch.Tensor, noise_std: float, teacher_scale: float = 1.0) -> torch.Tensor:
    """Expected test error ``(B,)`` of the posterior mean given each task's inputs ``x (B, N, dx)``:
    ``σ² (1 + tr (XᵀX + λ* I)⁻¹)`` with ``λ* = σ²/s²`` — the noise of the query label plus the trace of the posterior
    covariance ``σ² (XᵀX + λ* I)⁻¹`` (queries ``x ~ N(0, I)``). No learner can do better on average."""
    _checks.tensor("x", x, 3, "(B, N, dx)")
    var = _checks.positive_float("noise_std", noise_std) ** 2
    lam = var / _checks.positive_float("teacher_scale", teacher_scale) ** 2
    eye = torch.eye(x.shape[2], dtype=x.dtype, device=x.device)
    cov = torch.linalg.inv(x.transpose(1, 2) @ x + lam * eye)  # (B, dx, dx), times σ²: the posterior covariance
    return var * (1 + torch.diagonal(cov, dim1=1, dim2=2).sum(-1))


class LSCheck(NamedTuple):
    """Least squares' Monte Carlo error/d against its closed form at each ``n`` (N ≥ d + 4, where the error has a
    finite variance): ``z = (monte_carlo − closed_form) / se``."""

    n: tuple[int, ...]
    monte_carlo: tuple[float, ...]
    se: tuple[float, ...]
    closed_form: tuple[float, ...]
    z: tuple[float, ...]
    max_abs_z: float


def ls_closed_form_check(curves: LabCurves, settings: LabSettings, name: str = LAB_LEARNERS[1]) -> LSCheck:
    """Compare the Monte Carlo error/d of learner ``name`` (least squares) in ``curves`` with
    :func:`ls_expected_error`/d at every evaluated N ≥ d + 4. (Between d + 2 and d + 3 the mean is finite but the
    variance is not, so no standard error describes the Monte Carlo there.)"""
    s = _settings(settings)
    if not isinstance(curves, LabCurves):
        raise TypeError(f"curves must be a LabCurves, got {type(curves).__name__}")
    i = curves.learners.index(name) if name in curves.learners else None
    cols = [j for j, n in enumerate(curves.n) if n >= s.dx + 4]
    if i is None or not cols:
        raise ValueError(f"curves must hold {name!r} at some N >= d + 4 = {s.dx + 4}")
    mc = [float(curves.mean[i, j]) for j in cols]
    se = [float(curves.se[i, j]) for j in cols]
    cf = [ls_expected_error(s.dx, curves.n[j], s.noise_std, s.teacher_scale) / s.dx for j in cols]
    z = [(m - c) / e for m, c, e in zip(mc, cf, se)]
    return LSCheck(tuple(curves.n[j] for j in cols), tuple(mc), tuple(se), tuple(cf), tuple(z),
                   max(abs(v) for v in z))


class BayesCheck(NamedTuple):
    """Ridge's Monte Carlo error/d against the Bayes risk at each ``n``: ``bayes_risk`` is the mean over the same
    tasks of :func:`ridge_bayes_risk`/d, ``z = (monte_carlo − bayes_risk) / se``."""

    n: tuple[int, ...]
    monte_carlo: tuple[float, ...]
    se: tuple[float, ...]
    bayes_risk: tuple[float, ...]
    z: tuple[float, ...]
    max_abs_z: float


def ridge_bayes_check(curves: LabCurves, batch: tasks.RegressionBatch, settings: LabSettings,
                      name: str = LAB_LEARNERS[0]) -> BayesCheck:
    """Compare the Monte Carlo error/d of learner ``name`` (ridge at λ*) in ``curves`` with the Bayes risk of the
    same tasks' inputs at every evaluated N. ``se`` is the Monte Carlo's own standard error, an upper bound on that
    of the difference (the Bayes risk is the Monte Carlo's conditional mean given the inputs)."""
    s = _settings(settings)
    if not isinstance(curves, LabCurves) or name not in curves.learners:
        raise ValueError(f"curves must be a LabCurves holding {name!r}")
    if not isinstance(batch, tasks.RegressionBatch) or batch.x.shape[1] < max(curves.n):
        raise ValueError(f"batch must be the RegressionBatch of the curves, with >= {max(curves.n)} demonstrations")
    i = curves.learners.index(name)
    mc, se = curves.mean[i].tolist(), curves.se[i].tolist()
    risk = [float(ridge_bayes_risk(batch.x[:, :n], s.noise_std, s.teacher_scale).mean()) / s.dx for n in curves.n]
    z = [(m - r) / e for m, r, e in zip(mc, risk, se)]
    return BayesCheck(curves.n, tuple(mc), tuple(se), tuple(risk), tuple(z), max(abs(v) for v in z))


def _weight_error(W: torch.Tensor, w: torch.Tensor, noise_std: float) -> torch.Tensor:
    """``(‖W − w‖² + σ²)`` per task: the test error of the linear predictor W averaged exactly over the query
    ``x ~ N(0, I)`` and its label noise (``E ((W − w) x − ε)² = ‖W − w‖² + σ²``)."""
    return ((W - w) ** 2).sum((1, 2)) + noise_std**2  # (B,)


class RidgeScan(NamedTuple):
    """Ridge at N = ``n`` for each λ of ``lambdas``: error/d (``mean``, ``se``) and the paired difference to λ* =
    ``lam_bayes`` (``diff``, ``diff_se``; positive: worse than λ*); ``best`` is the λ of the lowest mean."""

    n: int
    lambdas: tuple[float, ...]
    lam_bayes: float
    mean: tuple[float, ...]
    se: tuple[float, ...]
    diff: tuple[float, ...]
    diff_se: tuple[float, ...]
    best: float


def ridge_lambda_scan(batch: tasks.RegressionBatch, settings: LabSettings) -> RidgeScan:
    """Ridge's error/d over the grid λ* · ``settings.lambda_factors`` at N = ``settings.lambda_n``, on the same tasks
    for every λ (so differences are paired); each task's error is averaged exactly over the query
    (``‖W − w‖² + σ²``, see :func:`_weight_error`)."""
    s = _settings(settings)
    if not isinstance(batch, tasks.RegressionBatch) or batch.x.shape[1] < s.lambda_n:
        raise ValueError(f"batch must be a RegressionBatch with at least lambda_n = {s.lambda_n} demonstrations")
    x, y = batch.x[:, :s.lambda_n], batch.y[:, :s.lambda_n]  # (B, N, dx), (B, N, dy)
    lambdas = tuple(f * s.lam_bayes for f in s.lambda_factors)
    errs = torch.stack([_weight_error(solvers.ridge(x, y, lam), batch.w, s.noise_std) / s.dx for lam in lambdas])
    ref = errs[list(s.lambda_factors).index(1.0)]  # (B,) error/d at λ*
    root = math.sqrt(errs.shape[1])
    diff = errs - ref  # (L, B): paired differences
    return RidgeScan(s.lambda_n, lambdas, s.lam_bayes, tuple(errs.mean(1).tolist()),
                     tuple((errs.std(1) / root).tolist()), tuple(diff.mean(1).tolist()),
                     tuple((diff.std(1) / root).tolist()), lambdas[int(errs.mean(1).argmin())])


class GDCurves(NamedTuple):
    """Error/d of K-step GD from 0 (``mean[k, j]``, ``se[k, j]``: ``steps[k]`` steps at ``n[j]`` demonstrations, step
    size 1/λ_max(Σ̂) per task) beside least squares (``ls``, its median over tasks ``ls_median``) and ridge at λ*
    (``ridge``) on the same tasks."""

    steps: tuple[int, ...]
    n: tuple[int, ...]
    mean: torch.Tensor
    se: torch.Tensor
    ls: torch.Tensor
    ridge: torch.Tensor
    ls_median: torch.Tensor | None = None


def gd_steps_curves(batch: tasks.RegressionBatch, settings: LabSettings) -> GDCurves:
    """K-step GD (``solvers.gd``, continued from the previous K's weights) at each K of ``settings.gd_steps`` and each
    N of ``settings.gd_n``, on the first ``settings.gd_tasks`` tasks of ``batch``. Each task's step size is
    ``η = 1/λ_max(Σ̂)`` with ``Σ̂ = XᵀX/N``, which makes every step decrease the in-context loss; from W = 0 the
    iterates stay in the inputs' span and converge to min-norm least squares as K → ∞. Errors are averaged exactly
    over the query (``‖W − w‖² + σ²``)/d."""
    s = _settings(settings)
    if not isinstance(batch, tasks.RegressionBatch):
        raise TypeError(f"batch must be a tasks.RegressionBatch, got {type(batch).__name__}")
    batch = tasks.RegressionBatch(*(t[:s.gd_tasks] for t in batch))
    B, n_max, dx = batch.x.shape
    ns = s.gd_n
    if B < 2 or max(ns) > n_max:
        raise ValueError(f"batch must hold >= 2 tasks and >= max(gd_n) = {max(ns)} demonstrations, got {B}, {n_max}")
    mean = torch.zeros(len(s.gd_steps), len(ns), dtype=torch.float64)
    se = torch.zeros_like(mean)
    ls, ls_med, rdg = (torch.zeros(len(ns), dtype=torch.float64) for _ in range(3))
    root = math.sqrt(B)
    for j, n in enumerate(ns):
        x, y = batch.x[:, :n], batch.y[:, :n]  # (B, n, dx), (B, n, dy)
        lr = 1 / torch.linalg.eigvalsh(x.transpose(1, 2) @ x / n)[:, -1]  # (B,): 1/λ_max(Σ̂)
        W, done = None, 0
        for k, steps in enumerate(s.gd_steps):
            W = solvers.gd(x, y, lr, steps=steps - done, w0=W)  # continue from the previous K
            done = steps
            err = _weight_error(W, batch.w, s.noise_std) / dx
            mean[k, j], se[k, j] = err.mean(), err.std() / root
        ls_err = _weight_error(solvers.least_squares(x, y), batch.w, s.noise_std) / dx
        ls[j], ls_med[j] = ls_err.mean(), ls_err.median()
        rdg[j] = (_weight_error(solvers.ridge(x, y, s.lam_bayes), batch.w, s.noise_std) / dx).mean()
    return GDCurves(tuple(s.gd_steps), ns, mean, se, ls, rdg, ls_med)
