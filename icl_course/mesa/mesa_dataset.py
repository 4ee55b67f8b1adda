"""Raw tokens: a first softmax layer builds the mesa objective's training set by copying the previous state next to
the current one, and the layer after it descends on the pairs.

The constructed tokens ``(0, s_t, s_t, s_{t−1})`` of the previous chapters hand every token its regression pair. A
model trained on the raw sequence sees only ``(0, s_t, 0, 0)`` and a positional code ``p_t`` (:func:`raw_tokens`); to
run GD on ``L_t`` it must first bring ``s_{t−1}`` into token ``t``. :func:`constructed_copy_model` does it by hand —
a softmax head that attends from position ``t`` to ``t − 1`` with inverse temperature ``β``, then the one-step GD
layer of chapter "Causal linear attention is one GD step" — and becomes exactly GD-1 as ``β → ∞``;
:func:`train_raw_model` trains the same two-layer shape from scratch, :func:`previous_token_weight` and
:func:`copy_probe` measure whether its first layer learned the copy.

References
----------
von Oswald et al. (2023), "Uncovering mesa-optimization algorithms in Transformers" (models trained on raw tokens
with a softmax first layer; official ``hybrid_first_block`` with positional codes in queries and keys);
von Oswald et al. (2022), Proposition 3, and Olsson et al. (2022) (the previous-token head). Part IV, chapter
"Building the training set: a softmax layer copies the previous token" (``book/part4_mesa_dataset.ipynb``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .. import _checks, metrics, runtime, solvers, tasks, train
from ..causal import CausalSelfAttention, CausalStack
from ._common import DYNAMICS, model_predictions, probe_r2, train_sequence_model

__all__ = ["positional_codes", "raw_tokens", "RawSettings", "RAW", "new_raw_model", "raw_predictions",
           "train_raw_model", "constructed_copy_model", "copy_construction_error", "previous_token_weight",
           "copy_probe", "CopyEvidence", "copy_evidence", "RawVsConstructed", "raw_vs_constructed"]


def positional_codes(T: int, dim: int = 16, *, base: float = 100.0, dtype: torch.dtype = torch.float32,
                     device: str | torch.device | None = None) -> torch.Tensor:
    """Sinusoidal position codes ``(T, dim)``: ``sin(t ω_f)`` and ``cos(t ω_f)`` for ``dim / 2`` frequencies ``ω_f``
    from 1 down to ``1/base``. A rotation maps the code of ``t`` to that of ``t − 1``, so a query–key product of codes
    can single out the previous position."""
    T, dim = _checks.positive_int("T", T), _checks.positive_int("dim", dim)
    if dim % 2:
        raise ValueError(f"dim must be even (sine and cosine per frequency), got {dim}")
    pos = torch.arange(T, dtype=dtype, device=device)[:, None]
    freq = torch.exp(-math.log(base) * torch.arange(dim // 2, dtype=dtype, device=device) / (dim // 2))
    return torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1)


def _shift_rotation(dim: int, base: float = 100.0) -> torch.Tensor:
    """``(dim, dim)`` float64 ``R`` with ``R p_t = p_{t+1}`` for :func:`positional_codes`: a rotation by ``ω_f`` of
    every (sine, cosine) pair, by the angle-addition formulas."""
    n = dim // 2
    w = torch.exp(-math.log(base) * torch.arange(n, dtype=torch.float64) / n)
    c, s = torch.diag(torch.cos(w)), torch.diag(torch.sin(w))
    return torch.cat([torch.cat([c, s], dim=1), torch.cat([-s, c], dim=1)], dim=0)


def raw_tokens(states: torch.Tensor, pe_dim: int = 16) -> torch.Tensor:
    """The raw tokens ``(0, s_t, 0, 0, p_t)`` ``(B, T, 4D + pe_dim)`` for ``states (B, T, D)``: the state in the slot
    the constructed tokens keep it in, empty slots for the prediction and for a copied state, and a positional code
    (:func:`positional_codes`). The prediction of ``s_{t+1}`` is read from the first slot, as before."""
    _checks.tensor("states", states, 3, "(B, T, D)")
    B, T, D = states.shape
    z = torch.zeros_like(states)
    pe = positional_codes(T, pe_dim, dtype=states.dtype, device=states.device).expand(B, T, pe_dim)
    return torch.cat([z, states, z, z, pe], dim=-1)


@dataclass(frozen=True)
class RawSettings:
    """The raw-token experiment: a causal softmax layer then a causal linear layer (``n_heads`` heads of size
    ``key_size`` each) on :func:`raw_tokens` with ``pe_dim`` position dimensions, the official activation clip at
    ``±activation_clip`` after every layer; the softmax layer starts at ``N(0, softmax_init_std²)`` (a softmax layer
    at the official 2e-4 would start exactly uniform and learn slowly), the linear one at ``N(0, init_std²)``; Adam
    at peak ``lr`` after an element-wise gradient clip at ``clip``, warm-up over ``warmup`` steps and cosine decay to
    ``final_lr``; ``steps`` updates of ``batch_size`` sequences."""

    pe_dim: int = 16
    n_heads: int = 2
    key_size: int = 20
    activation_clip: float | None = 1.5
    softmax_init_std: float = 0.02
    init_std: float = 2e-4
    batch_size: int = 32
    steps: int = 2500
    lr: float = 1e-3
    clip: float = 1.0
    weight_decay: float = 0.0
    warmup: int = 75
    final_lr: float = 1e-5
    eval_size: int = 1000


RAW = runtime.Scales(
    cpu=RawSettings(),
    paper=RawSettings(n_heads=4, key_size=40, batch_size=256, steps=20_000, lr=3e-4, weight_decay=0.05,
                      warmup=1000, eval_size=10_000),
)
"""``cpu``: 2 heads of size 20 per layer, 2,500 Adam steps of 32 sequences (about 35 CPU-seconds per model on one
thread; after 1,500 steps the softmax-first model is still on its way, 0.93–0.98 on seeds 0–2 against 0.77–0.80
after 2,500); ``paper``: the official shape and optimiser."""


def new_raw_model(first: str = "softmax", settings: RawSettings = RAW.cpu, *, seed: int = 0,
                  dim: int = DYNAMICS.dim) -> CausalStack:
    """A freshly initialised two-layer model on :func:`raw_tokens`: a ``first`` (``"softmax"`` or ``"linear"``)
    attention layer, then a linear one."""
    if first not in ("softmax", "linear"):
        raise ValueError(f"first must be 'softmax' or 'linear', got {first!r}")
    gen = runtime.generator(seed)
    width = 4 * dim + settings.pe_dim
    std = settings.softmax_init_std if first == "softmax" else settings.init_std
    layers = [CausalSelfAttention(width, settings.n_heads, settings.key_size, attention=first, init_std=std,
                                  generator=gen),
              CausalSelfAttention(width, settings.n_heads, settings.key_size, attention="linear",
                                  init_std=settings.init_std, generator=gen)]
    return CausalStack(layers, clip=settings.activation_clip)


def raw_predictions(model: torch.nn.Module, batch: tasks.DynamicsBatch, pe_dim: int = 16) -> torch.Tensor:
    """A raw-token model's ``ŝ_{t+1}`` ``(B, T, D)`` on an evaluation set (no gradient)."""
    return model_predictions(model, batch, tokens=functools.partial(raw_tokens, pe_dim=pe_dim))


