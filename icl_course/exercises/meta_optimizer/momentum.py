"""Exercises of Part II, chapter "Momentum attention".

Each reference solution below is the exact code the chapter shows in its solution block; each stub is what the
student edition shows instead. The checkers compare against the package (:func:`icl_course.meta_optimizer.
value_momentum`, :func:`~icl_course.meta_optimizer.momentum_decay_matrix`, :func:`~icl_course.meta_optimizer.
momentum_update`, :func:`~icl_course.meta_optimizer.momentum_attention`) on fixed seeds in float64, and recognise
the classic slips by name: the current value included (``i ≤ t``), the normalised EMA (a ``(1 − η)`` factor), the
exponent off by one, the transposed (anti-causal) matrix, the velocity in place of the accumulated update, plain GD,
and the softmax without its ``1/√dk``.
"""

from __future__ import annotations

import torch

from ... import runtime
from ...attention import softmax_attention
from ...meta_optimizer import momentum as mo
from .. import exercise
from ._common import PART, _expect

__all__ = ["check_ema_loop", "check_decay_matrix", "check_momentum_gd_dual", "check_moattn_forward"]

F64 = torch.float64


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.allclose(a.detach().to(F64), b, rtol=1e-8, atol=1e-11))


def _values(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=runtime.generator(seed), dtype=F64)


def _slip_ema(got: torch.Tensor, v: torch.Tensor, eta: float) -> None:
    """Name the classic slips of an EMA of the values, or do nothing."""
    ref = mo.value_momentum(v, eta)
    assert not _close(got, ref + v), "the sum runs over the earlier positions i < t only: leave v_t out of m_t"
    assert not _close(got, (1 - eta) * ref), (
        "Dai et al.'s momentum term is not normalised: Σ η^{t−i} v_i, without the (1 − η) factor of a textbook EMA")
    assert not _close(got, (ref + v) / eta - v) and not _close(got, ref / eta), (
        "the exponent is t − i: the value one step back is weighted η, not 1")
    assert not _close(got, mo.momentum_decay_matrix(v.shape[-2], eta, dtype=F64).T @ v), (
        "you summed over the later positions: momentum attention is causal, i < t")


# ---------------------------------------------------------------- 1. the EMA of the values by a loop
@exercise(part=PART, name="ema_loop", title="The momentum of the values, by a loop", difficulty="★☆☆", minutes=5,
          hint="m_t = Σ_{i<t} η^{t−i} v_i obeys m_1 = 0 and m_t = η (m_{t−1} + v_{t−1}): no (1 − η) factor, and "
               "v_t itself is not in m_t.",
          stub='''def ema_loop(v, eta):
    """v (T, d), 0 ≤ η < 1 -> (T, d): row t is m_t = Σ_{i<t} η^{t−i} v_i (0-based rows; m_0 = 0)."""
    # YOUR CODE HERE
    raise NotImplementedError("ema_loop")
''')
def check_ema_loop(fn) -> None:
    for seed, (T, d), eta in ((0, (7, 3), 0.5), (1, (12, 4), 0.9)):
        v = _values(seed, T, d)
        got = _expect(fn(v.clone(), eta), (T, d), "ema_loop(v, eta)")
        ref = mo.value_momentum(v, eta)
        if _close(got, ref):
            continue
        _slip_ema(got, v, eta)
        raise AssertionError(f"m_t differs (max abs error {float((got - ref).abs().max()):.3g}) for T={T}, η={eta}")


# ---------------------------------------------------------------- 2. the closed form: one matrix product
@exercise(part=PART, name="decay_matrix", title="All positions at once: the decay matrix", difficulty="★☆☆",
          minutes=5,
          hint="D is (T, T) with D[t, i] = η^{t−i} where i < t and 0 on and above the diagonal, so that m = D v; "
               "build the lag t − i with two aranges.",
          stub='''def decay_matrix(T, eta):
    """(T, T) float64 D with (D @ v)[t] = Σ_{i<t} η^{t−i} v[i] for every v (T, d)."""
    # YOUR CODE HERE
    raise NotImplementedError("decay_matrix")
''')
def check_decay_matrix(fn) -> None:
    for T, eta in ((5, 0.5), (9, 0.8)):
        got = _expect(fn(T, eta), (T, T), "decay_matrix(T, eta)")
        ref = mo.momentum_decay_matrix(T, eta, dtype=F64)
        if _close(got, ref):
            continue
        assert not _close(got, ref.T), "the matrix is lower-triangular: row t collects the earlier columns i < t"
        assert not _close(got, ref + torch.eye(T, dtype=F64)), "the diagonal is 0: v_t is not in m_t"
        assert not _close(got, (1 - eta) * ref), "no (1 − η) factor: Dai et al.'s momentum term is not normalised"
        assert not _close(got, ref / eta), "the exponent is t − i, so the sub-diagonal is η, not 1"
        raise AssertionError(f"D differs from η^(t−i) below the diagonal (T={T}, η={eta})")


