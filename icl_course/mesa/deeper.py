"""Deeper causal linear attention: multi-step, preconditioned GD on the mesa objective, the compressed algorithm read
off the trained weights (RevAlg-d), the path between the two, and linear probes of the residual stream.

A stack of ``L`` causal linear-attention layers on the full tokens ``(0, s_t, s_t, s_{t−1})`` no longer matches one GD
step. This module gives the references it is compared with — ``K`` GD steps on ``L_t(W) = ½ Σ_{j≤t} ‖s_j −
W s_{j−1}‖²`` from ``W_0 = 0`` with ``K`` step sizes, which is a truncated Neumann series of the inverse in the
least-squares solution — and the tools that look inside: :func:`interpolated_model` (every head's weight products
moved towards the block-scaled identities of RevAlg-d), :func:`layer_activations` and :func:`probe_r2` (what a linear
read-out of each layer's residual stream recovers of ``s_{t+1}`` and of the preconditioned input
``(Σ_{j≤t} s_{j−1} s_{j−1}ᵀ + λ I)⁻¹ s_t``).

References
----------
von Oswald et al. (2023), "Uncovering mesa-optimization algorithms in Transformers" (deeper models, RevAlg-d, the
interpolation and the probes); official code ``src/util/interpolation`` and ``src/util/probings/probe_layers.py``.
Part IV, chapter "Deeper layers: preconditioned multi-step GD" (``book/part4_deeper.ipynb``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .. import _checks, runtime, solvers, tasks, train
from ..causal import CausalSelfAttention, CausalStack
from ._common import (
    DYNAMICS,
    block_diagonal_energy,
    block_means,
    head_products,
    model_predictions,
    per_step_loss,
    train_sequence_model,
)

__all__ = ["DeeperSettings", "DEEPER", "new_deep_model", "train_deep", "gd_steps_predict", "fit_gd_steps",
           "FittedSteps", "interpolated_model", "interpolation_path", "product_structure", "layer_activations",
           "preconditioned_input", "probe_r2", "inlier_sequences", "ProbeScores", "probe_scores", "DeepVsRevAlg",
           "deep_vs_revalg", "DepthVsSteps", "depth_vs_steps"]


# ------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class DeeperSettings:
    """The deeper models: ``depths`` stacks of causal linear attention with ``n_heads`` heads of size ``key_size`` on
    the full tokens ``(0, s_t, s_t, s_{t−1})`` (unmasked, as the official multi-layer models), the official
    activation clip at ``±activation_clip`` after every layer, weights ``N(0, init_std²)``; Adam (AdamW with
    ``weight_decay``) at peak ``lr`` after an element-wise gradient clip at ``clip``, a linear warm-up over ``warmup``
    steps and cosine decay to ``final_lr``; ``steps`` updates of ``batch_size`` sequences."""

    depths: tuple[int, ...] = (2, 4)
    n_heads: int = 2
    key_size: int = 20
    activation_clip: float | None = 1.5
    init_std: float = 2e-4
    batch_size: int = 32
    steps: int = 1000
    lr: float = 1e-3
    clip: float = 1.0
    weight_decay: float = 0.0
    warmup: int = 75
    final_lr: float = 1e-5
    eval_size: int = 1000


DEEPER = runtime.Scales(
    cpu=DeeperSettings(),
    paper=DeeperSettings(depths=(2, 4, 6), n_heads=4, key_size=40, batch_size=256, steps=20_000, lr=3e-4,
                         weight_decay=0.05, warmup=1000, eval_size=10_000),
)
"""``cpu``: 2 and 4 layers of 2 heads of size 20 for 1,000 updates of 32 sequences (about 12 and 20 CPU-seconds on
one thread); ``paper``: the official multi-layer shape (4 heads of size 40, as RevAlg-d assumes) and optimiser
(AdamW, weight decay 0.05, warm-up 1,000 steps to 3e-4, cosine to 1e-5 at 20,000, batch 256)."""


def new_deep_model(n_layers: int, settings: DeeperSettings = DEEPER.cpu, *, seed: int = 0,
                   dim: int = DYNAMICS.dim) -> CausalStack:
    """A freshly initialised stack of ``n_layers`` causal linear-attention layers on tokens of width ``4·dim``."""
    gen = runtime.generator(seed)
    layers = [CausalSelfAttention(4 * dim, settings.n_heads, settings.key_size, attention="linear",
                                  init_std=settings.init_std, generator=gen)
              for _ in range(_checks.positive_int("n_layers", n_layers))]
    return CausalStack(layers, clip=settings.activation_clip)


def train_deep(n_layers: int, *, seed: int = 0, scale: str = "cpu", steps: int | None = None,
               device: str | torch.device | None = None, progress: bool | None = None) -> train.TrainedRun:
    """Train a stack of ``n_layers`` causal linear-attention layers (:data:`DEEPER`) on fresh sequences: weights from
    ``seed``, training stream ``seed + 1``, evaluation set ``seed + 2``."""
    cfg = DEEPER.pick(scale)
    n = steps or cfg.steps
    schedule = train.warmup_cosine(cfg.warmup, n, cfg.final_lr / cfg.lr) if cfg.warmup else None
    return train_sequence_model(new_deep_model(n_layers, cfg, seed=seed), seed=seed, steps=n,
                                batch_size=cfg.batch_size, lr=cfg.lr, clip=cfg.clip, masked=False,
                                eval_size=cfg.eval_size, weight_decay=cfg.weight_decay, lr_schedule=schedule,
                                device=device, progress=progress, desc=f"{n_layers} linear layers, seed {seed}")


# --------------------------------------------------------------------------- multi-step GD on L_t
def gd_steps_predict(states: torch.Tensor, lrs: torch.Tensor | list[float]) -> torch.Tensor:
    """Predictions ``ŝ_{t+1} = W_K s_t`` ``(B, T, D)`` after ``K = len(lrs)`` GD steps on the mesa objective at every
    position ``t``, from ``W_0 = 0`` with step sizes ``η_1 … η_K``.

    With ``A_t = Σ_{j≤t} s_{j−1} s_{j−1}ᵀ`` and ``C_t = Σ_{j≤t} s_j s_{j−1}ᵀ`` (unnormalised, ``s_0 = 0``) each step is
    ``W ← W + η_k (C_t − W A_t)``. With one step size ``η`` throughout, ``W_K = C_t · η Σ_{i<K} (I − η A_t)^i`` — the
    first ``K`` terms of the Neumann series of ``A_t⁻¹``: ``K`` steps precondition the one-step update with a truncated
    inverse, and ``K → ∞`` (with ``η < 2/λ_max``) reaches least squares. ``K = 1`` is
    :func:`~icl_course.solvers.causal_gd_predict`.

    Parameters
    ----------
    states : (B, T, D) ``s_1 … s_T``
    lrs : (K,) step sizes (a differentiable tensor is fine)
    """
    _checks.tensor("states", states, 3, "(B, T, D)")
    lrs = torch.as_tensor(lrs, dtype=states.dtype, device=states.device)
    if lrs.ndim != 1 or lrs.numel() == 0:
        raise ValueError(f"lrs must be a non-empty (K,) sequence of step sizes, got shape {tuple(lrs.shape)}")
    if not torch.isfinite(lrs).all():
        raise ValueError("lrs must be finite")
    prev, cur = solvers.causal_pairs(states)
    A = torch.cumsum(prev[..., :, None] * prev[..., None, :], dim=1)  # (B, T, D, D)
    C = torch.cumsum(cur[..., :, None] * prev[..., None, :], dim=1)  # (B, T, D, D)
    W = torch.zeros_like(C)
    for eta in lrs:
        W = W + eta * (C - W @ A)
    return (W @ states[..., None])[..., 0]


class FittedSteps(NamedTuple):
    """The step sizes of :func:`fit_gd_steps` and the mean loss they reach on the batch they were fitted on."""

    lrs: torch.Tensor
    loss: float


def _spectral(batch: tasks.DynamicsBatch) -> tuple[torch.Tensor, ...]:
    """Per sequence and position, what the loss of any ``K``-step GD depends on, in float64: the eigenvalues ``a``
    of ``A_t``, ``u = Uᵀ s_t``, ``G = MᵀM`` and ``h = Mᵀ s_{t+1}`` with ``M = C_t U``, and ``‖s_{t+1}‖²``."""
    states, targets = batch.inputs.double(), batch.targets.double()
    prev, cur = solvers.causal_pairs(states)
    A = torch.cumsum(prev[..., :, None] * prev[..., None, :], dim=1)  # (B, T, D, D)
    C = torch.cumsum(cur[..., :, None] * prev[..., None, :], dim=1)
    a, U = torch.linalg.eigh(A)  # (B, T, D), (B, T, D, D)
    M = C @ U
    u = (U.mT @ states[..., None])[..., 0]
    return a, u, M.mT @ M, (M.mT @ targets[..., None])[..., 0], (targets**2).sum(-1)


def _spectral_loss(lrs: torch.Tensor, a: torch.Tensor, u: torch.Tensor, G: torch.Tensor, h: torch.Tensor,
                   c: torch.Tensor) -> torch.Tensor:
    q = torch.zeros_like(a)
    for eta in lrs:  # q_k(a) = q_{k−1}(a)(1 − η_k a) + η_k, the polynomial of W_k = C_t q_k(A_t)
        q = q * (1 - eta * a) + eta
    p = q * u  # W_K s_t = M p
    return 0.5 * (c - 2 * (h * p).sum(-1) + (p[..., None, :] @ G @ p[..., :, None])[..., 0, 0]).mean()


def fit_gd_steps(batch: tasks.DynamicsBatch, n_steps: int, *, lo: float = 0.005, hi: float = 0.06,
                 iters: int = 100) -> FittedSteps:
    """The ``n_steps`` step sizes of :func:`gd_steps_predict` that minimise the mean per-position loss on ``batch``
    (L-BFGS in float64): the best ``K``-step GD from ``W_0 = 0``, one step size per step.

    The start is spread over ``[lo, hi]``: the loss is symmetric in the step sizes (``W_K = C_t q(A_t)`` with
    ``1 − a q(a) = Π_k (1 − η_k a)``), so equal starting values would stay equal. Distinct steps make ``q`` any
    polynomial of degree ``K − 1`` with real roots of ``1 − a q(a)`` — the best polynomial preconditioner, as in
    Chebyshev acceleration. The loss is evaluated in the eigenbasis of every ``A_t`` (:func:`_spectral`), ``O(D²)``
    per position and step size instead of ``O(D³)``; a test checks it against :func:`gd_steps_predict`.

    Step sizes fitted on one batch can blow up on another: a large step is safe only up to the largest eigenvalue
    of ``A_t`` it was fitted on. Fit on the batch you score on for an upper bound on what ``K``-step GD can do.
    """
    n_steps = _checks.positive_int("n_steps", n_steps)
    spec = _spectral(batch)
    start = torch.linspace(lo, hi, n_steps, dtype=torch.float64) if n_steps > 1 else torch.tensor([0.03])
    lrs = start.double().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([lrs], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _spectral_loss(lrs, *spec)
        loss.backward()
        return loss

    opt.step(closure)
    lrs = lrs.detach().sort().values
    return FittedSteps(lrs, float(_spectral_loss(lrs, *spec)))


# --------------------------------------------------------------------- RevAlg-d and the path to it
def _structured(M: torch.Tensor, dim: int) -> torch.Tensor:
    eye = torch.eye(dim, dtype=M.dtype, device=M.device)
    return torch.kron(block_means(M, dim), eye)  # every dim × dim block → (mean of its diagonal) · I


def interpolated_model(model: CausalStack, alpha: float, dim: int = DYNAMICS.dim) -> CausalStack:
    """``model`` with every head's two weight products ``W_Kᵀ W_Q`` and ``W_O W_V`` moved a fraction ``alpha`` of the
    way to their RevAlg-d form (every ``dim × dim`` block replaced by the mean of its diagonal times ``I``, the
    official ``four_head_diags_multilayer``): ``alpha = 0`` is the trained model, ``alpha = 1`` the compressed
    algorithm of :func:`~icl_course.mesa.revalg_model`. The products are what the forward pass uses, so the path is
    one of functions, not of the (non-identifiable) factors."""
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not all(isinstance(layer, CausalSelfAttention) and layer.attention == "linear" for layer in model.layers):
        raise TypeError("model must be a CausalStack of linear CausalSelfAttention layers")
    layers = []
    for layer in model.layers:
        qs, vs = [], []
        for kq, pv in head_products(layer):
            qs.append((1 - alpha) * kq + alpha * _structured(kq, dim))
            vs.append((1 - alpha) * pv + alpha * _structured(pv, dim))
        I = torch.eye(qs[0].shape[0], dtype=qs[0].dtype, device=qs[0].device)
        layers.append(CausalSelfAttention.from_matrices(torch.cat(qs), torch.cat([I] * len(qs)), torch.cat(vs),
                                                        torch.cat([I] * len(qs), dim=1), n_heads=len(qs)))
    return CausalStack(layers, masked_dims=model.masked_dims, clip=model.clip)


def interpolation_path(model: CausalStack, batch: tasks.DynamicsBatch, alphas: torch.Tensor | list[float],
                       dim: int = DYNAMICS.dim) -> torch.Tensor:
    """Mean loss ``(len(alphas),)`` on ``batch`` of :func:`interpolated_model` at every ``alpha``."""
    masked = model.masked_dims > 0
    with torch.no_grad():
        return torch.tensor([float(per_step_loss(model_predictions(interpolated_model(model, a, dim), batch,
                                                                   masked=masked), batch.targets).mean())
                             for a in alphas])


def product_structure(model: CausalStack, dim: int = DYNAMICS.dim) -> torch.Tensor:
    """Per layer and head, the fraction of each weight product's squared norm on the diagonals of its ``dim × dim``
    blocks: ``(L, H, 2)`` (``[..., 0]`` for ``W_Kᵀ W_Q``, ``[..., 1]`` for ``W_O W_V``); 1 means RevAlg-d's
    block-scaled identities lose nothing, ``1/dim`` is what unstructured weights give."""
    return torch.tensor([[[block_diagonal_energy(kq, dim), block_diagonal_energy(pv, dim)]
                          for kq, pv in head_products(layer)] for layer in model.layers])


# ---------------------------------------------------------------------------------------------- probes
def layer_activations(model: CausalStack, E: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream ``(B, T, width)`` at the input and after every layer (after its activation clip):
    ``L + 1`` tensors."""
    with torch.no_grad():
        return [E] + [model(E, n_layers=k) for k in range(1, len(model.layers) + 1)]


