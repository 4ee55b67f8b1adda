"""The mesa-attention kernel: causal ridge regression over keys and values, recurrent (Sherman–Morrison, with a
memory-light backward) and parallel (batched solve). Private to Part IV; :mod:`.mesa_layer` re-exports it.

For every time step ``t``: ``out_t = (Σ_{t'≤t} v_{t'} k_{t'}ᵀ)(Σ_{t'≤t} k_{t'} k_{t'}ᵀ + λI)⁻¹ q_t``, with ``λ`` the
ridge λ itself (the official code's parameter is ``1/λ``). *Recurrent*: carry ``R_t = (Σ k kᵀ + λI)⁻¹`` with the
Sherman–Morrison update, ``O(T dk²)`` per head, and backpropagate with a hand-derived adjoint that recomputes ``R_t``
from checkpoints kept every ``⌈√T⌉`` steps (``O(√T dk²)`` stored state per head). *Solve*: all ``T`` Gram matrices at
once, one batched Cholesky solve. :class:`MesaLayer` wraps the kernel as a multi-head layer; it lives here, beside
its kernel, because more than one chapter builds models from it.

References
----------
von Oswald et al. (2023), the mesa layer; Sherman and Morrison (1950); official code ``src/mesa.py``.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .. import _checks
from ..attention import linear_attention

__all__ = ["mesa_attention", "sherman_morrison_update", "sherman_morrison_downdate", "MesaLayer"]


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


# --------------------------------------------------------------------------------------------- module
_WEIGHTS = ("W_Q", "W_K", "W_V", "P")


def _softplus_inv(lam: torch.Tensor) -> torch.Tensor:
    return lam + torch.log(-torch.expm1(-lam))  # softplus⁻¹(λ) = log(e^λ − 1), stable for every λ > 0


class MesaLayer(nn.Module):
    """Multi-head mesa self-attention with a residual: ``e_t ← e_t + Σ_h P_h Φ̂_{h,t} q_{h,t}``.

    For tokens ``E (B, T, D)`` with rows as tokens, per head ``h``: ``q = E W_Q^hᵀ``, ``k = E W_K^hᵀ``,
    ``v = E W_V^hᵀ``, and ``Φ̂_{h,t}`` is the ridge fit of the values on the keys ``t' ≤ t``
    (:func:`mesa_attention`); the heads are concatenated and projected by ``P``. With one head,
    ``E_out = E + mesa_attention(E W_Qᵀ, E W_Kᵀ, E W_Vᵀ, λ) Pᵀ``. Like
    :class:`~icl_course.causal.CausalSelfAttention` it adds the residual itself (the official block writes
    ``x + attn(x)``), so the two are interchangeable inside a :class:`~icl_course.causal.CausalStack`.

    Parameters
    ----------
    dim : int
        Token width D.
    n_heads : int
    key_size, value_size : int, optional
        ``dk`` and ``dv`` per head (default ``dim // n_heads``, at least 1).
    lam_init : float
        Initial ridge λ of every head. λ is learnt as ``λ = softplus(lam_raw)``, positive by construction
        (≈ ``exp`` for small λ, ≈ identity for large; float32 underflows to 0, and :func:`mesa_attention` raises,
        only below ``lam_raw ≈ −100``). Default 1: the official ``lambdas`` (which hold ``1/λ``) start at 1.
    normalize : {None, "qk", "qv"}
        Optional SchlagNorm, ``x / (1e-16 + ||x||)`` per token and head: ``"qk"`` normalises queries and the keys
        inside the inverse (Schlag et al., 2021); ``"qv"`` is what the official ``use_schlagnorm`` does in
        ``src/mesa.py``, whose ``k_proj`` output plays the role of our values.
    method : {"recurrent", "solve"}
        Passed to :func:`mesa_attention`.
    residual : bool
        Add the input back (default). ``False`` returns the update alone, for blocks that add their own residual
        (a pre-LayerNorm transformer block).
    init_std : float
        Weights start ``N(0, init_std²)`` (official ``configs/config.py``: ``normal(stddev=0.0002)``).
    generator, dtype, device
        Seed, dtype and device of the weights.

    Notes
    -----
    Official ``MultiHeadMesa`` vs this layer: it learns ``lambdas = 1/λ``, unconstrained (it could turn
    negative); the keys inside its inverse come from ``v_proj`` and its targets from ``k_proj`` (our ``W_K``
    and ``W_V``); it concatenates the heads feature-major (index ``i·H + h``, ours ``h·dv + i``), so ``P``'s
    columns are permuted; Flax kernels are stored ``(in, out)``. Its other options (``normalization`` of
    the score rows, ``schlagnorm_targets``, positional encodings on q/k) are not mirrored.

    References
    ----------
    von Oswald et al. (2023) (the mesa layer and its recursion); official code ``src/mesa.py``
    (``MultiHeadMesa``). Part IV, "The mesa layer".
    """

    def __init__(
        self,
        dim: int,
        n_heads: int = 1,
        key_size: int | None = None,
        value_size: int | None = None,
        *,
        lam_init: float = 1.0,
        normalize: str | None = None,
        method: str = "recurrent",
        residual: bool = True,
        init_std: float = 2e-4,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        self.dim = _checks.positive_int("dim", dim)
        self.n_heads = _checks.positive_int("n_heads", n_heads)
        default = max(1, dim // n_heads)
        self.key_size = _checks.positive_int("key_size", default if key_size is None else key_size)
        self.value_size = _checks.positive_int("value_size", default if value_size is None else value_size)
        if normalize not in _NORMALIZE:
            raise ValueError(f"normalize must be one of {list(_NORMALIZE)}, got {normalize!r}")
        if method not in _METHODS:
            raise ValueError(f"method must be one of {list(_METHODS)}, got {method!r}")
        self.normalize, self.method, self.residual = normalize, method, bool(residual)
        std = _checks.positive_float("init_std", init_std, allow_zero=True)
        H, dk, dv = self.n_heads, self.key_size, self.value_size
        for name, n_in, n_out in (("W_Q", dim, H * dk), ("W_K", dim, H * dk), ("W_V", dim, H * dv), ("P", H * dv, dim)):
            lin = nn.Linear(n_in, n_out, bias=False, dtype=dtype, device=device)
            with torch.no_grad():
                lin.weight.normal_(0.0, std, generator=generator)  # std 0 gives zeros
            setattr(self, name, lin)
        lam = torch.full((H,), _positive_finite("lam_init", lam_init), dtype=torch.float64)
        self.lam_raw = nn.Parameter(_softplus_inv(lam).to(dtype=dtype, device=device))

    @classmethod
    def from_matrices(cls, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor, P: torch.Tensor,
                      lam: float | torch.Tensor, *, n_heads: int = 1, method: str = "recurrent") -> MesaLayer:
        """A layer with exactly these matrices — ``W_Q, W_K (H·dk, D)``, ``W_V (H·dv, D)``, ``P (D, H·dv)``, the
        ``(out, in)`` layout — and ridge ``lam`` (a float or ``(H,)``); dtype and device follow ``W_Q``."""
        for name, m in zip(_WEIGHTS, (W_Q, W_K, W_V, P)):
            _checks.tensor(name, m, 2, "(D, H·dv)" if name == "P" else "(H·d, D)")
            if m.dtype != W_Q.dtype or m.device != W_Q.device:
                raise TypeError(f"{name} must share W_Q's dtype and device ({W_Q.dtype}, {W_Q.device})")
        H = _checks.positive_int("n_heads", n_heads)
        (inner, D), inner_v = W_Q.shape, W_V.shape[0]
        if inner % H or inner_v % H:
            raise ValueError(f"W_Q's rows ({inner}) and W_V's rows ({inner_v}) must split into n_heads={H} heads")
        for name, m, shape in (("W_K", W_K, (inner, D)), ("W_V", W_V, (inner_v, D)), ("P", P, (D, inner_v))):
            if tuple(m.shape) != shape:
                raise ValueError(f"{name} must have shape {shape} to match W_Q {tuple(W_Q.shape)} and W_V, "
                                 f"got {tuple(m.shape)}")
        lam_t = _lam_tensor(lam.detach() if isinstance(lam, torch.Tensor) else lam, H, W_Q)
        layer = cls(D, H, inner // H, inner_v // H, method=method, init_std=0.0, dtype=W_Q.dtype, device=W_Q.device)
        with torch.no_grad():
            for name, m in zip(_WEIGHTS, (W_Q, W_K, W_V, P)):
                getattr(layer, name).weight.copy_(m)
            layer.lam_raw.copy_(_softplus_inv(lam_t))
        return layer

    def matrices(self) -> dict[str, torch.Tensor]:
        """The four weight matrices (detached), ``(out, in)`` layout."""
        return {name: getattr(self, name).weight.detach() for name in _WEIGHTS}

    @property
    def lam(self) -> torch.Tensor:
        """The ridge λ per head, ``softplus(lam_raw)``, shape ``(H,)`` (differentiable)."""
        return F.softplus(self.lam_raw)

    def _heads(self, lin: nn.Linear, E: torch.Tensor, size: int) -> torch.Tensor:
        B, T, _ = E.shape
        return lin(E).view(B, T, self.n_heads, size).transpose(1, 2)  # (B, H, T, size)

    def forward(self, E: torch.Tensor) -> torch.Tensor:
        """``E (B, T, D)`` → ``E + update`` ``(B, T, D)`` (``update`` alone when ``residual=False``)."""
        _checks.tensor("E", E, 3, f"(B, T, D={self.dim})")
        if E.shape[2] != self.dim:
            raise ValueError(f"E must have shape (B, T, D={self.dim}), got {tuple(E.shape)}")
        B, T, _ = E.shape
        q = self._heads(self.W_Q, E, self.key_size)  # (B, H, T, dk)
        k = self._heads(self.W_K, E, self.key_size)  # (B, H, T, dk)
        v = self._heads(self.W_V, E, self.value_size)  # (B, H, T, dv)
        if self.normalize is not None:
            q = q / (1e-16 + q.norm(dim=-1, keepdim=True))
            if self.normalize == "qk":
                k = k / (1e-16 + k.norm(dim=-1, keepdim=True))
            else:
                v = v / (1e-16 + v.norm(dim=-1, keepdim=True))
        out = mesa_attention(q, k, v, self.lam, method=self.method)  # (B, H, T, dv)
        update = self.P(out.transpose(1, 2).reshape(B, T, self.n_heads * self.value_size))  # (B, T, D)
        return E + update if self.residual else update
