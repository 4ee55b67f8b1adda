"""Exercises of Part IV, chapter "Deeper layers: preconditioned multi-step GD".

Each reference solution below is the exact code the chapter shows in its solution block (a test keeps them
identical); each stub is what the student edition shows instead. The checkers compare against the package
(:func:`icl_course.mesa.gd_steps_predict`, :func:`icl_course.mesa.block_means`,
:func:`icl_course.mesa.preconditioned_input`) on fixed seeds, and name the classic slips: the update's factors in
the wrong order, one Neumann term too many, the mean of a whole block instead of its diagonal, and the pairs
``j < t`` in place of ``j ≤ t``.
"""

from __future__ import annotations

import torch

from ... import mesa, runtime
from .. import exercise
from ._common import PART, _expect, _states

F64 = torch.float64


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.allclose(a.detach().to(F64), b, rtol=1e-8, atol=1e-11))


def _gram(seed: int, D: int, n: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """A = Σ x xᵀ (D, D) and C = Σ y xᵀ (D, D) of ``n`` random float64 pairs."""
    g = runtime.generator(seed)
    X, Y = torch.randn(n, D, generator=g, dtype=F64), torch.randn(n, D, generator=g, dtype=F64)
    return X.T @ X, Y.T @ X


# ---------------------------------------------------------------- 1. K GD steps on the mesa objective
@exercise(part=PART, name="gd_steps_next_state", title="K steps of GD on the mesa objective", difficulty="★☆☆",
          minutes=10,
          hint="∇L_t(W) = W A_t − C_t with A_t = Σ_{j≤t} s_{j−1} s_{j−1}ᵀ and C_t = Σ_{j≤t} s_j s_{j−1}ᵀ "
               "(cumulative sums, s_0 = 0); start from W = 0 and step W ← W − η_k ∇L_t(W) once per step size.",
          stub='''def gd_steps_next_state(states, lrs):
    """K = len(lrs) GD steps from W = 0 on L_t at every position: states (B, T, D) -> predictions W_t s_t (B, T, D)."""
    # YOUR CODE HERE
    raise NotImplementedError("gd_steps_next_state")
''')
def check_gd_steps_next_state(fn) -> None:
    for seed, lrs in ((0, [0.05]), (1, [0.02, 0.07, 0.04]), (2, [0.01, 0.2])):
        states = _states(seed, B=3, T=12, D=4)
        got = _expect(fn(states.clone(), list(lrs)), tuple(states.shape), "gd_steps_next_state(states, lrs)")
        ref = mesa.gd_steps_predict(states, lrs)
        if _close(got, ref):
            continue
        prev = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)
        A = torch.cumsum(prev[..., :, None] * prev[..., None, :], dim=1)
        C = torch.cumsum(states[..., :, None] * prev[..., None, :], dim=1)
        W = torch.zeros_like(C)
        for eta in lrs:
            W = W + eta * (C - A @ W)
        assert not _close(got, (W @ states[..., None])[..., 0]), (
            "the gradient of ½ Σ ‖s_j − W s_{j−1}‖² is W A − C: the Gram matrix A multiplies W from the right")
        shift = lambda M: torch.cat([torch.zeros_like(M[:, :1]), M[:, :-1]], dim=1)
        W = torch.zeros_like(C)
        for eta in lrs:
            W = W + eta * (shift(C) - W @ shift(A))
        assert not _close(got, (W @ states[..., None])[..., 0]), (
            "use every pair seen so far, j ≤ t, the newest (s_{t−1}, s_t) included: cumulative sums up to t")
        assert not _close(got, mesa.gd_steps_predict(states, [-x for x in lrs])), "step against the gradient: W − η ∇L"
        raise AssertionError(f"the predictions differ (max abs error {float((got - ref).abs().max()):.3g}) for "
                             f"step sizes {lrs}")


