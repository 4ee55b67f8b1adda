"""Part IV, chapter "One family: linear attention, the delta rule, the mesa layer": fast-weight layers that keep a
matrix state ``S_t`` and read out ``S_t q_t``, each state an (approximate) minimiser of the in-context objective
``L_t(S) = ½ Σ_{j≤t} ‖v_j − S k_j‖² (+ λ/2 ‖S‖²)``.

- linear attention: ``S_t = S_{t−1} + η v_t k_tᵀ`` (one GD step from 0 on ``L_t``; ``solvers.causal_gd_predict``);
- the delta rule: ``S_t = S_{t−1} + β_t (v_t − S_{t−1} k_t) k_tᵀ`` (one GD step per token on the newest pair;
  ``solvers.causal_delta_predict``, and :func:`delta_attention` for attention heads);
- the gated delta rule: ``S_t = α S_{t−1}(I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ`` (:func:`causal_gated_delta_predict`),
  the same step after shrinking the memory: an algorithm for the *discounted* objective (older terms weighed down);
- the mesa layer: the exact ridge minimiser (``solvers.causal_ridge_predict``), or ``k`` conjugate-gradient steps
  towards it (:func:`causal_cg_ridge_predict`).

Also: the family on the task without training (:func:`family_curves`, :func:`cg_sweep`, :func:`switching_dynamics`),
one trained DeltaNet-style layer (:class:`DeltaLayer`), and the claim values M14–M17.

References
----------
Schlag et al. (2021); Yang et al. (2024) (DeltaNet, its parallel form); Yang, Kautz and Hatamizadeh (2025) (Gated
DeltaNet); von Oswald et al. (2023) (the mesa layer), (2025) (MesaNet). Part IV, ``book/part4_family.ipynb``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import _checks, metrics, runtime, solvers, tasks, train
from ..causal import CausalSelfAttention, CausalStack
from ._common import DYNAMICS, model_predictions, per_step_loss, train_sequence_model

__all__ = ["delta_attention", "causal_gated_delta_predict", "causal_cg_ridge_predict", "cg_path", "normalized_beta",
           "DeltaLayer", "constructed_delta_layer", "new_delta_model", "train_delta_layer", "FAMILY_LAM", "CG_STEPS",
           "GATE_ALPHAS", "GATE_BETAS", "delta_beta_line_search", "gated_delta_grid", "FamilyFit", "family_curves",
           "CGSweep", "cg_sweep", "switching_dynamics", "FamilyExactness", "family_exactness", "FamilyOrdering",
           "family_ordering", "CGConditioning", "cg_conditioning", "DeltaVsLinear", "delta_vs_linear"]

FAMILY_LAM = 1e-3
"""The ridge λ of the exact solution and of the conjugate-gradient solves (the official least-squares baseline's)."""
CG_STEPS = (1, 2, 4, 8)
"""The numbers of conjugate-gradient steps the chapter compares."""
GATE_ALPHAS, GATE_BETAS = (0.9, 0.95, 0.98, 1.0), (0.5, 0.75, 1.0, 1.25)
"""The grid of the gated delta rule: gates α and (normalised) write strengths β."""


# ------------------------------------------------------------------------------------ the rules on attention heads
def delta_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                    alpha: float = 1.0) -> torch.Tensor:
    """Outputs ``o_t = S_t q_t`` ``(B, H, T, dv)`` of the gated delta rule, computed in parallel over ``t``.

    ``S_t = α S_{t−1}(I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ`` from ``S_0 = 0``; ``α = 1`` is the delta rule (DeltaNet).
    The state is never formed: ``S_t = Σ_{i≤t} α^{t−i} u_i k_iᵀ`` with the "pseudo-values"
    ``u_t = β_t (v_t − Σ_{i<t} α^{t−i} (k_i·k_t) u_i)``, i.e. ``(I + diag(β) tril(Γ ⊙ K Kᵀ, −1)) U = diag(β) V`` with
    ``Γ_{ti} = α^{t−i}`` — one unit-lower-triangular solve — and then ``o = tril(Γ ⊙ Q Kᵀ) U``, causal linear attention
    with values ``U``.

    Parameters
    ----------
    q, k : (B, H, T, dk)
    v : (B, H, T, dv)
    beta : (B, H, T) the write strengths ``β_t``
    alpha : float in (0, 1], the forgetting gate (constant here; data-dependent in Gated DeltaNet)

    References
    ----------
    Yang et al. (2024), the UT/WY form of DeltaNet (here over the whole sequence, one chunk); Yang, Kautz and
    Hatamizadeh (2025) for the gate.
    """
    _checks.tensor("q", q, 4, "(B, H, T, dk)")
    _checks.tensor("k", k, 4, "(B, H, T, dk)")
    _checks.tensor("v", v, 4, "(B, H, T, dv)")
    if k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"q, k (B, H, T, dk) and v (B, H, T, dv) must agree, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    _checks.tensor("beta", beta, 3, "(B, H, T)")
    if beta.shape != q.shape[:3]:
        raise ValueError(f"beta must have shape (B, H, T) = {tuple(q.shape[:3])}, got {tuple(beta.shape)}")
    if not 0 < float(alpha) <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    T = q.shape[2]
    qk, kk = q @ k.transpose(-2, -1), k @ k.transpose(-2, -1)  # (B, H, T, T): q_t·k_i and k_t·k_i
    if float(alpha) == 1.0:  # Γ is the causal mask
        qk, kk = qk.tril(), kk.tril(-1)
    else:
        idx = torch.arange(T, device=q.device)
        lags = (idx[:, None] - idx[None, :]).clamp_min(0).to(q.dtype)  # (T, T): t − i
        decay = torch.full_like(lags, float(alpha)).pow(lags).tril()  # Γ_{ti} = α^{t−i} for i ≤ t, 0 above
        qk, kk = decay * qk, decay.tril(-1) * kk
    M = torch.eye(T, dtype=q.dtype, device=q.device) + beta[..., None] * kk  # (B, H, T, T), unit lower triangular
    U = torch.linalg.solve_triangular(M, beta[..., None] * v, upper=False, unitriangular=True)  # (B, H, T, dv)
    return qk @ U  # o_t = Σ_{i≤t} α^{t−i} (k_i·q_t) u_i


