"""Exercises of Part IV, chapter "One family: linear attention, the delta rule, the mesa layer".

Each reference solution below is the exact code the chapter shows in its solution block (a test keeps them
identical); each stub is what the student edition shows instead. The checkers compare against the package
(:func:`icl_course.solvers.causal_delta_predict`, :func:`icl_course.mesa.causal_cg_ridge_predict`,
:func:`icl_course.mesa.causal_gated_delta_predict`) or a loop that reads like the equation, on fixed seeds, and name
the classic slips: a flipped sign, a transposed outer product, the Hebbian update in place of the delta rule,
steepest descent in place of conjugate gradients, and a gate on the wrong term.
"""

from __future__ import annotations

import torch

from ... import mesa, runtime, solvers
from .. import exercise
from ._common import PART, _expect, _states

F64 = torch.float64


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.allclose(a.detach().to(F64), b, rtol=1e-8, atol=1e-11))


def _rand(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=runtime.generator(seed), dtype=F64)


def _outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., :, None] * b[..., None, :]  # (B, da, db)


# ---------------------------------------------------------------- 1. one delta-rule step
@exercise(part=PART, name="delta_step", title="One delta-rule step", difficulty="★☆☆", minutes=5,
          hint="S ← S + β (v − S k) kᵀ: first the error of the current memory on this key, then an outer product whose "
               "rows follow the value (dv) and columns the key (dk).",
          stub='''def delta_step(S, k, v, beta):
    """One delta-rule update of the fast weights: S (B, dv, dk), k (B, dk), v (B, dv), β a float -> (B, dv, dk)."""
    # YOUR CODE HERE
    raise NotImplementedError("delta_step")
''')
def check_delta_step(fn) -> None:
    for seed, (B, dv, dk), beta in ((0, (3, 2, 5), 0.3), (1, (2, 4, 4), 0.7)):
        S, k, v = _rand(seed, B, dv, dk), _rand(seed + 10, B, dk), _rand(seed + 20, B, dv)
        got = _expect(fn(S.clone(), k.clone(), v.clone(), beta), (B, dv, dk), "delta_step(S, k, v, beta)")
        error = v - (S @ k[..., None])[..., 0]
        ref = S + beta * _outer(error, k)
        if _close(got, ref):
            continue
        assert not _close(got, S - beta * _outer(error, k)), (
            "the sign is flipped: the step goes *towards* v, S + β (v − S k) kᵀ (a GD step on ½‖v − S k‖²)")
        assert not _close(got, S + beta * _outer(v, k)), (
            "this is linear attention's (Hebbian) update S + β v kᵀ: the delta rule first subtracts what the memory "
            "already returns for k, S k")
        if dv == dk:
            assert not _close(got, S + beta * _outer(k, error)), (
                "the outer product is transposed: (v − S k) kᵀ has the value's error as its column, the key as its row")
        raise AssertionError(f"S differs from S + β (v − S k) kᵀ (max abs error {float((got - ref).abs().max()):.3g}) "
                             f"for dv={dv}, dk={dk}, β={beta}")


