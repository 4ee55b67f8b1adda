"""What Part IV's chapters share: the sequence setting, its read-out and loss, the data stream, one training recipe.

Every model of Part IV maps the constructed tokens ``E (B, T, 4D)`` of :func:`~icl_course.tasks.mesa_tokens` to
tokens of the same shape; its prediction of ``s_{t+1}`` is the first ``D`` entries of output token ``t`` (the zero
slot: positive sign, residual included). The loss is ``½ Σ_d (ŝ − s)²`` averaged over sequences and over all ``T``
positions (the official ``_compute_loss``; position 1, where nothing can be known yet, is included).

References
----------
von Oswald et al. (2023) and the official ``src/train.py`` / ``configs/config.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .. import _checks, runtime, tasks, train
from ..causal import CausalSelfAttention, CausalStack


@dataclass(frozen=True)
class DynamicsSettings:
    """The linear-dynamics setting of the official code: ``D = 10``, ``T = 50``, ``σ = 0.01``, ``s_1 ~ U(−1, 1)^D``,
    Haar-random orthogonal ``W`` per sequence; the zero predictor's loss is ``½ D/3 ≈ 1.667``."""

    dim: int = 10
    seq_len: int = 50
    noise_std: float = 0.01


DYNAMICS = DynamicsSettings()


def readout_next(E_out: torch.Tensor, dim: int) -> torch.Tensor:
    """The prediction ``ŝ_{t+1}`` at every position: the first ``dim`` entries of each output token, ``(B, T, D)``."""
    _checks.tensor("E_out", E_out, 3, "(B, T, 4D)")
    if E_out.shape[2] < _checks.positive_int("dim", dim):
        raise ValueError(f"E_out must have at least dim={dim} entries per token, got {tuple(E_out.shape)}")
    return E_out[..., :dim]


def per_step_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``½ Σ_d (ŝ_{t+1} − s_{t+1})²`` averaged over sequences: one value per position, ``(T,)``."""
    _checks.tensor("pred", pred, 3, "(B, T, D)")
    _checks.tensor("target", target, 3, "(B, T, D)")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape "
                         "(B, T, D)")
    return 0.5 * (pred - target).pow(2).sum(-1).mean(0)


def sequence_loss(model: Callable[[torch.Tensor], torch.Tensor],
                  batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The training loss of ``batch = (tokens (B, T, 4D), targets (B, T, D))``: :func:`per_step_loss` averaged."""
    tokens, targets = batch
    return per_step_loss(readout_next(model(tokens), targets.shape[-1]), targets).mean()


Tokenizer = Callable[[torch.Tensor], torch.Tensor]
"""A token layout: states ``(B, T, D)`` → the model's input tokens ``(B, T, ·)`` (constructed or raw)."""


def _tokenizer(tokens: Tokenizer | None, masked: bool) -> Tokenizer:
    if tokens is not None and masked:
        raise ValueError("pass either tokens= or masked=True (a masked constructed layout), not both")
    return tokens if tokens is not None else (lambda states: tasks.mesa_tokens(states, masked=masked))


View = Callable[[tasks.DynamicsBatch, torch.Generator], tasks.DynamicsBatch]
"""What a model is shown of a batch of sequences: ``(batch, generator) -> batch`` (e.g. partial observations
``o_t = C s_t`` in place of the states, ``C`` drawn from ``generator``); its ``states`` become inputs and targets."""


def dynamics_stream(batch_size: int, *, seed: int, masked: bool = False, settings: DynamicsSettings = DYNAMICS,
                    tokens: Tokenizer | None = None, device: str | torch.device | None = None,
                    view: View | None = None, **task_kw):
    """``step -> (tokens, targets)``: fresh sequences at every step from one seeded generator (``task_kw`` passed to
    :func:`~icl_course.tasks.sample_linear_dynamics`, e.g. ``kind="contracting"``), seen through ``view`` (default:
    the states themselves), laid out by ``tokens`` (default: the constructed tokens of
    :func:`~icl_course.tasks.mesa_tokens`, masked if ``masked``)."""
    gen, layout = runtime.generator(seed, device), _tokenizer(tokens, masked)

    def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = tasks.sample_linear_dynamics(batch_size, settings.seq_len, settings.dim, noise_std=settings.noise_std,
                                         generator=gen, device=device, **task_kw)
        b = b if view is None else view(b, gen)
        return layout(b.inputs), b.targets

    return batches


