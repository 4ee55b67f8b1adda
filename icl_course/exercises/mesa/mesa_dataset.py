"""Exercises of Part IV, chapter "Building the training set: a softmax layer copies the previous token".

Each reference solution below is the exact code the chapter shows in its solution block (a test keeps them
identical); each stub is what the student edition shows instead. The checkers compare against the package
(:func:`icl_course.mesa.positional_codes`, :func:`icl_course.mesa.constructed_copy_model`,
:func:`icl_course.solvers.causal_gd_predict`) on fixed seeds and name the classic slips: a rotation by the wrong
angle sign, attention to the token itself instead of its predecessor, and a copy that is off by one position.
"""

from __future__ import annotations

import torch

from ... import mesa, solvers
from .. import exercise
from ._common import PART, _expect, _states

F64 = torch.float64


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    """Equal to float32 round-off: a correct answer computed in float32 (the default dtype of the position codes)
    passes, while every slip the checkers name is off by far more."""
    return bool(torch.allclose(a.detach().to(F64), b.to(F64), rtol=tol, atol=tol * 1e-2))


# ---------------------------------------------------------------- 1. the rotation that shifts a position code
@exercise(part=PART, name="shift_rotation", title="The rotation that moves a position code one step",
          difficulty="★★☆", minutes=15,
          hint="The codes are p_t = (sin tω_1 … sin tω_n, cos tω_1 … cos tω_n) with ω_f = base^(−f/n); expand "
               "sin((t+1)ω) and cos((t+1)ω) with the angle-addition formulas: a 2 × 2 rotation by ω per frequency.",
          stub='''def shift_rotation(dim, base=100.0):
    """The (dim, dim) matrix R with R p_t = p_{t+1} for the sinusoidal codes of mesa.positional_codes(T, dim, base)."""
    # YOUR CODE HERE
    raise NotImplementedError("shift_rotation")
''')
def check_shift_rotation(fn) -> None:
    for dim, base in ((16, 100.0), (6, 10.0)):
        pe = mesa.positional_codes(30, dim, base=base, dtype=F64)  # (T, dim)
        R = _expect(fn(dim, base), (dim, dim), "shift_rotation(dim, base)")
        if _close(pe[:-1] @ R.T.to(F64), pe[1:]):
            continue
        # (for a rotation Rᵀ = R⁻¹: a transposed answer is the same slip as a rotation the wrong way)
        assert not _close(pe[1:] @ R.T.to(F64), pe[:-1]), (
            "this R moves a code one step back: rotate by +ω, not −ω (or transpose: p_(t+1) = R p_t acts on columns)")
        raise AssertionError(f"R p_t differs from p_(t+1) (max abs error "
                             f"{float((pe[:-1] @ R.T.to(F64) - pe[1:]).abs().max()):.3g}) for dim={dim}, base={base}")


# ---------------------------------------------------------------- 2. the copy head's attention
@exercise(part=PART, name="copy_attention", title="The attention pattern of a previous-token head",
          difficulty="★☆☆", minutes=10,
          hint="Score query t against key j by β p_t·p_{j+1} (the key is the code moved one step on), mask j > t "
               "with −∞, softmax each row.",
          stub='''def copy_attention(T, dim, beta):
    """(T, T) causal softmax attention whose query t scores key j by β p_t·p_(j+1) (codes: mesa.positional_codes)."""
    # YOUR CODE HERE
    raise NotImplementedError("copy_attention")
''')
def check_copy_attention(fn) -> None:
    for T, dim, beta in ((12, 16, 5.0), (20, 8, 30.0)):
        model = mesa.constructed_copy_model(0.03, beta, pe_dim=dim, dtype=F64)
        E = mesa.raw_tokens(_states(3, B=1, T=T, D=mesa.DYNAMICS.dim), dim)
        with torch.no_grad():
            ref = model.layers[0].scores(E)[0, 0]  # (T, T)
        got = _expect(fn(T, dim, beta), (T, T), "copy_attention(T, dim, beta)")
        if _close(got, ref):
            continue
        p = mesa.positional_codes(T + 1, dim, dtype=F64)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        itself = torch.softmax((beta * p[:T] @ p[:T].T).masked_fill(~causal, float("-inf")), dim=-1)
        assert not _close(got, itself), "score p_t against the key's code moved one step on (p_(j+1)), not p_j"
        ahead = torch.softmax((beta * p[1:T + 1] @ p[:T].T).masked_fill(~causal, float("-inf")), dim=-1)
        assert not _close(got, ahead), "move the key's code on (β p_t·p_(j+1)), not the query's (β p_(t+1)·p_j)"
        assert bool((got.detach().to(F64).triu(1).abs() < 1e-12).all()), (
            "token t may not attend to later tokens j > t: mask them with −∞ before the softmax")
        assert bool(torch.allclose(got.to(F64).sum(-1), torch.ones(T, dtype=F64))), "every row must sum to 1"
        raise AssertionError(f"the attention differs (max abs error {float((got - ref).abs().max()):.3g}) "
                             f"for T={T}, beta={beta}")


