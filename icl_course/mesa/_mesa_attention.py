"""The mesa-attention kernel: causal ridge regression over keys and values, recurrent (Sherman–Morrison, with a
memory-light backward) and parallel (batched solve). Private to Part IV; :mod:`.mesa_layer` re-exports it.

For every time step ``t``: ``out_t = (Σ_{t'≤t} v_{t'} k_{t'}ᵀ)(Σ_{t'≤t} k_{t'} k_{t'}ᵀ + λI)⁻¹ q_t``, with ``λ`` the
ridge λ itself (the official code's parameter is ``1/λ``). *Recurrent*: carry ``R_t = (Σ k kᵀ + λI)⁻¹`` with the
Sherman–Morrison update, ``O(T dk²)`` per head, and backpropagate with a hand-derived adjoint that recomputes ``R_t``
from checkpoints kept every ``⌈√T⌉`` steps (``O(√T dk²)`` stored state per head). *Solve*: all ``T`` Gram matrices at
once, one batched Cholesky solve.

References
----------
von Oswald et al. (2023), the mesa layer; Sherman and Morrison (1950); official code ``src/mesa.py``.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

from .. import _checks, metrics, runtime
from ..attention import linear_attention

__all__ = ["mesa_attention", "sherman_morrison_update", "sherman_morrison_downdate", "downdate_drift", "DriftLesson",
           "float32_drift", "drift_lesson"]


_METHODS = ("recurrent", "solve")
_NORMALIZE = (None, "qk", "qv")


# --------------------------------------------------------------------------------------------- validation
def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    _checks.tensor("q", q, 4, "(B, H, T, dk)")
    _checks.tensor("k", k, 4, "(B, H, T, dk)")
    _checks.tensor("v", v, 4, "(B, H, T, dv)")
    for what, i in (("batch size B", 0), ("head count H", 1), ("sequence length T", 2)):
        _checks.same("q", q.shape[i], "k", k.shape[i], what)
        _checks.same("k", k.shape[i], "v", v.shape[i], what)
    _checks.same("q", q.shape[3], "k", k.shape[3], "key size dk")
    if q.shape[2] == 0 or q.shape[3] == 0:
        raise ValueError(f"q (B, H, T, dk) needs T >= 1 and dk >= 1, got shape {tuple(q.shape)}")
    for name, x in (("k", k), ("v", v)):
        if x.dtype != q.dtype or x.device != q.device:
            raise TypeError(f"{name} must share q's dtype and device ({q.dtype}, {q.device}), "
                            f"got ({x.dtype}, {x.device})")
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} must be finite (no NaN or inf)")


def _lam_tensor(lam: object, H: int, like: torch.Tensor) -> torch.Tensor:
    """``lam`` as a positive finite ``(H,)`` tensor in ``like``'s dtype (differentiable if it was a tensor)."""
    if isinstance(lam, torch.Tensor):
        if lam.ndim == 0:
            lam = lam.expand(H)
        if lam.shape != (H,):
            raise ValueError(f"lam as a tensor must have shape (H,) = ({H},) or (), got {tuple(lam.shape)}")
        if not lam.is_floating_point():
            raise TypeError(f"lam must be a floating-point tensor, got dtype {lam.dtype}")
        if lam.device != like.device:
            raise TypeError(f"lam must be on q's device {like.device}, got {lam.device}")
        if not bool((torch.isfinite(lam) & (lam > 0)).all()):
            raise ValueError(f"lam must be > 0 and finite for every head, got {lam.detach().tolist()}")
        return lam.to(like.dtype)
    return torch.full((H,), _positive_finite("lam", lam), dtype=like.dtype, device=like.device)


def _positive_finite(name: str, value: object) -> float:
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value):
        raise ValueError(f"{name} must be > 0 and finite, got {value}")
    return _checks.positive_float(name, value)


def _check_Rk(R: torch.Tensor, k: torch.Tensor) -> None:
    _checks.tensor("k", k, max(k.ndim if isinstance(k, torch.Tensor) else 1, 1), "(…, d)")
    _checks.tensor("R", R, k.ndim + 1, "(…, d, d) with k's leading dims")
    if R.shape != (*k.shape, k.shape[-1]):
        raise ValueError(f"R must have shape (…, d, d) = {(*k.shape, k.shape[-1])} to match k, got {tuple(R.shape)}")