def preconditioned_input(states: torch.Tensor, lam: float = 1e-3) -> torch.Tensor:
    """``(Σ_{j≤t} s_{j−1} s_{j−1}ᵀ + λ I)⁻¹ s_t`` ``(B, T, D)`` at every position ``t``: the query multiplied by the
    inverse of the keys' Gram matrix, which least squares needs and one GD step does not have (the official
    ``inverse_curr_probe`` target: the states before ``t``, ``λ = 0.001``)."""
    _checks.tensor("states", states, 3, "(B, T, D)")
    lam = _checks.positive_float("lam", lam)
    prev, _ = solvers.causal_pairs(states)
    A = torch.cumsum(prev[..., :, None] * prev[..., None, :], dim=1)  # (B, T, D, D)
    eye = torch.eye(states.shape[-1], dtype=states.dtype, device=states.device)
    return torch.linalg.solve(A + lam * eye, states[..., None])[..., 0]


def probe_r2(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor) -> torch.Tensor:
    """Per position, the held-out R² ``(T,)`` of a linear probe (least squares, no intercept, one probe per
    position) fitted on ``(train_x (B, T, F), train_y (B, T, D))`` and scored on ``(test_x, test_y)``:
    ``1 − Σ‖ŷ − y‖² / Σ‖y − ȳ‖²`` (1: the target is a linear function of the activation; 0: no better than its
    mean)."""
    for name, x in (("train_x", train_x), ("train_y", train_y), ("test_x", test_x), ("test_y", test_y)):
        _checks.tensor(name, x, 3, "(B, T, ·)")
    if train_x.shape[:2] != train_y.shape[:2] or test_x.shape[:2] != test_y.shape[:2] \
            or train_x.shape[1:] != test_x.shape[1:] or train_y.shape[2] != test_y.shape[2]:
        raise ValueError(f"probe shapes must agree: train_x {tuple(train_x.shape)}, train_y {tuple(train_y.shape)}, "
                         f"test_x {tuple(test_x.shape)}, test_y {tuple(test_y.shape)}")
    X, Y = train_x.double().transpose(0, 1), train_y.double().transpose(0, 1)  # (T, B, F), (T, B, D)
    coef = torch.linalg.lstsq(X, Y, driver="gelsd").solution  # (T, F, D)
    Xt, Yt = test_x.double().transpose(0, 1), test_y.double().transpose(0, 1)
    sse = ((Xt @ coef - Yt) ** 2).sum((1, 2))
    sst = ((Yt - Yt.mean(1, keepdim=True)) ** 2).sum((1, 2))
    return 1 - sse / sst