def train_raw_model(first: str = "softmax", *, seed: int = 0, scale: str = "cpu", steps: int | None = None,
                    device: str | torch.device | None = None, progress: bool | None = None) -> train.TrainedRun:
    """Train :func:`new_raw_model` on raw tokens through the chapters' one recipe
    (:func:`~icl_course.mesa.train_sequence_model`): weights from ``seed``, training stream ``seed + 1``, evaluation
    set ``seed + 2`` — the very sequences the constructed-token models of the previous chapters see."""
    cfg = RAW.pick(scale)
    n = steps or cfg.steps
    schedule = train.warmup_cosine(cfg.warmup, n, cfg.final_lr / cfg.lr) if cfg.warmup else None
    return train_sequence_model(new_raw_model(first, cfg, seed=seed), seed=seed, steps=n, batch_size=cfg.batch_size,
                                lr=cfg.lr, clip=cfg.clip, eval_size=cfg.eval_size,
                                tokens=functools.partial(raw_tokens, pe_dim=cfg.pe_dim),
                                weight_decay=cfg.weight_decay, lr_schedule=schedule, device=device,
                                progress=progress, desc=f"raw tokens, {first} first, seed {seed}")


# ------------------------------------------------------------------------------------- the construction
def constructed_copy_model(lr: float, beta: float, *, dim: int = DYNAMICS.dim, pe_dim: int = 16,
                           dtype: torch.dtype = torch.float32) -> CausalStack:
    """Copy, then descend, by hand: layer 1 is one softmax head whose query–key score of positions ``t`` and ``j`` is
    ``β p_tᵀ p_{j+1}`` — largest at ``j = t − 1`` — and whose value moves the state slot of the attended token into
    the empty third slot; layer 2 is the one-step GD layer on the pairs ``(slot 3, slot 2)`` at step size ``lr``. As
    ``β → ∞`` token ``t`` holds ``(0, s_t, s_{t−1}, 0)`` after layer 1 (``s_0 = 0``: position 1 has no predecessor
    and attends to itself, whose copy the GD layer then weighs by ``s_1·s_1``; see :func:`copy_construction_error`)
    and the model is GD-1 on the mesa objective."""
    D, P = _checks.positive_int("dim", dim), _checks.positive_int("pe_dim", pe_dim)
    beta = _checks.positive_float("beta", beta)
    W = 4 * D + P
    if P % 2:
        raise ValueError(f"pe_dim must be even, got {P}")
    R = _shift_rotation(P)  # R p_t = p_{t+1}: a rotation per frequency
    k = max(P, D)  # head size: room for the position code in queries and keys and for the state in the value
    W_Q = torch.zeros(k, W, dtype=torch.float64)
    W_Q[:P, 4 * D:] = beta * math.sqrt(k) * torch.eye(P, dtype=torch.float64)  # softmax divides scores by √k
    W_K = torch.zeros(k, W, dtype=torch.float64)
    W_K[:P, 4 * D:] = R  # k_j = p_{j+1}
    W_V = torch.zeros(k, W, dtype=torch.float64)
    W_V[:D, D:2 * D] = torch.eye(D, dtype=torch.float64)  # v_j = s_j
    W_O = torch.zeros(W, k, dtype=torch.float64)
    W_O[2 * D:3 * D, :D] = torch.eye(D, dtype=torch.float64)  # into slot 3
    copy = CausalSelfAttention.from_matrices(W_Q.to(dtype), W_K.to(dtype), W_V.to(dtype), W_O.to(dtype),
                                             attention="softmax")
    # GD layer: query s_t (slot 2), key s_{t-1} (slot 3), value s_t (slot 2), written into slot 1 times lr
    sel = lambda slot: torch.eye(W, dtype=torch.float64)[slot * D:(slot + 1) * D]  # (D, W)
    G_O = torch.zeros(W, D, dtype=torch.float64)
    G_O[:D] = float(lr) * torch.eye(D, dtype=torch.float64)
    gd = CausalSelfAttention.from_matrices(sel(1).to(dtype), sel(2).to(dtype), sel(1).to(dtype), G_O.to(dtype))
    return CausalStack([copy, gd])