def normalized_beta(states: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token steps ``β_t = β / ‖s_{t−1}‖²`` ``(B, T)`` (0 where ``s_{t−1} = 0``): the delta rule with this step
    behaves as with unit-length keys — stable for every ``β ∈ (0, 2)``, and ``β = 1`` fits the newest pair exactly."""
    prev, _ = solvers.causal_pairs(states)
    sq = prev.pow(2).sum(-1)  # (B, T)
    return torch.where(sq > 0, float(beta) / sq.clamp_min(torch.finfo(sq.dtype).tiny), torch.zeros_like(sq))


def causal_gated_delta_predict(states: torch.Tensor, alpha: float, beta: float | torch.Tensor) -> torch.Tensor:
    """Predictions ``ŝ_{t+1} = S_t s_t`` ``(B, T, D)`` of the gated delta rule on the pairs ``(s_{j−1}, s_j)``.

    ``S_t = α S_{t−1}(I − β_t s_{t−1} s_{t−1}ᵀ) + β_t s_t s_{t−1}ᵀ`` from ``S_0 = 0`` (keys ``s_{t−1}``, values ``s_t``,
    query ``s_t``); ``alpha = 1`` is :func:`~icl_course.solvers.causal_delta_predict`. ``beta``: a float or per-token
    ``(B, T)`` (e.g. :func:`normalized_beta`). Yang, Kautz and Hatamizadeh (2025), "Gated Delta Networks".
    """
    prev, cur = solvers.causal_pairs(states)
    B, T, _ = states.shape
    if isinstance(beta, torch.Tensor):
        _checks.tensor("beta", beta, 2, "(B, T)")
        if tuple(beta.shape) != (B, T):
            raise ValueError(f"beta must be a float or have shape (B, T) = ({B}, {T}), got {tuple(beta.shape)}")
        b = beta.to(states)
    else:
        b = states.new_full((B, T), _checks.positive_float("beta", beta, allow_zero=True))
    return delta_attention(states[:, None], prev[:, None], cur[:, None], b[:, None], alpha)[:, 0]  # (B, T, D)


def causal_cg_ridge_predict(states: torch.Tensor, lam: float, steps: int, start: str = "zero") -> torch.Tensor:
    """Predictions ``(B, T, D)`` of the mesa layer with its solve replaced by ``steps`` conjugate-gradient steps.

    At every position ``ŝ_{t+1} = C_t z_t`` with ``C_t = Σ_{j≤t} s_j s_{j−1}ᵀ`` and ``z_t`` the CG iterate for
    ``(A_t + λI) z = s_t``, ``A_t = Σ_{j≤t} s_{j−1} s_{j−1}ᵀ``, from ``z = 0`` or (``start="jacobi"``, as MesaNet's
    decoding kernel in flash-linear-attention) from ``s_t / diag(A_t + λI)``. Exact in exact arithmetic with
    ``steps = D`` (:func:`~icl_course.solvers.causal_ridge_predict`), and from 0 already at every position
    ``t ≤ steps``: ``s_0 = 0``, so ``A_t + λI`` is ``λI`` plus rank ``≤ t − 1``, with at most ``t`` distinct
    eigenvalues. ``k`` steps minimise ``‖z − z*‖`` in the ``(A_t + λI)``-norm over a Krylov space of dimension ``k``,
    which need not make the prediction better. Hestenes and Stiefel (1952); von Oswald et al. (2025), "MesaNet".
    """
    steps = _checks.positive_int("steps", steps)
    return cg_path(states, lam, (steps,), start)[steps]


def cg_path(states: torch.Tensor, lam: float, steps: tuple[int, ...], start: str = "zero") -> dict[int, torch.Tensor]:
    """:func:`causal_cg_ridge_predict` for every ``k`` in ``steps`` from one CG run (the iterates are nested)."""
    _checks.tensor("states", states, 3, "(B, T, D)")
    lam = _checks.positive_float("lam", lam)
    keep = {_checks.positive_int("steps", k) for k in steps}
    if start not in ("zero", "jacobi"):
        raise ValueError(f"start must be 'zero' or 'jacobi', got {start!r}")
    prev, cur = solvers.causal_pairs(states)
    eye = torch.eye(states.shape[-1], dtype=states.dtype, device=states.device)
    A = torch.cumsum(prev[..., :, None] * prev[..., None, :], dim=1) + lam * eye  # (B, T, D, D)
    C = torch.cumsum(cur[..., :, None] * prev[..., None, :], dim=1)  # (B, T, D, D)
    dot = lambda a, b: (a * b).sum(-1, keepdim=True)  # (B, T, 1)
    safe = lambda num, den: torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), 0 * num)
    z = torch.zeros_like(states) if start == "zero" else states / A.diagonal(dim1=-2, dim2=-1)  # z_0: 0 or Jacobi
    r = states - (A @ z[..., None])[..., 0]
    p, rr, out = r.clone(), dot(r, r), {}
    for k in range(1, max(keep) + 1):
        Ap = (A @ p[..., None])[..., 0]
        a = safe(rr, dot(p, Ap))  # exact line search along p
        z, r = z + a * p, r - a * Ap
        rr_new = dot(r, r)
        p, rr = r + safe(rr_new, rr) * p, rr_new  # the next direction, (A + λI)-conjugate to the previous ones
        if k in keep:
            out[k] = (C @ z[..., None])[..., 0]  # (B, T, D)
    return out


# --------------------------------------------------------------------------------------------------- the layer
class DeltaLayer(CausalSelfAttention):
    """Multi-head DeltaNet-style self-attention with a residual: ``e_t ← e_t + W_O concat_h S_{h,t} q_{h,t}``.

    The queries, keys, values and ``W_O`` of :class:`~icl_course.causal.CausalSelfAttention` (same layout,
    ``from_matrices``, ``matrices()``, ``heads()``), a write strength per head ``β_{h,t} = sigmoid(w_{β,h}·e_t +
    b_{β,h})`` (``W_beta``, starting at 1/2) and the state ``S_{h,t} = S_{h,t−1} + β_{h,t} (v_t − S_{h,t−1} k_t)
    k_tᵀ`` (:func:`delta_attention`). With ``normalize=True`` queries and keys are scaled to unit length, as in
    DeltaNet: then with ``β ∈ (0, 1)`` every step ``I − β k kᵀ`` is non-expansive (eigenvalue ``1 − β`` along ``k``, 1
    across it). With rows as tokens and one head, ``E_out = E + delta_attention(E W_Qᵀ, E W_Kᵀ, E W_Vᵀ, β) W_Oᵀ``;
    the inherited ``scores()`` weigh the pseudo-values ``u`` of :func:`delta_attention`, not the values. Schlag et
    al. (2021); Yang et al. (2024) (DeltaNet: sigmoid β, L2-normalised queries and keys).
    """

    def __init__(self, dim: int, n_heads: int = 1, key_size: int | None = None, *, attention: str = "linear",
                 normalize: bool = True, init_std: float = 2e-4, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32, device: str | torch.device | None = None) -> None:
        if attention != "linear":
            raise ValueError(f"a DeltaLayer's attention is 'linear' (over the pseudo-values), got {attention!r}")
        super().__init__(dim, n_heads, key_size, init_std=init_std, generator=generator, dtype=dtype, device=device)
        self.normalize = bool(normalize)
        self.W_beta = nn.Linear(dim, self.n_heads, bias=True, dtype=dtype, device=device)  # β = sigmoid(W_β e + b)
        with torch.no_grad():
            self.W_beta.weight.copy_(torch.randn(self.n_heads, dim, generator=generator, dtype=dtype).mul(init_std))
            self.W_beta.bias.zero_()

    @classmethod
    def from_matrices(cls, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor, W_O: torch.Tensor, *,
                      n_heads: int = 1, attention: str = "linear", beta: float = 0.5,
                      normalize: bool = False) -> DeltaLayer:
        """A layer with exactly these matrices (checked as in ``CausalSelfAttention.from_matrices``), a constant
        write strength ``beta`` in (0, 1) (``W_β = 0``, bias ``logit(β)``) and no normalisation unless asked."""
        if not 0 < float(beta) < 1:
            raise ValueError(f"beta must be in (0, 1) (it is a sigmoid), got {beta!r}")
        layer = super().from_matrices(W_Q, W_K, W_V, W_O, n_heads=n_heads, attention=attention)
        layer.normalize = bool(normalize)
        with torch.no_grad():
            layer.W_beta.bias.fill_(math.log(beta / (1 - beta)))
        return layer  # type: ignore[return-value]

    def beta(self, E: torch.Tensor) -> torch.Tensor:
        """The write strengths ``β_{h,t}`` ``(B, H, T)`` of tokens ``E (B, T, D)``."""
        return torch.sigmoid(self.W_beta(E)).transpose(1, 2)

    def forward(self, E: torch.Tensor) -> torch.Tensor:
        """``E (B, T, D)`` → ``E + update`` ``(B, T, D)``."""
        q, k, v = self.heads(E)  # (B, H, T, k) each
        if self.normalize:
            q, k = F.normalize(q, dim=-1, eps=1e-6), F.normalize(k, dim=-1, eps=1e-6)
        out = delta_attention(q, k, v, self.beta(E))  # (B, H, T, k)
        B, T = E.shape[:2]
        return E + self.W_O(out.transpose(1, 2).reshape(B, T, -1))  # (B, T, D)


def constructed_delta_layer(dim: int, beta: float, dtype: torch.dtype = torch.float64) -> CausalStack:
    """The hand-built delta-rule layer on tokens ``(0, s_t, s_t, s_{t−1})``: queries and values read ``s_t``, keys
    ``s_{t−1}``, ``W_O`` writes into the zero slot, constant ``β``, no normalisation — so token ``t`` receives
    :func:`~icl_course.solvers.causal_delta_predict`'s ``S_t s_t``. The same maps make linear attention one GD step
    (``constructed_causal_lsa``) and the mesa layer ridge regression (``constructed_mesa_layer``)."""
    D = _checks.positive_int("dim", dim)
    slot = lambda i: torch.eye(D, 4 * D, dtype=dtype).roll(i * D, dims=1)  # (D, 4D): reads slot i
    return CausalStack([DeltaLayer.from_matrices(slot(2), slot(3), slot(2), slot(0).T.contiguous(), beta=beta)])


def new_delta_model(settings, *, seed: int = 0, dim: int = DYNAMICS.dim, normalize: bool = True) -> CausalStack:
    """A freshly initialised one-:class:`DeltaLayer` model with the heads, key size, initialisation, input mask and
    activation clip of ``settings`` (a ``mesa.OneLayerSettings``, e.g. ``mesa.ONE_LAYER.cpu``)."""
    layer = DeltaLayer(4 * dim, settings.n_heads, settings.key_size, normalize=normalize, init_std=settings.init_std,
                       generator=runtime.generator(seed))
    return CausalStack([layer], masked_dims=2 * dim if settings.masked else 0, clip=settings.activation_clip)


def train_delta_layer(settings, *, seed: int = 0, steps: int | None = None, eval_size: int | None = None,
                      normalize: bool = True, device: str | torch.device | None = None,
                      progress: bool | None = None) -> train.TrainedRun:
    """Train one :class:`DeltaLayer` on the budget ``settings`` describes — pass ``mesa.ONE_LAYER.pick(scale)`` for
    the one-layer linear-attention experiment's: same heads and key size, tokens, initialisation, optimiser,
    schedule, number of updates and the very same batches (weights ``seed``, stream ``seed + 1``, evaluation set
    ``seed + 2``). About twice the CPU time of the linear layer. Yang et al. (2024) (DeltaNet); Part IV, M16.
    """
    n = steps or settings.steps
    schedule = train.warmup_cosine(settings.warmup, n, settings.final_lr / settings.lr) if settings.warmup else None
    model = new_delta_model(settings, seed=seed, normalize=normalize)
    return train_sequence_model(model, seed=seed, steps=n, batch_size=settings.batch_size, lr=settings.lr,
                                clip=settings.clip, masked=settings.masked,
                                eval_size=eval_size or settings.eval_size, weight_decay=settings.weight_decay,
                                lr_schedule=schedule, device=device, progress=progress, desc=f"delta layer seed {seed}")


# ------------------------------------------------------------------------------------ the family on the task
def _mean_loss(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float(per_step_loss(pred, target).mean())


def delta_beta_line_search(batch: tasks.DynamicsBatch, normalized: bool = False) -> tuple[float, float]:
    """The single ``β`` that minimises the delta rule's mean loss on ``batch`` (float64): ``(β*, loss)``.

    ``normalized=False``: raw keys, searched in ``[0, 2 / max ‖s‖²]``, where every step of every sequence of the
    batch is stable (larger β can blow up a sequence whose states are long); ``normalized=True``: per-token steps
    :func:`normalized_beta`, searched in ``[0, 2]``.
    """
    s, y = batch.inputs.double(), batch.targets.double()
    step = (lambda b: normalized_beta(s, b)) if normalized else (lambda b: b)
    loss = lambda b: _mean_loss(solvers.causal_delta_predict(s, step(b)), y)
    beta = solvers.line_search(loss, 0.0, 2.0 if normalized else 2.0 / float(s.pow(2).sum(-1).max()), tol=1e-4)
    return beta, loss(beta)


def gated_delta_grid(batch: tasks.DynamicsBatch, alphas: tuple[float, ...] = GATE_ALPHAS,
                     betas: tuple[float, ...] = GATE_BETAS) -> tuple[float, float, torch.Tensor]:
    """The gated delta rule with normalised steps (:func:`normalized_beta`) on a grid: ``(α*, β*, means)`` with
    ``means (len(alphas), len(betas))`` the mean losses (float64)."""
    s, y = batch.inputs.double(), batch.targets.double()
    means = torch.tensor([[_mean_loss(causal_gated_delta_predict(s, a, normalized_beta(s, b)), y) for b in betas]
                          for a in alphas], dtype=torch.float64)
    i, j = divmod(int(means.argmin()), len(betas))
    return alphas[i], betas[j], means


class FamilyFit(NamedTuple):
    """The family on one evaluation set: per-position losses ``(T,)`` by name, each rule's mean loss per sequence
    ``(B,)`` by name, the fitted step sizes and gates (``eta``, ``beta``, ``beta_normalized``, ``alpha_gated``,
    ``beta_gated``) and the gated rule's mean losses on the grid ``(len(GATE_ALPHAS), len(GATE_BETAS))``."""

    curves: dict[str, torch.Tensor]
    per_sequence: dict[str, torch.Tensor]
    params: dict[str, float]
    gated: torch.Tensor


def family_curves(batch: tasks.DynamicsBatch, eta: float, lam: float = FAMILY_LAM,
                  cg_steps: tuple[int, ...] = CG_STEPS) -> FamilyFit:
    """Every rule of the chapter on ``batch`` (float64), its step sizes fitted on the same batch: the zero predictor,
    GD-1 at ``eta`` (linear attention), the delta rule with raw and normalised keys at their best β, the gated delta
    rule at its best (α, β) on :func:`gated_delta_grid`, ``k`` CG steps for ``k`` in ``cg_steps`` and ridge (``lam``,
    pairs ``j ≤ t``). A few CPU-seconds for 2,000 sequences."""
    s, y = batch.inputs.double(), batch.targets.double()
    beta, _ = delta_beta_line_search(batch)
    beta_n, _ = delta_beta_line_search(batch, normalized=True)
    alpha_g, beta_g, grid = gated_delta_grid(batch)
    preds = {"zero predictor": torch.zeros_like(y), "GD-1 (η*)": solvers.causal_gd_predict(s, eta),
             "delta rule (β*)": solvers.causal_delta_predict(s, beta),
             "delta rule, normalised keys": solvers.causal_delta_predict(s, normalized_beta(s, beta_n)),
             "gated delta rule": causal_gated_delta_predict(s, alpha_g, normalized_beta(s, beta_g))}
    preds |= {f"CG-{k}": p for k, p in cg_path(s, lam, cg_steps).items()}
    preds["ridge, pairs j ≤ t"] = solvers.causal_ridge_predict(s, lam, "j<=t")
    per_seq = {name: 0.5 * (p - y).pow(2).sum(-1).mean(-1) for name, p in preds.items()}  # (B,)
    params = {"eta": float(eta), "beta": beta, "beta_normalized": beta_n, "alpha_gated": alpha_g,
              "beta_gated": beta_g}
    return FamilyFit({name: per_step_loss(p, y) for name, p in preds.items()}, per_seq, params, grid)


class CGSweep(NamedTuple):
    """Mean losses of ``k`` CG steps ``means (len(lams), len(steps))``, of the exact ridge solution ``exact``
    ``(len(lams),)``, and the relative error of the predictions of ``D`` CG steps against it ``full_error``."""

    lams: tuple[float, ...]
    steps: tuple[int, ...]
    means: torch.Tensor
    exact: torch.Tensor
    full_error: torch.Tensor


def cg_sweep(batch: tasks.DynamicsBatch, lams: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0),
             steps: tuple[int, ...] = (1, 2, 4, 8)) -> CGSweep:
    """How many CG steps the mesa layer's solve needs, for several ridges λ (float64)."""
    s, y = batch.inputs.double(), batch.targets.double()
    D = s.shape[-1]
    means, exact, full = [], [], []
    for lam in lams:
        ridge, path = solvers.causal_ridge_predict(s, lam, "j<=t"), cg_path(s, lam, (*steps, D))
        means.append([_mean_loss(path[k], y) for k in steps])
        exact.append(_mean_loss(ridge, y))
        full.append(metrics.relative_error(path[D], ridge))
    as_t = lambda x: torch.tensor(x, dtype=torch.float64)
    return CGSweep(tuple(lams), tuple(steps), as_t(means), as_t(exact), as_t(full))