class ProbeScores(NamedTuple):
    """Held-out probe R² per read-out point (input, after layer 1, …) and position: ``next`` and
    ``preconditioned`` ``(L + 1, T)``."""

    next: torch.Tensor
    preconditioned: torch.Tensor


def inlier_sequences(target: torch.Tensor, threshold: float = 3.0) -> torch.Tensor:
    """``(B,)`` mask of the sequences whose target norm has a z-score below ``threshold`` at every position (the
    official probes' ``clean_batch``): the preconditioned input is heavy-tailed — near-singular Gram matrices make a
    few sequences' targets hundreds of times larger than the rest, and they would decide a least-squares probe alone."""
    _checks.tensor("target", target, 3, "(B, T, D)")
    threshold = _checks.positive_float("threshold", threshold)
    norm = target.norm(dim=-1)  # (B, T)
    z = (norm - norm.mean(0)) / norm.std(0).clamp_min(torch.finfo(norm.dtype).tiny)
    return (z < threshold).all(1)


def probe_scores(model: CausalStack, train_batch: tasks.DynamicsBatch, test_batch: tasks.DynamicsBatch, *,
                 lam: float = 1e-3, threshold: float = 3.0) -> ProbeScores:
    """Fit linear probes for ``s_{t+1}`` and for :func:`preconditioned_input` on every read-out point of ``model``
    (:func:`layer_activations`) on ``train_batch``; score them on ``test_batch``. Both use only the
    :func:`inlier_sequences` of their batch (z-score ``threshold``), and the probes are scored on sequences they
    were not fitted on (the official probes fit and score on one batch)."""
    masked = model.masked_dims > 0
    model = model.to("cpu")
    data = []
    for b in (train_batch, test_batch):
        pre = preconditioned_input(b.inputs.double(), lam)
        keep = inlier_sequences(pre, threshold)
        acts = layer_activations(model, tasks.mesa_tokens(b.inputs[keep], masked=masked))
        data.append((acts, b.targets[keep], pre[keep]))
    (a_tr, n_tr, p_tr), (a_te, n_te, p_te) = data
    return ProbeScores(torch.stack([probe_r2(a, n_tr, b, n_te) for a, b in zip(a_tr, a_te)]),
                       torch.stack([probe_r2(a, p_tr, b, p_te) for a, b in zip(a_tr, a_te)]))