def dynamics_eval_set(n_seqs: int, *, seed: int, settings: DynamicsSettings = DYNAMICS,
                      dtype: torch.dtype = torch.float32, device: str | torch.device | None = None,
                      view: View | None = None, **task_kw) -> tasks.DynamicsBatch:
    """A fixed evaluation set of sequences drawn from its own ``seed`` (``task_kw`` passed to
    :func:`~icl_course.tasks.sample_linear_dynamics`), seen through ``view`` if given."""
    gen = runtime.generator(seed, device)
    b = tasks.sample_linear_dynamics(n_seqs, settings.seq_len, settings.dim, noise_std=settings.noise_std,
                                     generator=gen, dtype=dtype, device=device, **task_kw)
    return b if view is None else view(b, gen)


def model_predictions(model: Callable[[torch.Tensor], torch.Tensor], batch: tasks.DynamicsBatch, *,
                      masked: bool = False, tokens: Tokenizer | None = None) -> torch.Tensor:
    """The model's ``ŝ_{t+1}`` ``(B, T, D)`` on an evaluation set (no gradient), its inputs laid out by ``tokens``
    (default: the constructed tokens)."""
    with torch.no_grad():
        return readout_next(model(_tokenizer(tokens, masked)(batch.inputs)), batch.states.shape[-1])


def train_sequence_model(model: torch.nn.Module, *, seed: int, steps: int, batch_size: int, lr: float,
                         clip: float | None, masked: bool = False, eval_size: int, eval_every: int = 100,
                         tokens: Tokenizer | None = None, task_kw: dict | None = None, view: View | None = None,
                         weight_decay: float = 0.0, lr_schedule: Callable[[int], float] | None = None,
                         device: str | torch.device | None = None, progress: bool | None = None,
                         desc: str = "sequence model") -> train.TrainedRun:
    """Train a sequence model on fresh linear-dynamics sequences: Adam (AdamW with ``weight_decay``) after an
    element-wise gradient clip at ``clip`` (the official mesa code's ``optax.clip``). ``tokens`` lays the states out
    (default: the constructed tokens, masked if ``masked``); every Part IV model trains through this one function.
    ``task_kw`` goes to :func:`~icl_course.tasks.sample_linear_dynamics` (e.g. ``{"kind": "contracting"}``) and
    ``view`` maps each batch to what the model sees and predicts (e.g. partial observations), for the training stream
    and the evaluation set alike.

    Seeds: the caller seeds the initial weights; the training stream is ``seed + 1``, the evaluation set
    ``seed + 2``. The run's ``eval_set`` is the :class:`~icl_course.tasks.DynamicsBatch`.
    """
    model = model.to(device) if device is not None else model
    kw = dict(task_kw or {})
    ev = dynamics_eval_set(eval_size, seed=seed + 2, device=device, view=view, **kw)
    batches = dynamics_stream(batch_size, seed=seed + 1, masked=masked, tokens=tokens, device=device, view=view, **kw)
    return train.train_run(model, sequence_loss, batches, steps, eval_set=ev,
                           eval_batch=(_tokenizer(tokens, masked)(ev.inputs), ev.targets), lr=lr,
                           betas=(0.9, 0.999), clip=clip, clip_mode="value", weight_decay=weight_decay,
                           lr_schedule=lr_schedule, eval_every=eval_every, progress=progress, desc=desc)


