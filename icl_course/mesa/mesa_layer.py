"""The mesa layer: causal ridge regression inside a self-attention layer, recurrent and parallel.

For every time step ``t`` the layer fits ``W_t = argmin_W ½ Σ_{t'≤t} ||v_{t'} − W k_{t'}||² + (λ/2) ||W||²`` on
the keys and values seen so far (``t' = t`` included) and applies it to the query:

    out_t = W_t q_t = (Σ_{t'≤t} v_{t'} k_{t'}ᵀ)(Σ_{t'≤t} k_{t'} k_{t'}ᵀ + λI)⁻¹ q_t.

Rows are tokens: ``q, k (B, H, T, dk)``, ``v (B, H, T, dv)``. ``λ`` is the ridge λ itself; the official code
(``src/mesa.py``) starts its inverse at ``lambda_s · I`` and so learns ``lambda_s = 1/λ``.

Two ways to compute it. *Recurrent*: carry ``R_t = (Σ_{t'≤t} k kᵀ + λI)⁻¹`` with the Sherman–Morrison update,
``O(T dk²)`` per head, and backpropagate with a hand-derived adjoint that recomputes ``R_t`` from checkpoints
kept every ``⌈√T⌉`` steps, so only ``O(√T dk²)`` inverse state is stored per head. *Solve*: build all ``T``
Gram matrices at once and Cholesky-solve them in one batched call (parallel over ``t``, ``O(T dk²)`` memory).

The chapter's experiments follow the layer: the hand-built layer that is ridge regression on the pairs ``j ≤ t``,
the M5 exactness and float32-drift measurements, a trained one-layer model (:data:`MESA`) and the equal-budget race
against deeper linear and softmax stacks (:data:`DEPTH`), with the claim values the notebook and
:mod:`icl_course.claims.mesa` share (M4, M4a, M5, M9).

References
----------
von Oswald et al. (2023), "Uncovering mesa-optimization algorithms in Transformers" (the mesa layer); official code
``src/mesa.py``. Part IV, chapter "The mesa layer" (``book/part4_mesa_layer.ipynb``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .. import _checks, metrics, runtime, solvers, tasks, train
from ..causal import CausalSelfAttention, CausalStack
from ._common import (
    DYNAMICS,
    MesaVsDepth,
    MesaVsRidge,
    mesa_vs_depth,
    mesa_vs_ridge,
    model_predictions,
)
from ._mesa_attention import (
    _METHODS,
    MesaLayer,
    _check_qkv,
    _positive_finite,
    mesa_attention,
    sherman_morrison_downdate,
    sherman_morrison_update,
)
from ._mesa_model import MESA, MesaSettings, _train, new_mesa_model, train_mesa

__all__ = ["mesa_attention", "sherman_morrison_update", "sherman_morrison_downdate", "downdate_drift", "MesaLayer",
           "constructed_mesa_layer", "constructed_mesa_error", "MesaExactness", "mesa_exactness", "DriftLesson",
           "drift_lesson", "float32_drift", "MesaSettings", "MESA", "DepthSettings", "DEPTH", "new_mesa_model",
           "new_attention_model", "train_mesa", "train_depth_comparison", "effective_ridge", "MesaVsRidge",
           "MesaVsDepth", "mesa_vs_ridge", "mesa_vs_depth"]


# ------------------------------------------------------------------------------- the float32 lesson
def downdate_drift(k: torch.Tensor, lam: float) -> torch.Tensor:
    """Relative error ``||R̂_0 − R_0||_F / ||R_0||_F`` of ``R_0 = I/λ`` rebuilt by downdating from ``R_T``.

    Runs :func:`sherman_morrison_update` over ``k (B, T, d)`` to ``R_T``, then :func:`sherman_morrison_downdate`
    back over the same keys, in ``k``'s dtype. Returns one error per sequence, ``(B,)``.

    Measured here (``benchmarks/bench_mesa.py``), ``T = 256``, ``d = 32``, ``λ = 1e-3``, median of 8 sequences:
    with ``k ~ N(0, I/d)`` ``2.2e-10`` in float64 but ``13 %`` in float32; with ``k ~ N(0, I)`` ``2.3e-7`` and
    ``120 %``. The error grows with ``||k||² / λ``. That is why the memory-light backward of
    :func:`mesa_attention` recomputes forward from checkpoints instead.

    References
    ----------
    The official code's memory-light backward (``src/mesa.py``, ``compute_custom_mesa_layer`` and its
    ``compute_mesa_custom_bwd``, used unless ``standard_backprop_mesa``); Part IV, "The mesa layer".
    """
    _checks.tensor("k", k, 3, "(B, T, d)")
    lam = _positive_finite("lam", lam)
    B, T, d = k.shape
    R0 = torch.eye(d, dtype=k.dtype, device=k.device).expand(B, d, d) / lam  # (B, d, d)
    R = R0
    for t in range(T):
        R = sherman_morrison_update(R, k[:, t])
    for t in reversed(range(T)):
        R = sherman_morrison_downdate(R, k[:, t])
    return torch.linalg.matrix_norm(R - R0) / torch.linalg.matrix_norm(R0)  # (B,)


class DriftLesson(NamedTuple):
    """Float32 round-off of two ways to run the backward pass, on one set of queries, keys and values at one ridge λ:
    ``R_0 = I/λ`` rebuilt by Sherman–Morrison downdates (:func:`downdate_drift`; median over sequences in float64 and
    float32, and the worst sequence in float32), and the float32 gradients of :func:`mesa_attention` with respect to
    ``q, k, v`` against float64 autograd through the solve: the recurrent path (recomputed from checkpoints) and the
    batched solve."""

    downdate_float64: float
    downdate_float32: float
    downdate_float32_max: float
    recompute_float32: float
    solve_float32: float


def float32_drift(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lam: float, *, seed: int = 0) -> DriftLesson:
    """Measure :class:`DriftLesson` for one head, ``q, k (B, 1, T, dk)``, ``v (B, 1, T, dv)`` (any float dtype; run in
    float64 and float32), with a random output gradient from ``seed``."""
    q, k, v = (x.detach().double() for x in (q, k, v))
    _check_qkv(q, k, v)
    drift = [downdate_drift(k[:, 0].to(dt), lam) for dt in (torch.float64, torch.float32)]
    g = torch.randn(v.shape, generator=runtime.generator(seed), dtype=torch.float64)

    def grads(dtype: torch.dtype, method: str) -> list[torch.Tensor]:
        x = [t.to(dtype).requires_grad_() for t in (q, k, v)]
        return [a.double() for a in torch.autograd.grad(mesa_attention(*x, lam, method), x, g.to(dtype))]

    ref = grads(torch.float64, "solve")
    err = [max(metrics.relative_error(a, b) for a, b in zip(grads(torch.float32, m), ref)) for m in _METHODS]
    return DriftLesson(float(drift[0].median()), float(drift[1].median()), float(drift[1].max()), err[0], err[1])


def drift_lesson(seed: int = 0, n_seqs: int = 4, T: int = 256, d: int = 32, lam: float = 1e-3) -> DriftLesson:
    """:func:`float32_drift` on synthetic inputs ``q, k, v ~ N(0, I/d)`` (``‖k‖² ≈ 1``, so ``λ = 1e-3`` is far below
    it; a fraction of a CPU-second).

    References
    ----------
    The official code's backward by Sherman–Morrison in reverse (``src/mesa.py``, ``compute_mesa_custom_bwd``);
    Part IV, "The mesa layer".
    """
    gen = runtime.generator(seed)
    q, k, v = (torch.randn(n_seqs, 1, T, d, generator=gen, dtype=torch.float64) / d**0.5 for _ in range(3))
    return float32_drift(q, k, v, lam, seed=seed + 1)


# ------------------------------------------------------------------------- the chapter's constructions
def constructed_mesa_layer(dim: int, lam: float, dtype: torch.dtype = torch.float64,
                           method: str = "recurrent") -> CausalStack:
    """The hand-built mesa layer that computes ridge regression on the pairs seen so far at every position.

    On tokens ``(0, s_t, s_t, s_{t−1})``: keys (the regression inputs) read ``s_{t−1}`` (slot 3), values (the
    targets) and queries read ``s_t`` (slot 2), ``P`` writes into the zero slot, so token ``t`` receives
    ``(Σ_{j≤t} s_j s_{j−1}ᵀ)(Σ_{j≤t} s_{j−1} s_{j−1}ᵀ + λI)⁻¹ s_t`` =
    :func:`~icl_course.solvers.causal_ridge_predict` with ``pairs="j<=t"``, to round-off. The same queries, keys and
    values make a causal linear-attention layer take one GD step (``constructed_causal_lsa``); the inverse is the
    whole difference.

    References
    ----------
    von Oswald et al. (2023) (the mesa layer's ridge solution on the constructed tokens);
    Part IV, "The mesa layer" (claim M4a).
    """
    D = _checks.positive_int("dim", dim)
    slot = lambda i: torch.eye(D, 4 * D, dtype=dtype).roll(i * D, dims=1)  # (D, 4D): reads slot i
    return CausalStack([MesaLayer.from_matrices(slot(2), slot(3), slot(2), slot(0).T.contiguous(), lam,
                                                method=method)])


def constructed_mesa_error(*, seed: int = 0, n_seqs: int = 16, lam: float = 1e-3, method: str = "recurrent",
                           dtype: torch.dtype = torch.float64) -> float:
    """Relative error of :func:`constructed_mesa_layer` against ridge on the pairs ``j ≤ t`` (float64 by default)."""
    b = tasks.sample_linear_dynamics(n_seqs, DYNAMICS.seq_len, DYNAMICS.dim, generator=runtime.generator(seed),
                                     dtype=dtype)
    got = model_predictions(constructed_mesa_layer(DYNAMICS.dim, lam, dtype, method), b)
    return metrics.relative_error(got, solvers.causal_ridge_predict(b.inputs, lam, "j<=t"))


class MesaExactness(NamedTuple):
    """M5: largest float64 relative differences, recurrent vs solve (``forward``) and the memory-light gradient vs
    autograd through the solve (``gradient``, for ``q, k, v`` and ``λ``), over two shapes and
    ``λ / mean‖k‖² ∈ {1e-2, 1, 100}``."""

    forward: float
    gradient: float


def mesa_exactness(seed: int = 0) -> MesaExactness:
    """Measure :class:`MesaExactness` on random float64 inputs (two shapes, three λ each).

    References
    ----------
    von Oswald et al. (2023); Sherman and Morrison (1950); Part IV, "The mesa layer" (claim M5).
    """
    gen, fwd, grad = runtime.generator(seed), 0.0, 0.0
    for B, H, T, dk, dv in ((4, 1, 50, 10, 10), (2, 3, 37, 6, 4)):
        q, k, v = (torch.randn(B, H, T, d, generator=gen, dtype=torch.float64).requires_grad_() for d in (dk, dk, dv))
        g = torch.randn(B, H, T, dv, generator=gen, dtype=torch.float64)
        for lam_rel in (1e-2, 1.0, 100.0):
            lam = torch.full((H,), lam_rel * float(k.detach().pow(2).sum(-1).mean()), dtype=torch.float64,
                             requires_grad=True)
            outs = [mesa_attention(q, k, v, lam, method=m) for m in _METHODS]
            fwd = max(fwd, metrics.relative_error(outs[0].detach(), outs[1].detach()))
            grads = [torch.autograd.grad(o, (q, k, v, lam), g) for o in outs]
            grad = max([grad] + [metrics.relative_error(a, b) for a, b in zip(*grads)])
    return MesaExactness(fwd, grad)


# ----------------------------------------------------------------------------------- trained mesa layers
@dataclass(frozen=True)
class DepthSettings:
    """The equal-budget comparison: a mesa layer and attention-only causal linear and softmax stacks of each depth in
    ``depths`` (``n_heads`` heads of size ``key_size``), all on the same tokens and the very same batches, with
    :data:`MESA`'s optimiser and initialisation, ``steps`` updates of ``batch_size`` sequences (``None``: as
    :data:`MESA`), the official activation clip at ``±activation_clip`` after every layer, and a training-time
    evaluation on ``eval_size`` sequences."""

    depths: tuple[int, ...] = (1, 2, 4)
    attentions: tuple[str, ...] = ("linear", "softmax")
    n_heads: int = 2
    key_size: int = 10
    steps: int | None = None
    batch_size: int | None = 32
    activation_clip: float | None = 1.5
    eval_size: int = 500


DEPTH = runtime.Scales(cpu=DepthSettings(steps=1000),
                       paper=DepthSettings(depths=(1, 2, 4, 6), n_heads=4, key_size=20, batch_size=None,
                                           eval_size=2000))
"""``cpu``: 1, 2 and 4 layers of 2 heads of size 10 — each layer already holds twice the mesa layer's 1,601
parameters — for 1,000 updates of 32 sequences (a third of :data:`MESA`'s updates, to fit the chapter's CPU budget:
the seven models take about 75 CPU-seconds). Deep linear attention is a high-degree polynomial of its input and,
without the official ``±1.5`` activation clip, blows up on outlier sequences (seen here: a 4-layer stack at 3·10⁵ on
the evaluation set); the clip is on for all seven models. The stacks are attention-only (no MLP, LayerNorm or
positional encoding; the official full model has these as options). ``paper``: up to six linear layers, 4 heads of
size 20 (the official defaults), :data:`MESA`'s paper optimiser, steps and batch."""