def switching_dynamics(n_seqs: int, *, seed: int, switch: int = 25, settings=DYNAMICS,
                       dtype: torch.dtype = torch.float64) -> tasks.DynamicsBatch:
    """Sequences whose transition matrix changes once: the targets of positions ``t ≤ switch`` follow the first
    regime (the task's sequences, drawn from ``seed``), those of ``t > switch`` a second Haar-orthogonal ``W`` drawn
    after them, ``s_{t+1} = W s_t + σ ε`` from ``s_{switch+1}`` on. ``W`` of the result is the second regime's.
    Where a forgetting gate has something to forget (Part IV, "One family")."""
    n, k, T = _checks.positive_int("n_seqs", n_seqs), _checks.positive_int("switch", switch), settings.seq_len
    g = runtime.generator(seed)
    if k >= T:
        raise ValueError(f"switch must be < seq_len = {T}, got {switch}")
    states = tasks.sample_linear_dynamics(n, T, settings.dim, noise_std=settings.noise_std, generator=g,
                                          dtype=dtype).states.clone()  # (B, T+1, D): index i holds s_{i+1}
    W = tasks.haar_orthogonal(n, settings.dim, generator=g, dtype=dtype)  # (B, D, D)
    for i in range(k + 1, T + 1):  # s_{i+1} = W s_i + σ ε, the target of position t = i > switch
        states[:, i] = (W @ states[:, i - 1, :, None])[..., 0] + settings.noise_std * torch.randn(
            states[:, i].shape, generator=g, dtype=dtype)
    return tasks.DynamicsBatch(states, W)