# ------------------------------------------------------------------------------------- claim value
class DeepVsRevAlg(NamedTuple):
    """The trained ``L``-layer model against its RevAlg-d: mean losses, the largest loss along the interpolation
    path, and the smallest fraction of any head's product energy on block diagonals."""

    trained: float
    revalg: float
    path_max: float
    structure_min: float


def deep_vs_revalg(model: CausalStack, batch: tasks.DynamicsBatch, alphas: torch.Tensor | list[float],
                   dim: int = DYNAMICS.dim) -> DeepVsRevAlg:
    """The claim value: :func:`interpolation_path` at ``alphas`` (which must start at 0 and end at 1)."""
    path = interpolation_path(model, batch, alphas, dim)
    return DeepVsRevAlg(float(path[0]), float(path[-1]), float(path.max()),
                        float(product_structure(model, dim).min()))


class DepthVsSteps(NamedTuple):
    """Mean losses of trained ``L``-layer models and of ``K``-step GD with the best step sizes (dicts keyed by ``L``
    and ``K``), and ridge (``λ = 10⁻³``, pairs ``j ≤ t``)."""

    trained: dict[int, float]
    gd: dict[int, float]
    ridge: float


def depth_vs_steps(trained_curves: dict[int, torch.Tensor], gd_curves: dict[int, torch.Tensor],
                   ridge_curve: torch.Tensor) -> DepthVsSteps:
    """The claim value from per-position loss curves."""
    mean = lambda c: float(c.double().mean())
    return DepthVsSteps({L: mean(c) for L, c in trained_curves.items()}, {K: mean(c) for K, c in gd_curves.items()},
                        mean(ridge_curve))
