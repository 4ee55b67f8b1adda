"""Part III, chapter "Non-linear regression: GD on learned features" (Proposition 2, sine tasks).

References
----------
von Oswald et al. (2022), Sec. 3 (non-linear regression), Proposition 2; the official notebook's sine experiment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import _checks, metrics, runtime, solvers, tasks, train
from ..models import FeatureLSA, FeatureMap, LSAStack
from ..query import icl_loss, predict
from ._common import PAPER, constructed_lsa, weight_products

__all__ = ["SineSettings", "SINE", "FeatureGD", "feature_gd_as_lsa", "proposition2_errors", "new_feature_model",
           "train_sine", "oracle_feature_loss", "effective_kernel", "kernel_explained"]


@dataclass(frozen=True)
class SineSettings:
    """Settings of the sine experiment: tasks ``y = a sin(x + φ)`` with ``x ~ U(−r/2, r/2)``, a feature MLP
    ``1 → hidden → features`` and one attention layer, Adam ``lr`` after global-norm clipping at ``clip``."""

    n_context: int
    input_range: float
    hidden: int
    features: int
    batch_size: int
    steps: int
    lr: float = 1e-3
    clip: float = 100.0


SINE = runtime.Scales(
    cpu=SineSettings(n_context=10, input_range=10.0, hidden=64, features=16, batch_size=512, steps=2000),
    paper=SineSettings(n_context=10, input_range=10.0, hidden=160, features=40, batch_size=2048, steps=20_000),
)
"""The sine experiment at two scales. ``paper``: the official notebook's sizes (MLP 160 → 40, batch 2,048, 20,000
steps; meant for a GPU); ``cpu``: the book's (MLP 64 → 16, batch 512, 2,000 steps), which reaches the same
comparison in seconds."""


class FeatureGD(torch.nn.Module):
    """A meta-learned feature map and one GD step from ``w = 0`` on the output layer: the kernel-regression view.

    ``ŷ = (η/N) Σ_i y_i m(x_i)·m(x_q)`` — one step on ``L(w) = 1/(2N) Σ_i (w·m(x_i) − y_i)²`` from ``w = 0``.
    ``m`` and ``η`` are trained across tasks (the outer loop); the step itself is the inner loop. Same interface as
    the attention models: tokens ``E (B, N+1, dx+dy)`` in, the query token ``(x_q, −ŷ)`` out.

    References
    ----------
    von Oswald et al. (2022), Sec. 3 and Proposition 2; Part III, "Non-linear regression: GD on learned features".
    """

    def __init__(self, feature_map: FeatureMap, lr: float = 1.0) -> None:
        super().__init__()
        self.feature_map = feature_map
        self.dx = feature_map.dx
        p = feature_map.out.weight
        self.lr = torch.nn.Parameter(torch.tensor(float(lr), dtype=p.dtype, device=p.device))

    def kernel(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``η m(a)·m(b)`` for inputs ``a (…, n, dx)``, ``b (…, m, dx)`` → ``(…, n, m)``."""
        return self.lr * (self.feature_map(a) @ self.feature_map(b).transpose(-2, -1))

    def forward(self, E: torch.Tensor, query_only: bool = True) -> torch.Tensor:
        if not query_only:
            raise ValueError("FeatureGD computes the query token only (query_only=True)")
        _checks.tensor("E", E, 3, "(B, N+1, dx+dy)")
        x, y, xq = E[:, :-1, :self.dx], E[:, :-1, self.dx:], E[:, -1:, :self.dx]
        k = self.kernel(x, xq)  # (B, N, 1)
        pred = (k * y).sum(dim=1) / x.shape[1]  # (B, dy)
        return torch.cat([xq[:, 0], -pred], dim=-1)[:, None]  # (B, 1, dx+dy)


def feature_gd_as_lsa(model: FeatureGD, n_context: int, dy: int = 1) -> FeatureLSA:
    """Proposition 2's construction: the same feature map followed by Proposition 1's layer with step ``η``.

    The result predicts exactly what ``model`` predicts (in any dtype); the feature map is shared, not copied.
    """
    p = model.feature_map.out.weight
    lsa = constructed_lsa(model.feature_map.features, dy, n_context, float(model.lr.detach()), dtype=p.dtype)
    return FeatureLSA(model.feature_map, lsa.to(p.device))


def proposition2_errors(*, seed: int = 0, n_tasks: int = 64, dtype: torch.dtype = torch.float64) -> float:
    """Max relative difference between a random :class:`FeatureGD` and its :func:`feature_gd_as_lsa` (float64)."""
    gen = runtime.generator(seed)
    model = FeatureGD(FeatureMap(1, 32, 8, generator=gen, dtype=dtype),
                      lr=float(torch.rand((), generator=gen, dtype=dtype)) * 3 + 0.5)
    b = tasks.sample_sine_regression(n_tasks, 10, generator=gen, dtype=dtype)
    with torch.no_grad():
        ref = predict(model, b.tokens(), 1)
        got = predict(feature_gd_as_lsa(model, 10), b.tokens(), 1)
    return metrics.relative_error(got, ref, norm="max")