# ---------------------------------------------------------------- 3. momentum GD in its dual form
@exercise(part=PART, name="momentum_gd_dual",
          title="Momentum GD in its dual form", difficulty="★☆☆", minutes=5,
          hint="Unroll u_s = η u_{s−1} + e_s x_sᵀ, W_s = W_{s−1} + lr u_s: W_N = W0 + lr Σ_i c_i e_i x_iᵀ with "
               "c_i = 1 + η + … + η^{N−i}; then W_N q = W0 q + lr Σ_i c_i e_i (x_i·q).",
          stub='''def momentum_gd_dual(W0, x, e, q, lr, eta):
    """W0 (dy, dx), inputs x (N, dx), error signals e (N, dy), query q (dx,) -> W_N q (dy,), where
    u_s = η u_{s−1} + e_s x_sᵀ (u_0 = 0) and W_s = W_{s−1} + lr·u_s — without forming any W_s."""
    # YOUR CODE HERE
    raise NotImplementedError("momentum_gd_dual")
''')
def check_momentum_gd_dual(fn) -> None:
    for seed, (N, dx, dy), lr, eta in ((2, (6, 3, 2), 0.1, 0.5), (3, (10, 4, 3), 0.05, 0.9)):
        W0, x, e, q = _values(seed, dy, dx), _values(seed + 10, N, dx), _values(seed + 20, N, dy), _values(seed, dx)
        got = _expect(fn(W0, x, e, q, lr, eta), (dy,), "momentum_gd_dual(W0, x, e, q, lr, eta)")
        ref = (mo.momentum_update(W0[None], x[None], e[None], lr, eta)[0] @ q)
        if _close(got, ref):
            continue
        scores = x @ q  # (N,)
        assert not _close(got, W0 @ q + lr * scores @ e), "that is plain GD (η = 0): momentum reweights e_i by c_i"
        last = eta ** torch.arange(N - 1, -1, -1, dtype=F64)  # η^{N−i}
        assert not _close(got, W0 @ q + lr * (last * scores) @ e), (
            "η^{N−i} are the weights of the velocity u_N alone; W_N accumulates every u_s, so c_i = Σ_{s≥i} η^{s−i}")
        raise AssertionError(f"W_N q differs from the heavy-ball weights (N={N}, η={eta}): max abs error "
                             f"{float((got - ref).abs().max()):.3g}")


# ---------------------------------------------------------------- 4. one head of momentum attention
@exercise(part=PART, name="moattn_forward", title="One head of momentum attention", difficulty="★★☆", minutes=15,
          hint="Causal softmax attention (scores k_j·q_t/√dk, keys j ≤ t) plus the unnormalised EMA of the earlier "
               "values Σ_{i<t} η^{t−i} v_i.",
          stub='''def moattn_forward(q, k, v, eta):
    """One head: q, k (T, dk), v (T, dv), 0 ≤ η < 1 -> (T, dv), row t = MoAttn(V, K, q_t) (causal)."""
    # YOUR CODE HERE
    raise NotImplementedError("moattn_forward")
''')
def check_moattn_forward(fn) -> None:
    for seed, (T, dk, dv), eta in ((4, (6, 4, 3), 0.5), (5, (11, 8, 5), 0.9)):
        q, k, v = _values(seed, T, dk), _values(seed + 1, T, dk), _values(seed + 2, T, dv)
        got = _expect(fn(q, k, v, eta), (T, dv), "moattn_forward(q, k, v, eta)")
        ref = mo.momentum_attention(q, k, v, eta)
        if _close(got, ref):
            continue
        attn = softmax_attention(q, k, v, causal=True)
        assert not _close(got, attn), "that is plain causal softmax attention: add the momentum of the values"
        assert not _close(got, softmax_attention(q, k, v, causal=True, scale=1.0) + mo.value_momentum(v, eta)), (
            "scale the scores by 1/√dk before the softmax")
        assert not _close(got, softmax_attention(q, k, v) + mo.value_momentum(v, eta)), (
            "mask the future: position t attends to the keys j ≤ t only")
        _slip_ema(got - attn, v, eta)
        raise AssertionError(f"MoAttn differs (max abs error {float((got - ref).abs().max()):.3g}), T={T}, η={eta}")