# ------------------------------------------------------------------------------------ Sherman–Morrison
# Tiny (d, d) matrices: a broadcast multiply-and-sum is several times faster than a batched matmul on CPU.
def _matvec(R: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (R * x[..., None, :]).sum(-1)  # (…, d) = R x


def _outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., :, None] * b[..., None, :]  # (…, d, d) = a bᵀ


def _sm_step(R: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One Sherman–Morrison step; also returns ``w = R_t k = u / s`` (the backward needs it)."""
    u = _matvec(R, k)  # (…, d) = R_{t−1} k
    w = u / (1.0 + (k * u).sum(-1, keepdim=True))  # (…, d) = R_{t−1} k / (1 + kᵀ R_{t−1} k)
    return torch.addcmul(R, u[..., :, None], w[..., None, :], value=-1.0), w  # R − u wᵀ


def sherman_morrison_update(R: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``(A + k kᵀ)⁻¹`` from ``R = A⁻¹`` (symmetric): ``R − R k kᵀ R / (1 + kᵀ R k)``.

    ``R (…, d, d)``, ``k (…, d)`` with the same leading dims. One step of the recurrent mesa layer.

    References
    ----------
    Sherman & Morrison (1950); von Oswald et al. (2023), the mesa layer's recursion (official code
    ``src/mesa.py``, ``explicit_shermo``). Part IV, "The mesa layer".
    """
    _check_Rk(R, k)
    return _sm_step(R, k)[0]


def sherman_morrison_downdate(R: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The inverse step: ``R_{t−1} = R_t + R_t k kᵀ R_t / (1 − kᵀ R_t k)`` rebuilds ``(A − k kᵀ)⁻¹``.

    This is what the official code's custom backward (``src/mesa.py``, ``explicit_shermo(..., forward=-1)``)
    runs to walk back through time without storing ``R_t``. It is unstable: ``1 − kᵀ R_t k = 1/(1 + kᵀ R_{t−1} k)``
    is tiny whenever the key is new to ``R_{t−1}``, and rounding errors are amplified by its inverse; see
    :func:`downdate_drift`.
    """
    _check_Rk(R, k)
    u = _matvec(R, k)  # (…, d) = R_t k
    return R + _outer(u, u / (1.0 - (k * u).sum(-1, keepdim=True)))


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


# --------------------------------------------------------------------- recurrent, memory-light backward
def _replay(R: torch.Tensor, kT: torch.Tensor) -> tuple[list, list]:
    """Sherman–Morrison over the time-major keys ``kT (c, N, dk)``: the lists of ``R_t`` and ``w_t = R_t k_t``."""
    Rs, ws = [], []
    for k_t in kT:
        R, w = _sm_step(R, k_t)  # (N, dk, dk), (N, dk)
        Rs.append(R)
        ws.append(w)
    return Rs, ws


def _segment_out(Z: torch.Tensor, K: torch.Tensor, V: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """``out_t = S_t z_t`` for one segment: the carried ``S = Σ_{t'<t0} v kᵀ`` plus the causal part inside it."""
    return Z @ S.mT + (Z @ K.mT).tril() @ V  # (N, c, dv)


class _MesaRecurrent(torch.autograd.Function):
    """``out_t = S_t R_t q_t``, ``S_t = Σ_{t'≤t} v kᵀ``, Sherman–Morrison ``R_t``; checkpoints every ``c`` steps.

    Heads are flattened into rows, ``N = B·H``. Adjoint of one step ``R_t = (R_{t−1}⁻¹ + k kᵀ)⁻¹``, with
    ``w = R_t k`` and ``Â`` the symmetrised adjoint of ``R_t``: ``Â_{t−1} = (I − k wᵀ) Â (I − w kᵀ)`` and
    ``k̄ = −R_t Â w``; ``z_t = R_t q_t`` adds ``z̄ qᵀ + q z̄ᵀ`` to ``Â``; ``R_0 = I/λ`` gives ``λ̄ = −tr(Â_0)/(2λ²)``.
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lam: torch.Tensor, c: int) -> torch.Tensor:
        B, H, T, dk = q.shape
        qf, kf, vf = (x.reshape(B * H, T, -1) for x in (q, k, v))  # (N, T, d)
        qT, kT = qf.transpose(0, 1).contiguous(), kf.transpose(0, 1).contiguous()  # (T, N, dk) time-major
        R = torch.diag_embed((1.0 / lam).repeat(B)[:, None].expand(B * H, dk))  # (N, dk, dk) = I/λ
        S = q.new_zeros(B * H, v.shape[3], dk)  # (N, dv, dk)
        out, R_ck, S_ck = [], [], []
        for t0 in range(0, T, c):
            R_ck.append(R)
            S_ck.append(S)
            Rs, _ = _replay(R, kT[t0:t0 + c])
            Z = torch.stack([_matvec(R_t, q_t) for R_t, q_t in zip(Rs, qT[t0:t0 + c])], 1)  # (N, c, dk)
            K, V = kf[:, t0:t0 + c], vf[:, t0:t0 + c]  # (N, c, d)
            out.append(_segment_out(Z, K, V, S))
            R, S = Rs[-1], S + V.mT @ K
        ctx.c = c
        ctx.save_for_backward(q, k, v, lam, torch.stack(R_ck, 1), torch.stack(S_ck, 1))
        return torch.cat(out, 1).view(B, H, T, -1)  # (B, H, T, dv)

    @staticmethod
    @once_differentiable  # the replay starts from constant checkpoints: a second derivative would be wrong
    def backward(ctx, g: torch.Tensor) -> tuple:
        q, k, v, lam, R_ck, S_ck = ctx.saved_tensors
        B, H, T, dk = q.shape
        c = ctx.c
        qf, kf, vf, gf = (x.reshape(B * H, T, -1) for x in (q, k, v, g))  # (N, T, d)
        kT = kf.transpose(0, 1).contiguous()  # (T, N, dk)
        gq, gk, gv = torch.zeros_like(qf), torch.zeros_like(kf), torch.zeros_like(vf)
        A = torch.zeros_like(R_ck[:, 0])  # (N, dk, dk) symmetrised adjoint of R_t
        S_bar = torch.zeros_like(S_ck[:, 0])  # (N, dv, dk) adjoint of S after the segment
        for i in reversed(range(R_ck.shape[1])):
            t0 = i * c
            Rs, ws = _replay(R_ck[:, i], kT[t0:t0 + c])
            Rst = torch.stack(Rs, 1)  # (N, c, dk, dk): the only O(c·dk²) state, freed after the segment
            Q, K, V, G = (x[:, t0:t0 + c] for x in (qf, kf, vf, gf))  # (N, c, d)
            Z = _matvec(Rst, Q)  # (N, c, dk)
            GV = (G @ V.mT).tril()  # (N, c, c): ō_t · v_j for j ≤ t
            Z_bar = G @ S_ck[:, i] + GV @ K  # (N, c, dk)
            gv[:, t0:t0 + c] = (Z @ K.mT).tril().mT @ G + K @ S_bar.mT
            gk[:, t0:t0 + c] = GV.mT @ Z + V @ S_bar
            S_bar = S_bar + G.mT @ Z
            gq[:, t0:t0 + c] = _matvec(Rst, Z_bar)
            for j in reversed(range(len(Rs))):
                z_bar, q_t, k_t, w = Z_bar[:, j], Q[:, j], K[:, j], ws[j]  # (N, dk) each
                # Â += z̄ qᵀ + q z̄ᵀ, then a = Â w — the new Â's product, formed from vectors
                a = _matvec(A, w) + z_bar * (q_t * w).sum(-1, keepdim=True) + q_t * (z_bar * w).sum(-1, keepdim=True)
                gk[:, t0 + j] -= _matvec(Rs[j], a)
                a = a - 0.5 * (w * a).sum(-1, keepdim=True) * k_t
                D = torch.addcmul(_outer(z_bar, q_t), k_t[:, :, None], a[:, None, :], value=-1.0)  # z̄ qᵀ − k aᵀ
                A = A + D + D.mT  # (I − k wᵀ)(Â + z̄ qᵀ + q z̄ᵀ)(I − w kᵀ), Â symmetric
        g_lam = -torch.diagonal(A, dim1=-2, dim2=-1).sum(-1).view(B, H).sum(0) / (2 * lam**2)  # (H,)
        return gq.view_as(q), gk.view_as(k), gv.view_as(v), g_lam, None


# ------------------------------------------------------------------------------------ parallel solve
def _mesa_solve(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """All ``T`` Gram matrices at once, one batched Cholesky solve, then causal linear attention."""
    dk, kt = q.shape[3], k.mT  # (B, H, dk, T)
    # Σ_{t'≤t} k kᵀ; the cumulative sum runs over the last, contiguous axis (4× faster on CPU than over T).
    gram = torch.cumsum(kt[..., :, None, :] * kt[..., None, :, :], -1).permute(0, 1, 4, 2, 3)  # (B, H, T, dk, dk)
    eye = torch.eye(dk, dtype=q.dtype, device=q.device)
    L = torch.linalg.cholesky(gram + lam[:, None, None, None] * eye)  # (B, H, T, dk, dk)
    z = torch.cholesky_solve(q[..., None], L)[..., 0]  # (B, H, T, dk) = (Σ k kᵀ + λI)⁻¹ q_t
    # (Σ_{t'≤t} v kᵀ) z_t = Σ_{t'≤t} (k_{t'} · z_t) v_{t'}: causal linear attention with queries z.
    return linear_attention(z, k, v, causal=True)  # (B, H, T, dv)


def mesa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lam: float | torch.Tensor,
    method: str = "recurrent",
    *,
    checkpoint_every: int | None = None,
) -> torch.Tensor:
    """Causal mesa attention ``out_t = (Σ_{t'≤t} v_{t'} k_{t'}ᵀ)(Σ_{t'≤t} k_{t'} k_{t'}ᵀ + λI)⁻¹ q_t``.

    ``out_t = W_t q_t`` with ``W_t`` the ridge-regression fit of values on keys ``t' ≤ t``. Worked number: one
    step, ``dk = dv = 1``, ``k_1 = 2``, ``v_1 = 3``, ``q_1 = 1``, ``λ = 1`` gives ``3·2/(4 + 1) = 1.2``.

    Parameters
    ----------
    q, k : (B, H, T, dk)
    v : (B, H, T, dv)
    lam : float or (H,) tensor
        The ridge λ > 0, one for all heads or one per head (a tensor may require grad). Not the official
        code's ``1/λ``.
    method : {"recurrent", "solve"}
        ``"recurrent"`` (default): Sherman–Morrison, ``O(T dk²)`` time, always with the memory-light backward
        below — the fastest and leanest on CPU (``benchmarks/bench_mesa.py``: 6–7× the naive re-solving loop at
        ``(B, H, T, d) = (8, 4, 256, 32)``, 13–15× at ``T = 512``). ``"solve"``: all ``T`` systems in one batched
        Cholesky solve, parallel over ``t``; autograd keeps the ``T`` factors, ``O(T dk²)`` per head, and on CPU
        it is no faster than the naive loop (it is the form for accelerators, and the readable reference).
    checkpoint_every : int, optional
        Recurrent only: the backward keeps ``R_t`` and ``S_t = Σ v kᵀ`` every ``c`` steps (default
        ``c = ⌈√T⌉``) and recomputes each segment forward from its checkpoint, through a hand-derived adjoint of
        the Sherman–Morrison step. Stored for backward: the inputs plus ``⌈T/c⌉`` checkpoints, and ``c``
        transient inverses while a segment is processed — ``O(√T·dk²)`` per head instead of ``O(T·dk²)``.

    Returns
    -------
    out : (B, H, T, dv), in the inputs' dtype and device.

    References
    ----------
    von Oswald et al. (2023), "Uncovering mesa-optimization algorithms in Transformers" (arXiv:2309.05858), the
    mesa-layer definition and its Sherman–Morrison recursion; official code ``src/mesa.py`` (``mesa_layer``,
    ``compute_custom_mesa_layer``). Part IV, "The mesa layer".
    """
    _check_qkv(q, k, v)
    lam_t = _lam_tensor(lam, q.shape[1], q)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {list(_METHODS)}, got {method!r}")
    if method == "solve":
        return _mesa_solve(q, k, v, lam_t)
    c = math.isqrt(q.shape[2] - 1) + 1 if checkpoint_every is None else checkpoint_every  # ⌈√T⌉
    return _MesaRecurrent.apply(q, k, v, lam_t, _checks.positive_int("checkpoint_every", c))


# ------------------------------------------------------------------------------- the float32 lesson
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