def copy_construction_error(beta: float, *, seed: int = 0, lr: float = 0.03, n_seqs: int = 16) -> float:
    """Relative error of :func:`constructed_copy_model` at inverse temperature ``beta`` against GD-1 at ``lr`` on the
    pairs ``(s_{j−1}, s_j)``, ``j = 2 … t`` (float64): the pair ``j = 1`` differs, since the model copies ``s_1``
    itself where GD pairs ``s_1`` with ``s_0 = 0`` — the comparison drops it from both."""
    b = tasks.sample_linear_dynamics(n_seqs, DYNAMICS.seq_len, DYNAMICS.dim, generator=runtime.generator(seed),
                                     dtype=torch.float64)
    model = constructed_copy_model(lr, beta, dtype=torch.float64)
    pred = raw_predictions(model, b)
    s = b.inputs
    first = s[:, :1]  # the model's extra term: lr (s_1·s_t) s_1 from position 1 attending to itself
    extra = lr * (s @ first.transpose(1, 2)) * first  # (B, T, D)
    return metrics.relative_error(pred - extra, solvers.causal_gd_predict(s, lr))


# ----------------------------------------------------------------------------------- did it learn to copy?
def previous_token_weight(model: CausalStack, batch: tasks.DynamicsBatch, pe_dim: int = 16) -> torch.Tensor:
    """``(H, T)``: the mean over sequences of the attention weight the first (softmax) layer's head ``h`` puts on
    the previous token ``t − 1`` at position ``t`` (0 at the first position, which has none)."""
    layer = model.layers[0]
    if not isinstance(layer, CausalSelfAttention) or layer.attention != "softmax":
        raise TypeError("model's first layer must be a softmax CausalSelfAttention")
    with torch.no_grad():
        A = layer.scores(raw_tokens(batch.inputs, pe_dim).to(layer.W_Q.weight.dtype))  # (B, H, T, T)
    prev = torch.diagonal(A, offset=-1, dim1=-2, dim2=-1).mean(0)  # (H, T − 1): weight of t on t − 1
    return torch.cat([torch.zeros_like(prev[:, :1]), prev], dim=1)