def new_attention_model(attention: str, n_layers: int, settings: DepthSettings = DEPTH.cpu, *, seed: int = 0,
                        init_std: float = MESA.cpu.init_std, dim: int = DYNAMICS.dim,
                        activation_clip: float | None = None) -> CausalStack:
    """A freshly initialised stack of ``n_layers`` causal ``attention`` layers (``"linear"`` or ``"softmax"``)."""
    gen = runtime.generator(seed)
    layers = [CausalSelfAttention(4 * dim, settings.n_heads, settings.key_size, attention=attention,
                                  init_std=init_std, generator=gen) for _ in range(_checks.positive_int("n_layers",
                                                                                                    n_layers))]
    return CausalStack(layers, clip=activation_clip)


def train_depth_comparison(*, seed: int = 0, scale: str = "cpu", steps: int | None = None,
                           device: str | torch.device | None = None,
                           progress: bool | None = None) -> dict[str, train.TrainedRun]:
    """Train the mesa layer and every stack of :data:`DEPTH` on one budget: same optimiser, batch size, number of
    updates (``steps`` overrides) and the very same batches (stream ``seed + 1``). Keys ``"mesa layer"``,
    ``"linear, 1 layer"``, ``"linear, 2 layers"``, … About 75 CPU-seconds on one thread for the ``cpu`` scale.

    References
    ----------
    von Oswald et al. (2023) (one mesa layer against deeper linear attention); Part IV, "The mesa
    layer" (claim M9).
    """
    dcfg = DEPTH.pick(scale)
    cfg = dataclasses.replace(MESA.pick(scale), activation_clip=dcfg.activation_clip)
    cfg = dataclasses.replace(cfg, steps=steps or dcfg.steps or cfg.steps, batch_size=dcfg.batch_size or cfg.batch_size)
    models = {"mesa layer": new_mesa_model(cfg, seed=seed)}
    for attention in dcfg.attentions:
        for n in dcfg.depths:
            models[f"{attention}, {n} layer{'s' * (n > 1)}"] = new_attention_model(
                attention, n, dcfg, seed=seed, init_std=cfg.init_std, activation_clip=cfg.activation_clip)
    return {name: _train(model, cfg, seed=seed, steps=None, eval_size=dcfg.eval_size, device=device,
                         progress=progress, desc=f"{name} seed {seed}") for name, model in models.items()}


def effective_ridge(layer: MesaLayer, dim: int = DYNAMICS.dim) -> float:
    """A one-head layer's ridge in the units of the states: ``λ · tr((AᵀA)⁻¹) / D`` with ``A`` the part of ``W_K`` that
    reads ``s_{t−1}`` (keys ``k = A s_{t−1}`` turn ``Σ k kᵀ + λI`` into ``A(Σ s sᵀ + λ(AᵀA)⁻¹)Aᵀ``)."""
    if layer.n_heads != 1:
        raise ValueError(f"layer must have one head, got n_heads={layer.n_heads}")
    A = layer.matrices()["W_K"][:, 3 * dim:4 * dim].double()  # (dk, D): keys from the s_{t−1} slot
    return float(layer.lam.detach().double()[0] * torch.linalg.inv(A.T @ A).diagonal().mean())