# ----------------------------------------------------------------------------------- claim values (M14–M17)
class FamilyExactness(NamedTuple):
    """M14: float64 relative errors against the delta rule's recurrence (``solvers.causal_delta_predict``) of a
    hand-built :class:`DeltaLayer` (constant β) and of the parallel form (:func:`delta_attention`, per-token β)."""

    layer: float
    parallel: float


def family_exactness(seed: int = 0, n_seqs: int = 16) -> FamilyExactness:
    """Measure :class:`FamilyExactness` on float64 linear-dynamics sequences (a fraction of a CPU-second)."""
    b = tasks.sample_linear_dynamics(n_seqs, DYNAMICS.seq_len, DYNAMICS.dim, generator=runtime.generator(seed),
                                     dtype=torch.float64)
    s = b.inputs
    layer = model_predictions(constructed_delta_layer(DYNAMICS.dim, 0.2), b)
    per_token = normalized_beta(s, 0.9)
    return FamilyExactness(metrics.relative_error(layer, solvers.causal_delta_predict(s, 0.2)),
                           metrics.relative_error(causal_gated_delta_predict(s, 1.0, per_token),
                                                  solvers.causal_delta_predict(s, per_token)))


class FamilyOrdering(NamedTuple):
    """M15: mean losses of ridge (pairs ``j ≤ t``), the delta rule with normalised and raw keys, GD-1 and the zero
    predictor, and ``se``, the standard errors of the per-sequence differences of neighbours in that order (4)."""

    ridge: float
    delta_normalized: float
    delta: float
    gd: float
    zero: float
    se: tuple[float, ...]