def new_feature_model(kind: str, *, seed: int = 0, hidden: int = 64, features: int = 16, n_context: int = 10,
                      dx: int = 1, dy: int = 1) -> torch.nn.Module:
    """A fresh ``"lsa"`` (:class:`FeatureLSA`, official init for the attention) or ``"gd"`` (:class:`FeatureGD`,
    ``η = 1``) model; both feature maps start from the same seeded weights."""
    gen = runtime.generator(seed)
    fmap = FeatureMap(dx, hidden, features, generator=gen)
    if kind == "gd":
        return FeatureGD(fmap)
    if kind == "lsa":
        return FeatureLSA(fmap, LSAStack.new(features + dy, 1, n_context=n_context, generator=gen))
    raise ValueError(f"kind must be 'lsa' or 'gd', got {kind!r}")


def train_sine(kind: str, *, seed: int = 0, tied: bool = False, scale: str = "cpu", steps: int | None = None,
               eval_size: int = 10_000, device: str | torch.device | None = None,
               progress: bool | None = None) -> train.TrainedRun:
    """Meta-train a feature model (``kind`` ``"lsa"`` or ``"gd"``) on sine tasks through :func:`train.fit`.

    Seeds: initial weights ``seed``, training stream ``seed + 1``, evaluation set ``seed + 2`` (drawn like the
    training tasks, tied or not), evaluated every 100 steps. ``scale`` picks :data:`SINE`'s settings (``steps``
    overrides its step count); ``device`` (e.g. ``"cuda"``) holds the model and draws the data there.
    """
    cfg = SINE.pick(scale)
    N = cfg.n_context
    model = new_feature_model(kind, seed=seed, hidden=cfg.hidden, features=cfg.features, n_context=N)
    model = model.to(device) if device is not None else model
    ev = tasks.sine_eval_set(eval_size, N, seed=seed + 2, tied=tied, device=device, input_range=cfg.input_range)
    batches = tasks.sine_stream(cfg.batch_size, N, seed=seed + 1, tied=tied, device=device,
                                input_range=cfg.input_range)
    return train.train_run(model, icl_loss, batches, steps or cfg.steps, eval_set=ev,
                           eval_batch=(ev.tokens(), ev.y_query), lr=cfg.lr, betas=PAPER.betas, clip=cfg.clip,
                           eval_every=100, progress=progress, desc=f"sine {kind} seed {seed}")


def oracle_feature_loss(batch: tasks.RegressionBatch, lo: float = 0.1, hi: float = 5.0) -> tuple[float, float]:
    """One GD step on the ideal features ``(sin x, cos x)`` at the step size that is best on ``batch``.

    Returns ``(η, loss)``; the kernel is ``η cos(x − x')``. (Least squares on these features is exact: loss 0.)
    """
    fx, fq = tasks.sine_basis(batch.x), tasks.sine_basis(batch.x_query)

    def loss(eta: float) -> float:
        pred = solvers.predict(solvers.gd(fx, batch.y, eta), fq)
        return float(metrics.half_squared_error(pred, batch.y_query))

    eta = solvers.line_search(loss, lo, hi, tol=1e-4)
    return eta, loss(eta)


def effective_kernel(model: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, route: str = "both") -> torch.Tensor:
    """The kernel ``k (n, m)`` of the part of the prediction that is linear in the targets,
    ``ŷ = (1/N) Σ_i y_i k(x_i, x_q) + …``, for inputs ``a (n, 1)`` and ``b (m, 1)``.

    :class:`FeatureGD`: ``η m(a)·m(b)`` (its whole prediction). :class:`FeatureLSA` with products
    ``K = W_Kᵀ W_Q`` and ``V = P W_V`` on tokens ``(m, y)``: the target can reach the prediction through the
    value (``route="value"``, Proposition 2's construction) or through the key (``route="key"``); ``"both"`` is their
    sum. Which blocks of ``K`` and ``V`` each route uses, and the rank of each kernel, is the chapter's exercise
    ``kernel_routes``. The layer's remaining
    terms do not involve the targets linearly (a mean function of the inputs, and a term in ``y_i²``).
    """
    if route not in ("both", "value", "key"):
        raise ValueError(f"route must be 'both', 'value' or 'key', got {route!r}")
    with torch.no_grad():
        if isinstance(model, FeatureGD):
            if route != "both":
                raise ValueError("FeatureGD has one route only: use route='both'")
            return model.kernel(a, b)
        if isinstance(model, FeatureLSA):
            F, N = model.feature_map.features, model.lsa.n_context or 1
            K, V = weight_products(model.lsa.layer(0))
            ma, mb = model.feature_map(a), model.feature_map(b)  # (n, F), (m, F)
            value = -N * V[F, F] * (ma @ K[:F, :F] @ mb.T)
            key = -N * torch.outer(ma @ V[F, :F], mb @ K[F, :F])
            return {"both": value + key, "value": value, "key": key}[route]
    raise TypeError(f"model must be a FeatureGD or FeatureLSA, got {type(model).__name__}")


def kernel_explained(model: torch.nn.Module, batch: tasks.RegressionBatch) -> float:
    """How much of the model's prediction its kernel term alone gives: ``1 − ‖ŷ_k − ŷ‖² / ‖ŷ − mean ŷ‖²``."""
    with torch.no_grad():
        pred = predict(model, batch.tokens(), batch.dx)  # (B, 1)
        k = torch.stack([effective_kernel(model, xs, xq[None])[:, 0] for xs, xq in zip(batch.x, batch.x_query)])
        pred_k = (k[..., None] * batch.y).sum(dim=1) / batch.x.shape[1]  # (B, 1)
        spread = ((pred - pred.mean()) ** 2).sum()
        if spread == 0:
            raise ValueError("the model's predictions are the same on every task of batch: nothing to explain")
        return float(1 - ((pred_k - pred) ** 2).sum() / spread)
