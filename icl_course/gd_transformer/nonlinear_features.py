"""Part III, chapter "Non-linear regression: GD on learned features" (Proposition 2, sine tasks).

References
----------
von Oswald et al. (2022), Sec. 3 (non-linear regression), Proposition 2; the official notebook's sine experiment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import _checks, metrics, runtime, solvers, tasks, train
from ..models import FeatureLSA, FeatureMap, LSAStack
from ..query import icl_loss, predict
from ._common import PAPER, constructed_lsa, weight_products

__all__ = ["SineSettings", "SINE", "FeatureGD", "feature_gd_as_lsa", "proposition2_errors", "JointEmbedding",
           "JointFeatureLSA", "JointFeatureGD", "joint_gd_as_lsa", "joint_proposition2_errors", "initial_function",
           "EMBEDDINGS", "new_feature_model", "train_sine", "oracle_feature_loss", "effective_kernel",
           "kernel_explained", "target_sensitivities", "oracle_sine", "sine_prior_mean", "least_squares_sine",
           "compare_sine_models"]


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


class JointEmbedding(torch.nn.Module):
    """The official code's embedding of a whole token ``e = (x, y)``: ``h = A e + mlp(A e)``, width ``F + dy``.

    ``A`` is a linear map without bias, ``mlp`` a :class:`~icl_course.models.FeatureMap` ``F+dy → hidden → F+dy``
    added as a residual (the official ``in_proj`` and ``input_mlp``). The query token ``(x_q, 0)`` is embedded by
    the same map, so its last ``dy`` entries are a learned function of ``x_q`` alone: the model's *initial
    function* (:func:`initial_function`). Initialised like ``nn.Linear``, from ``generator``.
    """

    def __init__(self, dx: int, dy: int, features: int, hidden: int, *, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.dx, self.dy = _checks.positive_int("dx", dx), _checks.positive_int("dy", dy)
        self.features = _checks.positive_int("features", features)
        width = features + dy
        self.linear = torch.nn.Linear(dx + dy, width, bias=False, dtype=dtype)
        with torch.no_grad():
            bound = 1 / (dx + dy) ** 0.5
            self.linear.weight.copy_(torch.rand(self.linear.weight.shape, generator=generator, dtype=dtype)
                                     .mul(2 * bound).sub(bound))
        self.mlp = FeatureMap(width, hidden, width, generator=generator, dtype=dtype)

    def forward(self, E: torch.Tensor) -> torch.Tensor:
        """``E (…, dx+dy) → h (…, F+dy)``."""
        if not isinstance(E, torch.Tensor) or E.ndim < 1 or E.shape[-1] != self.dx + self.dy:
            shape = tuple(E.shape) if isinstance(E, torch.Tensor) else type(E).__name__
            raise ValueError(f"E must have shape (..., dx+dy={self.dx + self.dy}), got {shape}")
        h = self.linear(E)
        return h + self.mlp(h)


def _check_joint_tokens(E: torch.Tensor, embedding: JointEmbedding, n_context: int | None) -> None:
    _checks.tensor("E", E, 3, "(B, N+1, dx+dy)")
    if E.shape[2] != embedding.dx + embedding.dy or E.shape[1] < 2:
        raise ValueError(f"E must have shape (B, N+1, dx+dy) with dx+dy={embedding.dx + embedding.dy} and N ≥ 1, "
                         f"got {tuple(E.shape)}")
    if n_context is not None and E.shape[1] != n_context + 1:
        raise ValueError(f"this model was built for n_context={n_context}: E must have shape "
                         f"(B, {n_context + 1}, {E.shape[2]}), got {tuple(E.shape)}")


class JointFeatureLSA(torch.nn.Module):
    """The official architecture of the sine experiment: :class:`JointEmbedding` of every token, then one linear
    self-attention layer on the embedded tokens; the prediction is minus the query's last ``dy`` entries.

    Same interface as the other models: tokens ``E (B, N+1, dx+dy)`` in, the query token ``(x_q, ·)`` out.
    """

    def __init__(self, embedding: JointEmbedding, lsa: LSAStack) -> None:
        super().__init__()
        if lsa.layer(0).dim != embedding.features + embedding.dy:
            raise ValueError(f"the attention's width ({lsa.layer(0).dim}) must be the embedding's width "
                             f"features + dy = {embedding.features + embedding.dy}")
        self.embedding, self.lsa, self.dx = embedding, lsa, embedding.dx

    def forward(self, E: torch.Tensor, query_only: bool = True) -> torch.Tensor:
        if not query_only:
            raise ValueError("JointFeatureLSA returns the query token only (query_only=True)")
        _check_joint_tokens(E, self.embedding, self.lsa.n_context)
        out = self.lsa(self.embedding(E), query_only=True)  # (B, 1, F+dy)
        return torch.cat([E[:, -1:, :self.dx], out[..., self.embedding.features:]], dim=-1)


class JointFeatureGD(torch.nn.Module):
    """The control of the official sine experiment: the same :class:`JointEmbedding`, then *one GD step* in the
    embedded space (Proposition 1's layer) instead of a free attention layer. The official code fixes the step
    (``lr = 0.1``) and trains the embedding only; here ``η`` is learned with it — the same functions, since the
    embedding's scale can absorb any step.

    With ``h = (h_x, h_y)`` the embedding of a token, it predicts
    ``ŷ = −h_y(x_q, 0) + (η/N) Σ_i h_y(x_i, y_i) h_x(x_i, y_i)·h_x(x_q, 0)``: a learned initial function
    ``f₀(x_q) = −h_y(x_q, 0)`` corrected by one step on learned features with learned targets — one GD step from a
    meta-learned starting point, which the embedding can make exact (``h_y(x, y) = f₀(x) − y``).
    """

    def __init__(self, embedding: JointEmbedding, lr: float = 1.0) -> None:
        super().__init__()
        self.embedding, self.dx = embedding, embedding.dx
        p = embedding.linear.weight
        self.lr = torch.nn.Parameter(torch.tensor(float(lr), dtype=p.dtype, device=p.device))

    def forward(self, E: torch.Tensor, query_only: bool = True) -> torch.Tensor:
        if not query_only:
            raise ValueError("JointFeatureGD computes the query token only (query_only=True)")
        _check_joint_tokens(E, self.embedding, None)
        F = self.embedding.features
        h = self.embedding(E)
        hx, hy, hq = h[:, :-1, :F], h[:, :-1, F:], h[:, -1:]
        step = (hy * (hx @ hq[..., :F].transpose(1, 2))).sum(dim=1) / hx.shape[1]  # (B, dy)
        return torch.cat([E[:, -1:, :self.dx], hq[..., F:] - self.lr * step[:, None]], dim=-1)


def joint_gd_as_lsa(model: JointFeatureGD, n_context: int) -> JointFeatureLSA:
    """Proposition 2 for the joint embedding: the same embedding followed by Proposition 1's layer with step ``η``
    predicts exactly what ``model`` predicts (the embedding is shared, not copied)."""
    emb = model.embedding
    p = emb.linear.weight
    lsa = constructed_lsa(emb.features, emb.dy, n_context, float(model.lr.detach()), dtype=p.dtype)
    return JointFeatureLSA(emb, lsa.to(p.device))


def joint_proposition2_errors(*, seed: int = 0, n_tasks: int = 64, dtype: torch.dtype = torch.float64) -> float:
    """Max relative difference between a random :class:`JointFeatureGD` and its :func:`joint_gd_as_lsa`."""
    gen = runtime.generator(seed)
    model = JointFeatureGD(JointEmbedding(1, 1, 8, 32, generator=gen, dtype=dtype),
                           lr=float(torch.rand((), generator=gen, dtype=dtype)) * 3 + 0.5)
    b = tasks.sample_sine_regression(n_tasks, 10, generator=gen, dtype=dtype)
    with torch.no_grad():
        ref = predict(model, b.tokens(), 1)
        got = predict(joint_gd_as_lsa(model, 10), b.tokens(), 1)
    return metrics.relative_error(got, ref, norm="max")


def initial_function(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What a joint-embedding model predicts at inputs ``x (n, dx)`` before any demonstration acts:
    ``f₀(x) = −h_y(x, 0)``, the query's own embedding read out, ``(n, dy)``."""
    emb = getattr(model, "embedding", None)
    if not isinstance(emb, JointEmbedding):
        raise TypeError(f"model must be a JointFeatureLSA or JointFeatureGD, got {type(model).__name__}")
    _checks.tensor("x", x, 2, f"(n, dx={emb.dx})")
    if x.shape[1] != emb.dx:
        raise ValueError(f"x must have shape (n, dx={emb.dx}), got {tuple(x.shape)}")
    with torch.no_grad():
        return -emb(torch.cat([x, x.new_zeros(x.shape[0], emb.dy)], dim=-1))[:, emb.features:]


EMBEDDINGS = ("x", "joint")
"""How a sine model sees a token: ``"x"`` — a feature map of the input alone, the target passed through
(:class:`FeatureLSA`, :class:`FeatureGD`, Proposition 2 as stated); ``"joint"`` — the official code's embedding of
the whole token ``(x, y)`` (:class:`JointFeatureLSA`, :class:`JointFeatureGD`), with a learned initial function."""


def new_feature_model(kind: str, *, seed: int = 0, hidden: int = 64, features: int = 16, n_context: int = 10,
                      dx: int = 1, dy: int = 1, embedding: str = "x") -> torch.nn.Module:
    """A fresh ``"lsa"`` (official init for the attention) or ``"gd"`` (``η = 1``) model with the ``embedding``
    of :data:`EMBEDDINGS`; the ``"lsa"`` and ``"gd"`` models of one seed start from the same embedding weights."""
    if kind not in ("lsa", "gd"):
        raise ValueError(f"kind must be 'lsa' or 'gd', got {kind!r}")
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
    gen = runtime.generator(seed)
    if embedding == "joint":
        emb = JointEmbedding(dx, dy, features, hidden, generator=gen)
        if kind == "gd":
            return JointFeatureGD(emb)
        return JointFeatureLSA(emb, LSAStack.new(features + dy, 1, n_context=n_context, generator=gen))
    fmap = FeatureMap(dx, hidden, features, generator=gen)
    if kind == "gd":
        return FeatureGD(fmap)
    return FeatureLSA(fmap, LSAStack.new(features + dy, 1, n_context=n_context, generator=gen))


def train_sine(kind: str, *, seed: int = 0, tied: bool = False, embedding: str = "x", scale: str = "cpu",
               steps: int | None = None, amplitude: tuple[float, float] = (0.1, 0.5), eval_size: int = 10_000,
               device: str | torch.device | None = None, progress: bool | None = None) -> train.TrainedRun:
    """Meta-train a feature model (``kind`` ``"lsa"`` or ``"gd"``, ``embedding`` of :data:`EMBEDDINGS`) on sine
    tasks through :func:`train.fit`.

    Seeds: initial weights ``seed``, training stream ``seed + 1``, evaluation set ``seed + 2`` (drawn like the
    training tasks, tied or not), evaluated every 100 steps. ``scale`` picks :data:`SINE`'s settings (``steps``
    overrides its step count); ``amplitude`` is the range of ``a`` (the official code's ``(0.1, 0.5)``; the paper's
    text says ``(0.1, 5)``); ``device`` (e.g. ``"cuda"``) holds the model and draws the data there.
    """
    cfg = SINE.pick(scale)
    N = cfg.n_context
    model = new_feature_model(kind, seed=seed, hidden=cfg.hidden, features=cfg.features, n_context=N,
                              embedding=embedding)
    model = model.to(device) if device is not None else model
    task_kw = dict(input_range=cfg.input_range, amplitude=tuple(amplitude))
    ev = tasks.sine_eval_set(eval_size, N, seed=seed + 2, tied=tied, device=device, **task_kw)
    batches = tasks.sine_stream(cfg.batch_size, N, seed=seed + 1, tied=tied, device=device, **task_kw)
    return train.train_run(model, icl_loss, batches, steps or cfg.steps, eval_set=ev,
                           eval_batch=(ev.tokens(), ev.y_query), lr=cfg.lr, betas=PAPER.betas, clip=cfg.clip,
                           eval_every=100, progress=progress, desc=f"sine {kind} ({embedding}) seed {seed}")


def oracle_feature_loss(batch: tasks.RegressionBatch, lo: float = 0.1, hi: float = 5.0,
                        init: torch.Tensor | None = None) -> tuple[float, float]:
    """One GD step on the ideal features ``(sin x, cos x)`` at the step size that is best on ``batch``, from
    ``w = 0`` or from ``init`` (a ``(2,)`` starting point, e.g. :func:`sine_prior_mean`).

    Returns ``(η, loss)``; the kernel is ``η cos(x − x')``. (Least squares on these features is exact: loss 0.)
    """
    def loss(eta: float) -> float:
        return float(metrics.half_squared_error(oracle_sine(batch, eta, init)[0], batch.y_query))

    eta = solvers.line_search(loss, lo, hi, tol=1e-4)
    return eta, loss(eta)


def sine_prior_mean(amplitude: tuple[float, float] = (0.1, 0.5),
                    phase: tuple[float, float] = (0.0, math.pi)) -> torch.Tensor:
    """``E[w]`` of sine tasks with independent ``a ~ U(amplitude)`` and ``φ ~ U(phase)``, ``w = (a cos φ, a sin φ)``:
    the weights of the average task ``E[y | x] = E[w]·(sin x, cos x)``, ``(2,)`` in float64."""
    (a_lo, a_hi), (p_lo, p_hi) = amplitude, phase
    if not (a_lo <= a_hi and p_lo < p_hi):
        raise ValueError(f"amplitude and phase must be (low, high) ranges with phase low < high, got {amplitude}, "
                         f"{phase}")
    mean_a = (a_lo + a_hi) / 2
    cos_mean = (math.sin(p_hi) - math.sin(p_lo)) / (p_hi - p_lo)
    sin_mean = (math.cos(p_lo) - math.cos(p_hi)) / (p_hi - p_lo)
    return torch.tensor([mean_a * cos_mean, mean_a * sin_mean], dtype=torch.float64)


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


def target_sensitivities(model: torch.nn.Module, batch: tasks.RegressionBatch) -> torch.Tensor:
    """``∂ŷ/∂y_i`` for every demonstration's target, ``(B, N)`` (one output): how much the prediction listens to
    each demonstration. For one GD step on features from ``w = 0`` this is the kernel row ``(η/N) k(x_i, x_q)``; it
    is defined for any model, whatever its embedding."""
    if batch.y.shape[-1] != 1:
        raise ValueError(f"batch must have one output (y of shape (B, N, 1)), got y {tuple(batch.y.shape)}")
    tokens = batch.tokens().detach().clone().requires_grad_(True)
    with torch.enable_grad():
        pred = predict(model, tokens, batch.dx)  # (B, 1); tasks do not interact
        (grad,) = torch.autograd.grad(pred.sum(), tokens)
    return grad[:, :-1, batch.dx]


def _check_sine_batch(batch: tasks.RegressionBatch) -> None:
    if batch.dx != 1 or batch.y.shape[-1] != 1:
        raise ValueError(f"batch must hold sine tasks (x and y of shape (B, N, 1)), got x {tuple(batch.x.shape)}, "
                         f"y {tuple(batch.y.shape)}")


def oracle_sine(batch: tasks.RegressionBatch, lr: float,
                init: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One GD step of size ``lr`` on the ideal features ``(sin x, cos x)`` from ``w = 0`` (or from ``init``, a
    ``(2,)`` starting point): its predictions ``(B, 1)`` and target sensitivities ``(lr/N) cos(x_i − x_q)``,
    ``(B, N)`` (the same from any starting point)."""
    lr = _checks.positive_float("lr", lr)
    _check_sine_batch(batch)
    sens = lr * torch.cos(batch.x[..., 0] - batch.x_query) / batch.x.shape[1]  # (B, N)
    y = batch.y[..., 0]
    if init is None:
        return (sens * y).sum(dim=1, keepdim=True), sens
    init = _checks.tensor("init", init, 1, "(2,)")
    if init.shape != (2,):
        raise ValueError(f"init must have shape (2,), got {tuple(init.shape)}")
    init = init.to(batch.x.dtype)
    start = tasks.sine_basis(batch.x) @ init  # (B, N): the starting point's predictions on the demonstrations
    pred = tasks.sine_basis(batch.x_query) @ init + (sens * (y - start)).sum(dim=1)
    return pred[:, None], sens


def least_squares_sine(batch: tasks.RegressionBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Least squares on ``(sin x, cos x)`` (exact on noise-free sine tasks): predictions ``(B, 1)`` and target
    sensitivities ``φ(x_q)ᵀ (ΦᵀΦ)⁻¹ φ(x_i)``, ``(B, N)`` — a different learner from one GD step, for calibrating
    :func:`compare_sine_models`."""
    _check_sine_batch(batch)
    phi, phi_q = tasks.sine_basis(batch.x), tasks.sine_basis(batch.x_query)  # (B, N, 2), (B, 2)
    sens = (phi_q[:, None] @ torch.linalg.solve(phi.transpose(1, 2) @ phi, phi.transpose(1, 2)))[:, 0]  # (B, N)
    return (sens * batch.y[..., 0]).sum(dim=1, keepdim=True), sens


def compare_sine_models(a: torch.nn.Module | tuple[torch.Tensor, torch.Tensor],
                        b: torch.nn.Module | tuple[torch.Tensor, torch.Tensor], batch: tasks.RegressionBatch) -> dict:
    """Two learners on the same sine tasks: their losses, "Preds diff" (mean ``|ŷ_a − ŷ_b|``), and how alike they
    weigh the demonstrations — the mean cosine between their target sensitivities (:func:`target_sensitivities`,
    blind to scale) and the mean norm of their difference (which sees scale). A learner is a model or a pair
    ``(predictions (B, 1), sensitivities (B, N))`` such as :func:`oracle_sine` or :func:`least_squares_sine` return."""
    def run(m, name):
        if isinstance(m, torch.nn.Module):
            with torch.no_grad():
                pred = predict(m, batch.tokens(), batch.dx)
            return pred, target_sensitivities(m, batch)
        if isinstance(m, tuple) and len(m) == 2 and all(isinstance(t, torch.Tensor) for t in m):
            B, N = batch.x.shape[:2]
            if m[0].shape != (B, 1) or m[1].shape != (B, N):
                raise ValueError(f"{name} must be (predictions (B, 1), sensitivities (B, N)) = ((B={B}, 1), "
                                 f"({B}, {N})), got {tuple(m[0].shape)}, {tuple(m[1].shape)}")
            return m
        raise TypeError(f"{name} must be a model or a pair (predictions, sensitivities), got {type(m).__name__}")

    (pa, sa), (pb, sb) = run(a, "a"), run(b, "b")
    return {"loss_a": float(metrics.half_squared_error(pa, batch.y_query)),
            "loss_b": float(metrics.half_squared_error(pb, batch.y_query)),
            "pred_diff": metrics.prediction_difference(pa, pb),
            "target_cos": metrics.model_cosine(sa[:, None], sb[:, None]),
            "target_diff": metrics.model_difference(sa[:, None], sb[:, None])}