# ---------------------------------------------------------------- 2. a memory that overwrites
@exercise(part=PART, name="delta_memory", title="Write a sequence into a delta-rule memory", difficulty="★☆☆",
          minutes=10,
          hint="Start from S = 0 of shape (dv, dk) and apply S ← S + β (v_t − S k_t) k_tᵀ for t = 1 … T in order; "
               "each step sees the memory the previous steps left.",
          stub='''def delta_memory(keys, values, beta):
    """keys (T, dk), values (T, dv), β a float -> the fast weights S_T (dv, dk) of the delta rule from S_0 = 0."""
    # YOUR CODE HERE
    raise NotImplementedError("delta_memory")
''')
def check_delta_memory(fn) -> None:
    for seed, (T, dk, dv), beta in ((2, (6, 4, 3), 0.2), (3, (9, 5, 5), 0.5)):
        keys, values = _rand(seed, T, dk), _rand(seed + 10, T, dv)
        got = _expect(fn(keys.clone(), values.clone(), beta), (dv, dk), "delta_memory(keys, values, beta)")
        ref = torch.zeros(dv, dk, dtype=F64)
        for k, v in zip(keys, values):
            ref = ref + beta * torch.outer(v - ref @ k, k)
        if _close(got, ref):
            continue
        assert not _close(got, beta * values.T @ keys), (
            "you summed β v_t k_tᵀ: that is linear attention; the delta rule writes v_t − S_{t−1} k_t")
        backwards = torch.zeros(dv, dk, dtype=F64)
        for k, v in zip(keys.flip(0), values.flip(0)):
            backwards = backwards + beta * torch.outer(v - backwards @ k, k)
        assert not _close(got, backwards), "the pairs must be written in order t = 1 … T (the order matters)"
        flipped = torch.zeros(dv, dk, dtype=F64)
        for k, v in zip(keys, values):
            flipped = flipped - beta * torch.outer(v - flipped @ k, k)
        assert not _close(got, flipped), "the sign is flipped: each write adds β (v_t − S k_t) k_tᵀ"
        raise AssertionError(f"S_T differs (max abs error {float((got - ref).abs().max()):.3g}, T={T}, β={beta})")
    # the property the chapter asks about: orthonormal keys and β = 1 recall every value exactly
    Q, _ = torch.linalg.qr(_rand(4, 5, 5))
    values = _rand(5, 5, 3)
    S = fn(Q.T.contiguous(), values.clone(), 1.0)  # keys = the rows of Qᵀ, orthonormal
    assert _close(S @ Q, values.T), "with orthonormal keys and β = 1 the memory must return every stored value"


