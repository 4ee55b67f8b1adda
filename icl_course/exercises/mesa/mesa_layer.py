"""Exercises of Part IV, chapter "The mesa layer".

Each reference solution below is the exact code the chapter shows in its solution block (a test keeps them
identical); each stub is what the student edition shows instead. The checkers compare against the package
(:func:`icl_course.mesa.mesa_attention`, :func:`icl_course.mesa.sherman_morrison_update`,
:func:`icl_course.solvers.causal_ridge_predict`) on fixed seeds, and recognise the three classic slips — a flipped
sign in Sherman–Morrison, ``1/λ`` in place of ``λ``, and the pairs ``j < t`` in place of ``j ≤ t`` — by name.
"""

from __future__ import annotations

import torch

from ... import mesa, runtime, solvers
from .. import exercise
from ._common import PART, _expect, _states

F64 = torch.float64


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.allclose(a.detach().to(F64), b, rtol=1e-8, atol=1e-11))


def _qkv(seed: int, T: int, dk: int, dv: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = runtime.generator(seed)
    return tuple(torch.randn(T, d, generator=g, dtype=F64) for d in (dk, dk, dv))  # type: ignore[return-value]


# ---------------------------------------------------------------- 1. one Sherman–Morrison step
@exercise(part=PART, name="sherman_morrison_step", title="One Sherman–Morrison step", difficulty="★☆☆", minutes=5,
          hint="(A + k kᵀ)⁻¹ = R − (R k)(R k)ᵀ / (1 + kᵀ R k) with R = A⁻¹: a rank-one correction with a minus sign "
               "and a denominator 1 + kᵀ R k.",
          stub='''def sherman_morrison_step(R, k):
    """(A + k kᵀ)⁻¹ from R = A⁻¹ (symmetric) without inverting anything. R (B, d, d), k (B, d) -> (B, d, d)."""
    # YOUR CODE HERE
    raise NotImplementedError("sherman_morrison_step")
''')
def check_sherman_morrison_step(fn) -> None:
    g = runtime.generator(11)
    for B, d in ((3, 4), (2, 7)):
        X = torch.randn(B, 2 * d, d, generator=g, dtype=F64)
        R = torch.linalg.inv(X.mT @ X + 0.5 * torch.eye(d, dtype=F64))  # (B, d, d) symmetric positive definite
        k = torch.randn(B, d, generator=g, dtype=F64)
        got = _expect(fn(R.clone(), k.clone()), (B, d, d), "sherman_morrison_step(R, k)")
        ref = mesa.sherman_morrison_update(R, k)
        if _close(got, ref):
            continue
        u = (R @ k[..., None])[..., 0]
        uu, s = u[..., :, None] * u[..., None, :], (k * u).sum(-1)[..., None, None]
        assert not _close(got, R + uu / (1 + s)), "the correction must be subtracted: R − R k kᵀ R / (1 + kᵀ R k)"
        assert not _close(got, R - uu / (1 - s)) and not _close(got, R + uu / (1 - s)), (
            "the denominator is 1 + kᵀ R k (adding k kᵀ); 1 − kᵀ R k belongs to the downdate, which removes it")
        assert not _close(got, R - uu), "divide the correction by 1 + kᵀ R k"
        raise AssertionError(f"(A + k kᵀ)⁻¹ differs (max abs error {float((got - ref).abs().max()):.3g}) "
                             f"for B={B}, d={d}")


# ---------------------------------------------------------------- 2. the mesa output at one position
@exercise(part=PART, name="mesa_output_at", title="The mesa layer at one position, by a direct solve",
          difficulty="★☆☆", minutes=10,
          hint="out_t = (Σ_{t'≤t} v_{t'} k_{t'}ᵀ)(Σ_{t'≤t} k_{t'} k_{t'}ᵀ + λI)⁻¹ q_t: keep rows 0..t (t included), "
               "add λ (the ridge λ itself) to the diagonal, solve instead of inverting.",
          stub='''def mesa_output_at(q, k, v, lam, t):
    """One head, one sequence: q, k (T, dk), v (T, dv), ridge λ > 0, 0-based position t -> out_t (dv,)."""
    # YOUR CODE HERE
    raise NotImplementedError("mesa_output_at")
''')
def check_mesa_output_at(fn) -> None:
    for seed, (T, dk, dv), lam in ((0, (9, 4, 3), 0.3), (1, (12, 5, 5), 4.0)):
        q, k, v = _qkv(seed, T, dk, dv)
        full = mesa.mesa_attention(q[None, None], k[None, None], v[None, None], lam)[0, 0]  # (T, dv)
        for t in (T - 1, 3, 0):
            got = _expect(fn(q, k, v, lam, t), (dv,), "mesa_output_at(q, k, v, lam, t)")
            if _close(got, full[t]):
                continue
            inverse = mesa.mesa_attention(q[None, None], k[None, None], v[None, None], 1 / lam)[0, 0, t]
            assert not _close(got, inverse), (
                f"you used 1/λ = {1 / lam:g} where the ridge λ = {lam:g} goes: λ I is added to Σ k kᵀ (the official "
                "code stores 1/λ, this course stores λ)")
            K, V = k[:t], v[:t]
            early = V.T @ (K @ torch.linalg.solve(K.T @ K + lam * torch.eye(dk, dtype=F64), q[t]))  # 0 at t = 0
            assert not _close(got, early), "include the pair at t itself: the sums run over t' ≤ t, not t' < t"
            raise AssertionError(f"out_t differs from the mesa layer at t={t} (T={T}, λ={lam}): "
                                 f"max abs error {float((got - full[t]).abs().max()):.3g}")


# ---------------------------------------------------------------- 3. ridge on the pairs seen so far
@exercise(part=PART, name="ridge_next_state", title="Ridge regression on the pairs seen so far",
          difficulty="★★☆", minutes=20,
          hint="At position t fit W_t = (Σ_{j≤t} s_j s_{j−1}ᵀ)(Σ_{j≤t} s_{j−1} s_{j−1}ᵀ + λI)⁻¹ with s_0 = 0 "
               "(cumulative sums over t of outer products), then predict ŝ_{t+1} = W_t s_t.",
          stub='''def ridge_next_state(states, lam):
    """states (B, T, D) = s_1 … s_T -> (B, T, D): at every t the ridge (λ) prediction W_t s_t from the pairs
    (s_{j−1}, s_j), j ≤ t, with s_0 = 0."""
    # YOUR CODE HERE
    raise NotImplementedError("ridge_next_state")
''')
def check_ridge_next_state(fn) -> None:
    for seed, (B, T, D), lam in ((3, (4, 14, 3), 1e-2), (4, (2, 20, 5), 0.5)):
        s = _states(seed, B, T, D)
        got = _expect(fn(s.clone(), lam), (B, T, D), "ridge_next_state(states, lam)")
        ref = solvers.causal_ridge_predict(s, lam, "j<=t")
        if _close(got, ref):
            continue
        assert not _close(got, solvers.causal_ridge_predict(s, lam, "j<t")), (
            "you fit on the pairs j < t; the mesa layer's sums include the newest pair (s_{t−1}, s_t): j ≤ t")
        assert not _close(got, solvers.causal_ridge_predict(s, 1 / lam, "j<=t")), (
            f"you used 1/λ = {1 / lam:g} where the ridge λ = {lam:g} goes")
        raise AssertionError(f"the predictions differ from ridge on the pairs j ≤ t (max abs error "
                             f"{float((got - ref).abs().max()):.3g}, λ={lam}); check s_0 = 0 and which state is the "
                             "input (s_{j−1}) and which the target (s_j)")


# ---------------------------------------------------------------- 4. the official 1/λ parametrisation
@exercise(part=PART, name="ridge_from_official", title="From the official lambdas to the ridge λ",
          difficulty="★☆☆", minutes=5,
          hint="The official recursion starts at R_0 = λ_s I = (Σ k kᵀ + ridge·I)⁻¹ before any key, so ridge = 1/λ_s; "
               "λ_s ≤ 0 makes R_0 indefinite (no ridge problem at all): raise ValueError.",
          stub='''def ridge_from_official(lambdas):
    """The official mesa layer's per-head parameter (H,) (its recursion starts at R_0 = lambdas · I) -> the ridge
    λ (H,) of Σ k kᵀ + λ I. Raise ValueError when any entry is not > 0."""
    # YOUR CODE HERE
    raise NotImplementedError("ridge_from_official")
''')
def check_ridge_from_official(fn) -> None:
    lambdas = torch.tensor([1.0, 20.0, 0.25], dtype=F64)
    got = _expect(fn(lambdas.clone()), (3,), "ridge_from_official(lambdas)")
    got = got.detach().to(F64)
    assert not torch.allclose(got, lambdas), (
        "these are the official λ_s unchanged: R_0 = λ_s I is the *inverse* of the regulariser, so ridge = 1/λ_s")
    assert torch.allclose(got, 1 / lambdas, rtol=1e-12), f"expected {(1 / lambdas).tolist()}, got {got.tolist()}"
    # the ridge λ it returns must make the course's layer reproduce the official recursion from R_0 = λ_s I
    q, k, v = (x[None, None] for x in _qkv(5, 6, 3, 2))
    R, out = torch.eye(3, dtype=F64) * lambdas[1], []
    for t in range(6):
        R = mesa.sherman_morrison_update(R, k[0, 0, t])
        out.append((v[0, 0, : t + 1].T @ k[0, 0, : t + 1]) @ R @ q[0, 0, t])
    assert torch.allclose(mesa.mesa_attention(q, k, v, float(got[1]))[0, 0], torch.stack(out), rtol=1e-10), (
        "with your ridge λ the mesa layer does not reproduce the official recursion from R_0 = λ_s I")
    for bad in ([1.0, 0.0, 2.0], [-0.5, 1.0, 1.0]):
        try:
            fn(torch.tensor(bad, dtype=F64))
        except ValueError:
            continue
        raise AssertionError(f"lambdas={bad}: a non-positive λ_s must raise ValueError (R_0 = λ_s I would not be "
                             "positive definite, so the layer would solve no regression problem)")