def curve_gap(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(relative gap of the means ``mean a / mean b − 1``, largest absolute gap over positions) of two loss curves."""
    return float(a.mean() / b.mean() - 1), float((a - b).abs().max())


# ---------------------------------------------------------------- reading algorithms off weight products
def head_products(layer: CausalSelfAttention) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per head ``h``: ``(W_{K,h}ᵀ W_{Q,h}, W_{O,h} W_{V,h})``, both ``(D, D)`` (detached) — all the forward pass uses.

    The score of key token ``j`` for query token ``t`` is ``e_jᵀ (W_Kᵀ W_Q) e_t``; the value it adds is
    ``(W_O W_V) e_j``.
    """
    m, k = layer.matrices(), layer.key_size
    rows = lambda W, h: W[h * k:(h + 1) * k]  # (k, D): head h's rows
    return [(rows(m["W_K"], h).T @ rows(m["W_Q"], h), m["W_O"][:, h * k:(h + 1) * k] @ rows(m["W_V"], h))
            for h in range(layer.n_heads)]


def block_means(M: torch.Tensor, dim: int) -> torch.Tensor:
    """The mean of the diagonal of every ``dim × dim`` block of ``M (S·dim, S·dim)``: ``(S, S)``."""
    _checks.tensor("M", M, 2, "(S·dim, S·dim)")
    S = M.shape[0] // _checks.positive_int("dim", dim)
    if M.shape != (S * dim, S * dim):
        raise ValueError(f"M must have shape (S·dim, S·dim) for dim={dim}, got {tuple(M.shape)}")
    blocks = M.reshape(S, dim, S, dim).permute(0, 2, 1, 3)  # (S, S, dim, dim)
    return torch.diagonal(blocks, dim1=-2, dim2=-1).mean(-1)


def structured_layer(layer: CausalSelfAttention, dim: int) -> CausalSelfAttention:
    """The reverse-engineered algorithm: every ``dim × dim`` block of every head's two products replaced by the mean
    of its diagonal times ``I`` (the official ``TFSubdiagonals``: the trained layer keeps almost nothing else).

    Per head, query token ``t`` and key token ``j`` interact only through dot products of whole slots
    (``s_t·s_{j−1}``, …), and the value is a scalar mix of the key token's slots.
    """
    eye = torch.eye(dim, dtype=layer.W_Q.weight.dtype, device=layer.W_Q.weight.device)
    expand = lambda means: torch.kron(means, eye)  # (S, S) -> (S·dim, S·dim)
    qs, vs = zip(*((expand(block_means(kq, dim)), expand(block_means(pv, dim))) for kq, pv in head_products(layer)))
    D = qs[0].shape[0]
    I = torch.eye(D, dtype=eye.dtype, device=eye.device)
    return CausalSelfAttention.from_matrices(torch.cat(qs), torch.cat([I] * len(qs)), torch.cat(vs),
                                             torch.cat([I] * len(qs), dim=1), n_heads=len(qs))


def revalg_model(model: CausalStack, dim: int) -> CausalStack:
    """``model`` with every layer replaced by its :func:`structured_layer` (same input mask and activation clip)."""
    return CausalStack([structured_layer(layer, dim) for layer in model.layers], masked_dims=model.masked_dims,
                       clip=model.clip)


def block_diagonal_energy(M: torch.Tensor, dim: int) -> float:
    """The fraction of ``‖M‖²_F`` on the diagonals of its ``dim × dim`` blocks (1 for block-scaled identities);
    ``M`` is ``(R·dim, C·dim)``."""
    _checks.tensor("M", M, 2, "(R·dim, C·dim)")
    R, C = M.shape[0] // dim, M.shape[1] // dim
    if M.shape != (R * dim, C * dim):
        raise ValueError(f"M must have shape (R·dim, C·dim) for dim={dim}, got {tuple(M.shape)}")
    blocks = M.reshape(R, dim, C, dim).permute(0, 2, 1, 3)  # (R, C, dim, dim)
    return float((torch.diagonal(blocks, dim1=-2, dim2=-1) ** 2).sum() / (M**2).sum())


# ---------------------------------------------------------------------------------------------- probes
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


# ------------------------------------------------------------------------- claim values (M4, M9)
class MesaVsRidge(NamedTuple):
    """M4: mean loss over positions of the trained mesa layer and of ridge (λ = 1e-3, pairs ``j ≤ t``) on the same
    sequences, and the mesa layer's largest per-position loss for ``t ≥ 15``."""

    mesa: float
    ridge: float
    worst_late: float


class MesaVsDepth(NamedTuple):
    """M9: mean loss of the mesa layer and of the best linear and best softmax stack at the same training budget."""

    mesa: float
    best_linear: float
    best_softmax: float


def mesa_vs_ridge(curves: dict[str, torch.Tensor], mesa: str = "mesa layer", ridge: str = "ridge, pairs j ≤ t",
                  first_late: int = 15) -> MesaVsRidge:
    """:class:`MesaVsRidge` from per-position loss curves ``(T,)`` (position ``t`` is index ``t − 1``)."""
    return MesaVsRidge(float(curves[mesa].mean()), float(curves[ridge].mean()),
                       float(curves[mesa][first_late - 1:].max()))


def mesa_vs_depth(curves: dict[str, torch.Tensor], mesa: str = "mesa layer") -> MesaVsDepth:
    """:class:`MesaVsDepth` from per-position loss curves keyed like ``mesa.train_depth_comparison``'s runs."""
    best = lambda kind: min(float(c.mean()) for name, c in curves.items() if name.startswith(kind))
    return MesaVsDepth(float(curves[mesa].mean()), best("linear"), best("softmax"))