# ---------------------------------------------------------------- 3. conjugate gradients
def _steepest_descent(A: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    x, r = torch.zeros_like(b), b.clone()
    for _ in range(steps):  # p = r at every step
        Ar = (A @ r[..., None])[..., 0]
        a = (r * r).sum(-1, keepdim=True) / (r * Ar).sum(-1, keepdim=True)
        x, r = x + a * r, r - a * Ar
    return x


_SD_HINT = "this is steepest descent (p = r every step): the new direction adds (r_newᵀ r_new / r_oldᵀ r_old) p_old"


@exercise(part=PART, name="cg_solve", title="Conjugate gradients, a fixed number of steps", difficulty="★★☆",
          minutes=20,
          hint="From x = 0, r = p = b: α = rᵀr / pᵀAp, x ← x + αp, r ← r − αAp, then "
               "p ← r_new + (r_newᵀr_new / rᵀr) p. With d steps on a d × d system the answer is A⁻¹ b up to round-off.",
          stub='''def cg_solve(A, b, steps):
    """`steps` conjugate-gradient steps from x = 0 for A x = b: A (B, d, d) symmetric positive definite, b (B, d)
    -> x (B, d)."""
    # YOUR CODE HERE
    raise NotImplementedError("cg_solve")
''')
def check_cg_solve(fn) -> None:
    B, d = 3, 5
    X = _rand(6, B, 3 * d, d)
    A = X.mT @ X / (3 * d) + 0.5 * torch.eye(d, dtype=F64)  # (B, d, d), well conditioned
    b = _rand(7, B, d)
    exact = torch.linalg.solve(A, b)
    got = _expect(fn(A.clone(), b.clone(), d), (B, d), "cg_solve(A, b, steps)")
    if not _close(got, exact):
        assert not _close(got, -exact), "the sign is flipped: the residual is r = b − A x, and x moves along +p"
        assert not _close(got, _steepest_descent(A, b, d)), _SD_HINT
        raise AssertionError(f"{d} steps on a {d} × {d} system must solve it: max abs error "
                             f"{float((got - exact).abs().max()):.3g}")
    # fewer steps: the k-th iterate of the mesa layer's CG (keys s_{j−1}, right-hand side s_t), positions t ≥ 2 (at
    # t = 1 the system is λI and CG is done after one step)
    s = _states(8, B=2, T=7, D=4)
    prev = torch.cat([torch.zeros_like(s[:, :1]), s[:, :-1]], dim=1)
    A_t = (torch.cumsum(_outer(prev, prev), dim=1) + 0.1 * torch.eye(4, dtype=F64))[:, 1:]  # (B, T−1, D, D)
    C_t = torch.cumsum(_outer(s, prev), dim=1)[:, 1:]
    for k in (1, 2, 3):
        z = fn(A_t.flatten(0, 1), s[:, 1:].flatten(0, 1), k).reshape(s[:, 1:].shape)
        if _close((C_t @ z[..., None])[..., 0], mesa.causal_cg_ridge_predict(s, 0.1, k)[:, 1:]):
            continue
        assert not _close(z, _steepest_descent(A_t, s[:, 1:], k)), _SD_HINT
        raise AssertionError(f"after {k} step(s) your iterate differs from conjugate gradients started at 0")


# ---------------------------------------------------------------- 4. the gated delta rule
@exercise(part=PART, name="gated_delta_step", title="One gated delta-rule step", difficulty="★☆☆", minutes=5,
          hint="S ← α S (I − β k kᵀ) + β v kᵀ: the gate α multiplies only the old memory; the new pair is written "
               "at full strength β. With α = 1 it is the delta rule.",
          stub='''def gated_delta_step(S, k, v, alpha, beta):
    """One Gated DeltaNet update: S (B, dv, dk), k (B, dk), v (B, dv), floats α (gate) and β -> (B, dv, dk)."""
    # YOUR CODE HERE
    raise NotImplementedError("gated_delta_step")
''')
def check_gated_delta_step(fn) -> None:
    for seed, (B, dv, dk), alpha, beta in ((9, (3, 2, 5), 0.8, 0.4), (10, (2, 3, 3), 0.5, 0.9)):
        S, k, v = _rand(seed, B, dv, dk), _rand(seed + 10, B, dk), _rand(seed + 20, B, dv)
        got = _expect(fn(S.clone(), k.clone(), v.clone(), alpha, beta), (B, dv, dk),
                      "gated_delta_step(S, k, v, alpha, beta)")
        kept = S - beta * _outer((S @ k[..., None])[..., 0], k)
        ref = alpha * kept + beta * _outer(v, k)
        if _close(got, ref):
            continue
        assert not _close(got, alpha * (kept + beta * _outer(v, k))), (
            "the gate also shrank the new write: only the old memory decays, α S (I − β k kᵀ) + β v kᵀ")
        assert not _close(got, kept + beta * _outer(v, k)), "the gate α is missing: with α = 1 this is the delta rule"
        assert not _close(got, alpha * (S + beta * _outer((S @ k[..., None])[..., 0], k)) + beta * _outer(v, k)), (
            "the erase term has the wrong sign: S (I − β k kᵀ) removes what the memory returns for k")
        raise AssertionError(f"S differs (max abs error {float((got - ref).abs().max()):.3g}, α={alpha}, β={beta})")
    # with α = 1 a whole sequence of steps is the delta rule of the package
    s = _states(11, B=2, T=6, D=3)
    prev = torch.cat([torch.zeros_like(s[:, :1]), s[:, :-1]], dim=1)
    S, preds = torch.zeros(2, 3, 3, dtype=F64), []
    for t in range(6):
        S = fn(S, prev[:, t], s[:, t], 1.0, 0.3)
        preds.append((S @ s[:, t, :, None])[..., 0])
    assert _close(torch.stack(preds, 1), solvers.causal_delta_predict(s, 0.3)), (
        "with α = 1, steps over a sequence must reproduce solvers.causal_delta_predict")
