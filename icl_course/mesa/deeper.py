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
    probe_r2,
    train_sequence_model,
)

__all__ = ["DeeperSettings", "DEEPER", "new_deep_model", "train_deep", "gd_steps_predict", "gd_steps_query",
           "constructed_gd2_model", "gd_query_probe", "fit_gd_steps", "FittedSteps", "interpolated_model",
           "interpolation_path", "product_structure", "layer_activations", "preconditioned_input", "inlier_sequences",
           "ProbeScores", "probe_scores", "DeepVsRevAlg", "deep_vs_revalg", "DepthVsSteps", "depth_vs_steps"]


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
def _grams(states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    prev, cur = solvers.causal_pairs(states)
    A = torch.cumsum(prev[..., :, None] * prev[..., None, :], dim=1)  # Σ_{j≤t} s_{j−1} s_{j−1}ᵀ, (B, T, D, D)
    C = torch.cumsum(cur[..., :, None] * prev[..., None, :], dim=1)  # Σ_{j≤t} s_j s_{j−1}ᵀ, (B, T, D, D)
    return A, C


def _steps(lrs: torch.Tensor | list[float], states: torch.Tensor, A: torch.Tensor, normalize: bool) -> torch.Tensor:
    """``(K, B, T, 1, 1)`` step sizes: ``lrs`` for every position, or ``lrs / λ_max(A_t)`` with ``normalize``."""
    lrs = torch.as_tensor(lrs, dtype=states.dtype, device=states.device)
    if lrs.ndim != 1 or lrs.numel() == 0:
        raise ValueError(f"lrs must be a non-empty (K,) sequence of step sizes, got shape {tuple(lrs.shape)}")
    if not torch.isfinite(lrs).all():
        raise ValueError("lrs must be finite")
    scale = torch.ones_like(A[..., :1, :1])
    if normalize:  # A_1 = 0 (the pair (s_0, s_1) has s_0 = 0): any finite step gives the same zero prediction there
        top = torch.linalg.eigvalsh(A)[..., -1:, None]  # (B, T, 1, 1)
        scale = torch.where(top > 0, 1 / top.clamp_min(torch.finfo(A.dtype).tiny), torch.zeros_like(top))
    return lrs[:, None, None, None, None] * scale


def gd_steps_predict(states: torch.Tensor, lrs: torch.Tensor | list[float], *, normalize: bool = False) -> torch.Tensor:
    """Predictions ``ŝ_{t+1} = W_K s_t`` ``(B, T, D)`` after ``K = len(lrs)`` GD steps on the mesa objective at every
    position ``t``, from ``W_0 = 0`` with step sizes ``η_1 … η_K``.

    With ``A_t = Σ_{j≤t} s_{j−1} s_{j−1}ᵀ`` and ``C_t = Σ_{j≤t} s_j s_{j−1}ᵀ`` (unnormalised, ``s_0 = 0``) each step is
    ``W ← W + η_k (C_t − W A_t)``. With one step size ``η`` throughout, ``W_K`` is ``C_t`` times the first ``K``
    terms of the Neumann series of ``A_t⁻¹`` (the chapter's exercise ``neumann_weights`` writes them out): ``K`` steps
    precondition the one-step update with a truncated inverse, and ``K → ∞`` (with ``η < 2/λ_max``) reaches least
    squares. ``K = 1`` is
    :func:`~icl_course.solvers.causal_gd_predict`.

    ``normalize=True`` divides every step at position ``t`` by ``λ_max(A_t)``, the largest eigenvalue of the keys'
    Gram matrix: a GD that knows the scale of its own objective, which grows with ``t``. Unnormalised sums, as causal
    linear attention computes them, cannot do that division.

    Parameters
    ----------
    states : (B, T, D) ``s_1 … s_T``
    lrs : (K,) step sizes (a differentiable tensor is fine)
    normalize : divide the steps at each position by ``λ_max(A_t)``
    """
    _checks.tensor("states", states, 3, "(B, T, D)")
    A, C = _grams(states)
    W = torch.zeros_like(C)
    for eta in _steps(lrs, states, A, normalize):
        W = W + eta * (C - W @ A)
    return (W @ states[..., None])[..., 0]


def gd_steps_query(states: torch.Tensor, lrs: torch.Tensor | list[float], *, normalize: bool = False) -> torch.Tensor:
    """The preconditioned query ``q_K(A_t) s_t`` ``(B, T, D)`` of :func:`gd_steps_predict` — ``W_K s_t = C_t q_K(A_t)
    s_t`` — built by ``z ← (I − η_k A_t) z + η_k s_t`` from ``z = 0``. As ``K`` grows (stable steps) it tends to
    ``A_t⁻¹ s_t``: what K steps of GD hold of the preconditioned input :func:`preconditioned_input`."""
    _checks.tensor("states", states, 3, "(B, T, D)")
    A, _ = _grams(states)
    z = torch.zeros_like(states)
    for eta in _steps(lrs, states, A, normalize):
        z = z - eta[..., 0] * (A @ z[..., None])[..., 0] + eta[..., 0] * states
    return z


def constructed_gd2_model(lr1: float, lr2: float, dim: int = DYNAMICS.dim,
                          dtype: torch.dtype = torch.float32) -> CausalStack:
    """Two causal linear-attention layers that take two GD steps (``η_1``, ``η_2``) on the mesa objective exactly.

    ``W_2 = C_t q_2(A_t)`` with ``q_2(a) = (η_1 + η_2)(1 − γ a)``, ``γ = η_1 η_2 / (η_1 + η_2)``: layer 1 rewrites the
    *query* copy of ``s_t`` (slot 3 of ``(0, s_t, s_t, s_{t−1})``) into ``(I − γ A_t) s_t`` — keys and values
    ``s_{j−1}`` from slot 4, ``j ≤ t``, so it stays causal — and layer 2 is the one-step layer with step
    ``η_1 + η_2``, queries from that slot, keys ``s_{j−1}`` and values ``s_j``. Each further layer can apply one more
    real root of ``1 − a q_K(a)`` to the query in the same way."""
    D = _checks.positive_int("dim", dim)
    eta = float(lr1) + float(lr2)
    if not eta > 0:
        raise ValueError(f"lr1 + lr2 must be positive, got {lr1} and {lr2}")
    gamma = float(lr1) * float(lr2) / eta

    def slot(i: int) -> torch.Tensor:  # (D, 4D): reads slot i
        return torch.eye(D, 4 * D, dtype=dtype).roll(i * D, dims=1)

    precondition = CausalSelfAttention.from_matrices(slot(2), slot(3), slot(3), -gamma * slot(2).T.contiguous())
    step = CausalSelfAttention.from_matrices(slot(2), slot(3), slot(1), eta * slot(0).T.contiguous())
    return CausalStack([precondition, step])


class FittedSteps(NamedTuple):
    """The step sizes of :func:`fit_gd_steps` and the mean loss they reach on the batch they were fitted on."""

    lrs: torch.Tensor
    loss: float


def _spectral(batch: tasks.DynamicsBatch, normalize: bool = False) -> tuple[torch.Tensor, ...]:
    """Per sequence and position, what the loss of any ``K``-step GD depends on, in float64: the eigenvalues ``a``
    of ``A_t``, ``u = Uᵀ s_t``, ``G = MᵀM`` and ``h = Mᵀ s_{t+1}`` with ``M = C_t U``, and ``‖s_{t+1}‖²``."""
    states, targets = batch.inputs.double(), batch.targets.double()
    A, C = _grams(states)
    a, U = torch.linalg.eigh(A)  # (B, T, D), (B, T, D, D)
    if normalize:  # steps η_k / λ_max(A_t): the polynomial sees the eigenvalues a / λ_max and C_t / λ_max
        top = a[..., -1:]
        scale = torch.where(top > 0, 1 / top.clamp_min(torch.finfo(a.dtype).tiny), torch.zeros_like(top))
        a, C = a * scale, C * scale[..., None]
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


def fit_gd_steps(batch: tasks.DynamicsBatch, n_steps: int, *, normalize: bool = False, lo: float | None = None,
                 hi: float | None = None, iters: int = 100) -> FittedSteps:
    """The ``n_steps`` step sizes of :func:`gd_steps_predict` that minimise the mean per-position loss on ``batch``
    (L-BFGS in float64): the best ``K``-step GD from ``W_0 = 0``, one step size per step.

    The start is spread over ``[lo, hi]``: the loss is symmetric in the step sizes (``W_K = C_t q(A_t)`` with
    ``1 − a q(a) = Π_k (1 − η_k a)``), so equal starting values would stay equal. Distinct steps make ``q`` any
    polynomial of degree ``K − 1`` with real roots of ``1 − a q(a)`` — the best polynomial preconditioner, as in
    Chebyshev acceleration. The loss is evaluated in the eigenbasis of every ``A_t`` (:func:`_spectral`), ``O(D²)``
    per position and step size instead of ``O(D³)``; a test checks it against :func:`gd_steps_predict`.

    ``normalize``: the steps of ``gd_steps_predict(..., normalize=True)``, relative to ``λ_max(A_t)`` (start spread
    over ``[0.2, 2]`` instead of ``[0.005, 0.06]``).

    Step sizes fitted on one batch can blow up on another: a large step is safe only up to the largest eigenvalue
    of ``A_t`` it was fitted on. Fit on the batch you score on for an upper bound on what ``K``-step GD can do.
    """
    n_steps = _checks.positive_int("n_steps", n_steps)
    spec = _spectral(batch, normalize)
    lo = lo if lo is not None else (0.2 if normalize else 0.005)
    hi = hi if hi is not None else (2.0 if normalize else 0.06)
    start = torch.linspace(lo, hi, n_steps, dtype=torch.float64) if n_steps > 1 else torch.tensor([(lo + hi) / 2])
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


def gd_query_probe(train_batch: tasks.DynamicsBatch, test_batch: tasks.DynamicsBatch, lrs: torch.Tensor, *,
                   lam: float = 1e-3, threshold: float = 3.0, normalize: bool = False) -> torch.Tensor:
    """The reference level for :func:`probe_scores`' preconditioned-input probe: held-out R² ``(T,)`` of a probe that
    reads the constructed token *and* ``K``-step GD's own preconditioned query :func:`gd_steps_query` — how much of
    ``(A_t + λI)⁻¹ s_t`` ``K`` steps of GD hold. Same sequences, inliers and protocol as :func:`probe_scores`."""
    data = []
    for b in (train_batch, test_batch):
        s = b.inputs.double()
        pre = preconditioned_input(s, lam)
        keep = inlier_sequences(pre, threshold)
        x = torch.cat([tasks.mesa_tokens(s), gd_steps_query(s, lrs, normalize=normalize)], dim=-1)
        data.append((x[keep], pre[keep]))
    return probe_r2(data[0][0], data[0][1], data[1][0], data[1][1])


# ------------------------------------------------------------------------------------- claim value
class DeepVsRevAlg(NamedTuple):
    """The trained ``L``-layer model against its RevAlg-d: mean losses, the largest loss along the interpolation
    path, and the mean and the smallest fraction of a head's product energy on block diagonals."""

    trained: float
    revalg: float
    path_max: float
    structure_mean: float
    structure_min: float


def deep_vs_revalg(model: CausalStack, batch: tasks.DynamicsBatch, alphas: torch.Tensor | list[float],
                   dim: int = DYNAMICS.dim) -> DeepVsRevAlg:
    """The claim value: :func:`interpolation_path` at ``alphas`` (which must start at 0 and end at 1)."""
    path = interpolation_path(model, batch, alphas, dim)
    structure = product_structure(model, dim)
    return DeepVsRevAlg(float(path[0]), float(path[-1]), float(path.max()), float(structure.mean()),
                        float(structure.min()))


class DepthVsSteps(NamedTuple):
    """Mean losses of trained ``L``-layer models, of ``K``-step GD with ``K`` fitted step sizes shared by every
    position (``gd``) and with those steps divided at each position by ``λ_max(A_t)`` (``gd_normalized``) — dicts
    keyed by ``L`` and ``K`` —, and ridge (``λ = 10⁻³``, pairs ``j ≤ t``)."""

    trained: dict[int, float]
    gd: dict[int, float]
    gd_normalized: dict[int, float]
    ridge: float


def depth_vs_steps(trained_curves: dict[int, torch.Tensor], gd_curves: dict[int, torch.Tensor],
                   gd_normalized_curves: dict[int, torch.Tensor], ridge_curve: torch.Tensor) -> DepthVsSteps:
    """The claim value from per-position loss curves."""
    def mean(curves: dict[int, torch.Tensor]) -> dict[int, float]:
        return {k: float(c.double().mean()) for k, c in curves.items()}

    return DepthVsSteps(mean(trained_curves), mean(gd_curves), mean(gd_normalized_curves),
                        float(ridge_curve.double().mean()))
