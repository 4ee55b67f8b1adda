"""Exercises of Part IV, chapter "Other sequences: contracting and partially observed systems".

Each reference solution below is the exact code the chapter shows in its solution block (a test keeps them
identical); each stub is what the student edition shows instead. The checkers compare against the package
(:func:`icl_course.mesa.history_tokens`, :func:`icl_course.mesa.contracting_transition`,
:func:`icl_course.mesa.history_ridge_predict`, :func:`icl_course.mesa.zero_predictor_loss`) on fixed seeds and name
the classic slips: the history stacked oldest first or wrapped around instead of zero-padded, ``Uᵀ`` for ``U⁻¹``, the
current history as the key, and a decay of ``λ^t`` where the loss needs ``λ^{2t}``.
"""

from __future__ import annotations

import torch

from ... import mesa, runtime
from .. import exercise
from ._common import PART, _expect

F64 = torch.float64


def _obs(seed: int, B: int = 3, T: int = 9, p: int = 2) -> torch.Tensor:
    return torch.randn(B, T, p, generator=runtime.generator(seed), dtype=F64)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    """Equal to float32 round-off; every slip the checkers name is off by far more."""
    return bool(torch.allclose(a.detach().to(F64), b.to(F64), rtol=tol, atol=tol * 1e-2))


# ---------------------------------------------------------------- 1. the stacked history
@exercise(part=PART, name="history_stack", title="Stack the last k observations", difficulty="★☆☆", minutes=10,
          hint="Put k − 1 zero observations in front of the sequence; the i-th block of z_t is then the padded "
               "sequence shifted by i positions. The newest observation comes first.",
          stub='''def history_stack(obs, k):
    """obs (B, T, p) -> z_t = [o_t, o_(t−1), …, o_(t−k+1)] (zeros before o_1), (B, T, k·p)."""
    # YOUR CODE HERE
    raise NotImplementedError("history_stack")
''')
def check_history_stack(fn) -> None:
    for seed, k in ((1, 3), (2, 2)):
        obs = _obs(seed)
        B, T, p = obs.shape
        got = _expect(fn(obs.clone(), k), (B, T, k * p), "history_stack(obs, k)")
        ref = mesa.history_tokens(obs, k)
        if _close(got, ref):
            continue
        oldest_first = torch.cat([ref[..., (k - 1 - i) * p:(k - i) * p] for i in range(k)], dim=-1)
        assert not _close(got, oldest_first), "z_t starts with the newest observation o_t, then o_(t−1), …"
        rolled = torch.cat([torch.roll(obs, i, dims=1) for i in range(k)], dim=-1)
        assert not _close(got, rolled), "before o_1 the history is zero: torch.roll wraps the last observations round"
        raise AssertionError(f"the history differs (max abs error {float((got - ref).abs().max()):.3g})")


# ---------------------------------------------------------------- 2. a contracting transition
@exercise(part=PART, name="contracting_w", title="A transition with chosen eigenvalues", difficulty="★☆☆", minutes=5,
          hint="W U = U diag(λ) says that the columns of U are eigenvectors with eigenvalues λ; solve for W.",
          stub='''def contracting_w(eigenvalues, U):
    """eigenvalues (B, D), eigenvectors U (B, D, D) as columns -> W (B, D, D) with W U = U diag(λ)."""
    # YOUR CODE HERE
    raise NotImplementedError("contracting_w")
''')
def check_contracting_w(fn) -> None:
    gen = runtime.generator(3)
    lam = 0.3 + 0.6 * torch.rand(2, 4, generator=gen, dtype=F64)
    U = torch.randn(2, 4, 4, generator=gen, dtype=F64)
    got = _expect(fn(lam.clone(), U.clone()), (2, 4, 4), "contracting_w(eigenvalues, U)")
    ref = mesa.contracting_transition(lam, U)
    if _close(got, ref):
        return
    assert not _close(got, U @ torch.diag_embed(lam) @ U.transpose(1, 2)), (
        "Uᵀ = U⁻¹ only for orthogonal U: the official eigenvectors are Gaussian, use the inverse")
    assert not _close(got, torch.linalg.inv(U) @ torch.diag_embed(lam) @ U), (
        "U⁻¹ diag(λ) U has the rows of U⁻¹ as left eigenvectors; the columns of U must satisfy W U = U diag(λ)")
    raise AssertionError(f"W differs (max abs error {float((got - ref).abs().max()):.3g})")