# ---------------------------------------------------------------- 3. one GD step on copied pairs
@exercise(part=PART, name="gd_on_copied", title="One GD step on the pairs a copy head built", difficulty="★☆☆",
          minutes=5,
          hint="Token j now holds (s_j, c_j) with c_j the copied state; causal linear attention with query s_t, "
               "key c_j and value s_j gives η Σ_{j≤t} (c_j·s_t) s_j — GD-1 when c_j = s_(j−1).",
          stub='''def gd_on_copied(states, copied, lr):
    """states, copied (B, T, D): s_t and the copied c_t in token t -> η Σ_(j≤t) (c_j · s_t) s_j, (B, T, D)."""
    # YOUR CODE HERE
    raise NotImplementedError("gd_on_copied")
''')
def check_gd_on_copied(fn) -> None:
    for seed, lr in ((4, 0.05), (5, 0.2)):
        s = _states(seed)
        prev = torch.cat([torch.zeros_like(s[:, :1]), s[:, :-1]], dim=1)
        got = _expect(fn(s.clone(), prev.clone(), lr), tuple(s.shape), "gd_on_copied(states, copied, lr)")
        ref = solvers.causal_gd_predict(s, lr)
        if _close(got, ref):
            continue
        assert not _close(got, lr * (s @ prev.transpose(1, 2)).tril() @ prev), (
            "the values are the states s_j (the targets of the pairs); the copies c_j = s_(j−1) are the keys")
        assert not _close(got, lr * (s @ prev.transpose(1, 2)).tril(-1) @ s), "the sum runs over j ≤ t, t included"
        raise AssertionError(f"the predictions differ from GD-1 (max abs error {float((got - ref).abs().max()):.3g})")


# ---------------------------------------------------------------- 4. what a uniform head copies
@exercise(part=PART, name="uniform_copy", title="What a head that has not learned to copy writes",
          difficulty="★☆☆", minutes=5,
          hint="A softmax head with equal scores gives every visible token j ≤ t the weight 1/t: it writes the "
               "running mean of the states.",
          stub='''def uniform_copy(states):
    """states (B, T, D) -> what a causal softmax head with all scores equal writes at every position, (B, T, D)."""
    # YOUR CODE HERE
    raise NotImplementedError("uniform_copy")
''')
def check_uniform_copy(fn) -> None:
    s = _states(6)
    B, T, D = s.shape
    weights = torch.ones(T, T, dtype=F64).tril()
    ref = (weights / weights.sum(-1, keepdim=True)) @ s
    got = _expect(fn(s.clone()), (B, T, D), "uniform_copy(states)")
    if _close(got, ref):
        return
    assert not _close(got, torch.cumsum(s, dim=1)), "softmax weights sum to 1: divide the sum by the t tokens seen"
    assert not _close(got, torch.cumsum(s, dim=1) / T), "token t sees only the t tokens j ≤ t: divide by t, not T"
    raise AssertionError(f"the running mean differs (max abs error {float((got - ref).abs().max()):.3g})")


__all__ = ["check_shift_rotation", "check_copy_attention", "check_gd_on_copied", "check_uniform_copy"]