_ORDER = ("ridge, pairs j ≤ t", "delta rule, normalised keys", "delta rule (β*)", "GD-1 (η*)", "zero predictor")


def family_ordering(fit: FamilyFit) -> FamilyOrdering:
    """:class:`FamilyOrdering` from a :func:`family_curves` result."""
    seq = [fit.per_sequence[name] for name in _ORDER]
    se = tuple(float((b - a).std() / len(a) ** 0.5) for a, b in zip(seq, seq[1:]))
    return FamilyOrdering(*(float(fit.curves[name].mean()) for name in _ORDER), se)


class CGConditioning(NamedTuple):
    """M17: mean losses of ``k`` CG steps (``steps``) and of the exact solution at the smallest and the largest ridge
    of a :class:`CGSweep`, the zero predictor's, and the relative error of ``D`` CG steps at both ridges."""

    steps: tuple[int, ...]
    small: tuple[float, ...]
    small_exact: float
    large: tuple[float, ...]
    large_exact: float
    zero: float
    full_error_small: float
    full_error_large: float


def cg_conditioning(sweep: CGSweep, zero: float) -> CGConditioning:
    """:class:`CGConditioning` from a :class:`CGSweep` (``lams`` increasing) and the zero predictor's mean loss."""
    row = lambda i: tuple(float(x) for x in sweep.means[i])
    return CGConditioning(sweep.steps, row(0), float(sweep.exact[0]), row(-1), float(sweep.exact[-1]), float(zero),
                          float(sweep.full_error[0]), float(sweep.full_error[-1]))


class DeltaVsLinear(NamedTuple):
    """M16: mean losses of the trained DeltaNet-style and linear-attention layers (one budget), of the closed-form
    delta rule with normalised keys at the layer's learned ``beta`` (mean over heads and tokens) and at its best β,
    and of GD-1 at η*."""

    delta_layer: float
    linear_layer: float
    delta_rule_learned: float
    delta_rule: float
    gd: float
    beta: float


def delta_vs_linear(curves: dict[str, torch.Tensor], beta: float) -> DeltaVsLinear:
    """:class:`DeltaVsLinear` from per-position loss curves keyed as ``keys`` below and the learned ``beta``."""
    keys = ("DeltaNet-style layer", "linear attention layer", "delta rule, learned β", "delta rule, normalised keys",
            "GD-1 (η*)")
    return DeltaVsLinear(*(float(curves[k].mean()) for k in keys), float(beta))