# ---------------------------------------------------------------- 2. K steps = a truncated Neumann series
@exercise(part=PART, name="neumann_weights",
          title="K equal steps are a truncated Neumann series",
          difficulty="★☆☆", minutes=5,
          hint="Unroll W ← W + η (C − W A) from W = 0: W_1 = ηC, W_2 = ηC + ηC (I − ηA), …; the sum has K terms "
               "(I − ηA)^0 … (I − ηA)^(K−1), and C multiplies from the left.",
          stub='''def neumann_weights(A, C, eta, K):
    """W after K GD steps of size eta from W = 0 on ½ Σ‖y − W x‖² (A = Σ x xᵀ, C = Σ y xᵀ, both (D, D)), in closed
    form as a truncated Neumann series -> (D, D)."""
    # YOUR CODE HERE
    raise NotImplementedError("neumann_weights")
''')
def check_neumann_weights(fn) -> None:
    for seed, D, K in ((3, 4, 1), (4, 5, 3), (5, 3, 6)):
        A, C = _gram(seed, D)
        eta = 0.9 / float(torch.linalg.eigvalsh(A).max())
        W = torch.zeros_like(C)
        for _ in range(K):
            W = W + eta * (C - W @ A)
        got = _expect(fn(A, C, eta, K), (D, D), "neumann_weights(A, C, eta, K)")
        if _close(got, W):
            continue
        assert not _close(got, W + eta * (C - W @ A)), "K steps give K terms, (I − ηA)^0 up to (I − ηA)^(K−1)"
        if K > 1:
            W1 = torch.zeros_like(C)
            for _ in range(K - 1):
                W1 = W1 + eta * (C - W1 @ A)
            assert not _close(got, W1), "K steps give K terms, (I − ηA)^0 up to (I − ηA)^(K−1)"
        assert not _close(got, W.T), "C multiplies the series from the left: W = C · η Σ (I − ηA)^i"
        raise AssertionError(f"W_K differs (max abs error {float((got - W).abs().max()):.3g}) for D={D}, K={K}")


# ---------------------------------------------------------------- 3. RevAlg-d's compression of a weight product
@exercise(part=PART, name="structured_blocks", title="Compress a weight product the RevAlg-d way", difficulty="★☆☆",
          minutes=10,
          hint="Cut M into dim × dim blocks; keep only the mean of each block's diagonal, times the identity "
               "(torch.kron of the (S, S) means with I puts them back in place).",
          stub='''def structured_blocks(M, dim):
    """Every dim × dim block of M (S·dim, S·dim) replaced by (mean of its diagonal) · I -> (S·dim, S·dim)."""
    # YOUR CODE HERE
    raise NotImplementedError("structured_blocks")
''')
def check_structured_blocks(fn) -> None:
    g = runtime.generator(6)
    for S, dim in ((4, 3), (2, 5)):
        M = torch.randn(S * dim, S * dim, generator=g, dtype=F64)
        got = _expect(fn(M.clone(), dim), (S * dim, S * dim), "structured_blocks(M, dim)")
        eye = torch.eye(dim, dtype=F64)
        ref = torch.kron(mesa.block_means(M, dim), eye)
        if _close(got, ref):
            continue
        whole = M.reshape(S, dim, S, dim).mean((1, 3))
        assert not _close(got, torch.kron(whole, eye)), "average the block's diagonal only, not all its entries"
        assert not _close(got, torch.kron(mesa.block_means(M, dim).T.contiguous(), eye)), (
            "block (a, b) holds rows a·dim…, columns b·dim…: keep it in place (no transpose)")
        raise AssertionError(f"the compressed matrix differs (max abs error {float((got - ref).abs().max()):.3g}) "
                             f"for S={S}, dim={dim}")


# ---------------------------------------------------------------- 4. the preconditioned input
@exercise(part=PART, name="preconditioned_query", title="The preconditioned input least squares needs",
          difficulty="★☆☆", minutes=10,
          hint="At 0-based position t the keys are s_{j−1} for j ≤ t — the states s_0 = 0, s_1 … s_{t−1} — so "
               "A = Σ s_{j−1} s_{j−1}ᵀ stops one state before the query s_t; solve (A + λI) z = s_t.",
          stub='''def preconditioned_query(states, lam, t):
    """One sequence: states (T, D) = s_1 … s_T, ridge λ, 0-based position t -> (Σ_{j≤t} s_{j−1} s_{j−1}ᵀ + λI)⁻¹ s_t
    (D,)."""
    # YOUR CODE HERE
    raise NotImplementedError("preconditioned_query")
''')
def check_preconditioned_query(fn) -> None:
    for seed, lam in ((7, 0.1), (8, 1.0)):
        states = _states(seed, B=1, T=9, D=4)
        full = mesa.preconditioned_input(states, lam)[0]  # (T, D)
        for t in (8, 5, 0):
            got = _expect(fn(states[0].clone(), lam, t), (4,), "preconditioned_query(states, lam, t)")
            if _close(got, full[t]):
                continue
            S = states[0]
            with_query = S[: t + 1].T @ S[: t + 1] + lam * torch.eye(4, dtype=F64)
            assert not _close(got, torch.linalg.solve(with_query, S[t])), (
                "the keys are the states before the query: s_0 = 0, s_1 … s_{t−1}; s_t itself is not a key yet")
            assert not _close(got, mesa.preconditioned_input(states, 1 / lam)[0, t]), "add λ itself, not 1/λ"
            raise AssertionError(f"z_t differs at t={t} (max abs error {float((got - full[t]).abs().max()):.3g})")


__all__ = ["check_gd_steps_next_state", "check_neumann_weights", "check_structured_blocks",
           "check_preconditioned_query"]