def copy_probe(model: CausalStack, train_batch: tasks.DynamicsBatch, test_batch: tasks.DynamicsBatch,
               pe_dim: int = 16) -> torch.Tensor:
    """Held-out R² ``(2, T)`` of linear probes for the previous state ``s_{t−1}`` (``s_0 = 0``) at the input and after
    the first layer (:func:`~icl_course.mesa.probe_r2`): can a linear read-out of token ``t``'s four state slots
    recover ``s_{t−1}``? (The position code is left out: at a fixed position it is the same in every sequence, and
    its small layer-made variations would only let a per-position probe over-fit.)"""
    acts, prevs = [], []
    for b in (train_batch, test_batch):
        E = raw_tokens(b.inputs, pe_dim)
        width = E.shape[-1] - pe_dim
        with torch.no_grad():
            acts.append((E[..., :width], model(E, n_layers=1)[..., :width]))
        prevs.append(solvers.causal_pairs(b.inputs)[0])
    r2 = torch.stack([probe_r2(acts[0][i], prevs[0], acts[1][i], prevs[1]) for i in (0, 1)])
    r2[:, 0] = 0.0  # s_0 = 0 at every first position: nothing to explain
    return r2


class CopyEvidence(NamedTuple):
    """Whether the first layer copies: the largest mean weight any head puts on ``t − 1`` (positions ``t ≥ 2``)
    against the ``1/t`` of uniform attention, and the probe R² of ``s_{t−1}`` (mean over positions ``t ≥ 2``) at the
    input and after layer 1."""

    prev_weight: float
    uniform_weight: float
    probe_input: float
    probe_layer1: float


def copy_evidence(weights: torch.Tensor, probe: torch.Tensor) -> CopyEvidence:
    """The claim value from :func:`previous_token_weight` ``(H, T)`` and :func:`copy_probe` ``(2, T)``."""
    T = weights.shape[1]
    uniform = float((1.0 / torch.arange(2, T + 1, dtype=torch.float64)).mean())
    return CopyEvidence(float(weights[:, 1:].mean(1).max()), uniform, float(probe[0, 1:].mean()),
                        float(probe[1, 1:].mean()))


class RawVsConstructed(NamedTuple):
    """Mean losses: the softmax-first and the linear-first model on raw tokens, GD-1 at its best step on the
    constructed pairs, the same with its prediction clipped at the models' ``±1.5`` activation clip (at the step best
    for it), and the zero predictor."""

    softmax_first: float
    linear_first: float
    gd: float
    gd_clipped: float
    zero: float


def raw_vs_constructed(softmax_curve: torch.Tensor, linear_curve: torch.Tensor, gd_curve: torch.Tensor,
                       clipped_gd_curve: torch.Tensor, zero_curve: torch.Tensor) -> RawVsConstructed:
    """The claim value from per-position loss curves ``(T,)``."""
    curves = (softmax_curve, linear_curve, gd_curve, clipped_gd_curve, zero_curve)
    return RawVsConstructed(*(float(c.double().mean()) for c in curves))