# ---------------------------------------------------------------- 3. history ridge as a mesa layer
@exercise(part=PART, name="history_ridge_mesa", title="History ridge is one mesa head", difficulty="★☆☆", minutes=5,
          hint="The objective regresses o_j on z_(j−1) over j ≤ t and applies the fit to z_t: keys are the inputs of "
               "the regression, values its targets, the query what the fit is applied to. mesa_attention takes "
               "(B, H, T, d) tensors.",
          stub='''def history_ridge_mesa(obs, k, lam):
    """obs (B, T, p) -> ô_(t+1) of ridge regression of o_j on z_(j−1), j ≤ t, via mesa.mesa_attention, (B, T, p)."""
    # YOUR CODE HERE
    raise NotImplementedError("history_ridge_mesa")
''')
def check_history_ridge_mesa(fn) -> None:
    for seed, k, lam in ((4, 2, 0.1), (5, 3, 1.0)):
        obs = _obs(seed)
        got = _expect(fn(obs.clone(), k, lam), tuple(obs.shape), "history_ridge_mesa(obs, k, lam)")
        ref = mesa.history_ridge_predict(obs, k, lam)
        if _close(got, ref):
            continue
        z = mesa.history_tokens(obs, k)
        same = mesa.mesa_attention(z[:, None], z[:, None], obs[:, None], lam)[:, 0]
        assert not _close(got, same), "the key of token j is z_(j−1), the history before o_j — not z_j"
        assert not _close(got, mesa.history_ridge_predict(obs, 1, lam)), (
            "that is ridge on single observations (k = 1): stack k of them")
        raise AssertionError(f"the predictions differ (max abs error {float((got - ref).abs().max()):.3g})")


# ---------------------------------------------------------------- 4. the zero predictor on contracting sequences
@exercise(part=PART, name="zero_loss",
          title="How fast a contracting sequence fades", difficulty="★☆☆", minutes=5,
          hint="Write s_(t+1) = W^t s_1 + Σ_(m<t) W^m ε with s_1 ~ U(−1, 1)^D and ε ~ N(0, σ²I) independent, and use "
               "that W = U diag(λ) Uᵀ is symmetric with orthogonal U.",
          stub='''def zero_loss(eigenvalues, t, noise_std):
    """eigenvalues (B, D) of a symmetric W -> ½ E||s_(t+1)||², the zero predictor's loss at position t, (B,)."""
    # YOUR CODE HERE
    raise NotImplementedError("zero_loss")
''')
def check_zero_loss(fn) -> None:
    lam = 0.3 + 0.6 * torch.rand(3, 5, generator=runtime.generator(6), dtype=F64)
    for t, sig in ((1, 0.01), (4, 0.3)):
        got = _expect(torch.as_tensor(fn(lam.clone(), t, sig)), (3,), "zero_loss(eigenvalues, t, noise_std)")
        ref = mesa.zero_predictor_loss(lam, t, sig)
        if _close(got, ref, 1e-6):
            continue
        assert not _close(got, 2 * ref, 1e-6), "the loss is ½ Σ_d: keep the factor ½"
        assert not _close(got, mesa.zero_predictor_loss(lam, t, 0.0), 1e-6), (
            "the noise added at every step adds σ² Σ_(m<t) Σ_i λ_i^(2m)")
        assert not _close(got, mesa.zero_predictor_loss(lam.sqrt(), t, sig), 1e-6), (
            "a squared norm decays like λ^(2t), not λ^t")
        assert t == 1 or not _close(got, mesa.zero_predictor_loss(lam, t - 1, sig), 1e-6), (
            "position t predicts s_(t+1) = W^t s_1 + …: t steps after s_1")
        raise AssertionError(f"got {got.tolist()}, expected {ref.tolist()} at t={t}, noise_std={sig}")


__all__ = ["check_history_stack", "check_contracting_w", "check_history_ridge_mesa", "check_zero_loss"]
