"""Sequence data for Part IV: noisy linear dynamical systems, one hidden matrix per sequence, their partial
observations, and the constructed tokens that lay the regression pairs out for attention.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .. import _checks

__all__ = ["DynamicsBatch", "haar_orthogonal", "sample_linear_dynamics", "mesa_tokens", "observe"]


class DynamicsBatch(NamedTuple):
    """Sequences of a noisy linear dynamical system ``s_{t+1} = W s_t + ε``, one ``W`` per sequence.

    Attributes
    ----------
    states : (B, T+1, D) the states ``s_1 … s_{T+1}``
    W : (B, D, D) each sequence's transition matrix
    """

    states: torch.Tensor
    W: torch.Tensor

    @property
    def inputs(self) -> torch.Tensor:
        """``s_1 … s_T`` ``(B, T, D)``: what the model sees at positions ``t = 1 … T``."""
        return self.states[:, :-1]

    @property
    def targets(self) -> torch.Tensor:
        """``s_2 … s_{T+1}`` ``(B, T, D)``: what it must predict at each position."""
        return self.states[:, 1:]


def haar_orthogonal(batch_size: int, dim: int, *, generator: torch.Generator | None = None,
                    dtype: torch.dtype = torch.float32, device: str | torch.device | None = None) -> torch.Tensor:
    """``(B, D, D)`` Haar-random orthogonal matrices: QR of a Gaussian matrix, each column of ``Q`` times the sign of
    ``R``'s diagonal entry (Mezzadri 2007) — what ``jax.random.orthogonal`` draws (``det = ±1``)."""
    A = torch.randn(_checks.positive_int("batch_size", batch_size), _checks.positive_int("dim", dim), dim,
                    generator=generator, dtype=torch.float64, device=device)
    Q, R = torch.linalg.qr(A)
    return (Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1))[:, None, :]).to(dtype)


def sample_linear_dynamics(
    batch_size: int,
    seq_len: int = 50,
    dim: int = 10,
    *,
    noise_std: float = 0.01,
    kind: str = "orthogonal",
    eigenvalues: tuple[float, float] = (0.3, 0.9),
    eigenvectors: str = "gaussian",
    init_range: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> DynamicsBatch:
    """Draw ``batch_size`` sequences ``s_{t+1} = W s_t + σ ε_t`` of ``seq_len + 1`` states, ``s_1 ~ U(−r, r)^D``.

    Parameters
    ----------
    kind : ``"orthogonal"`` or ``"contracting"``
        ``"orthogonal"``: ``W`` Haar-random on O(D) per sequence (:func:`haar_orthogonal`), so nothing about ``W``
        can be memorised across sequences and ``‖s_t‖`` stays put (up to the noise). ``"contracting"``:
        ``W = U diag(λ) U⁻¹`` with ``U`` Gaussian, ``D − 1`` eigenvalues ``~ U(eigenvalues)`` and one equal to the
        upper end (the official contracting generator's eigenvalues and Gaussian eigenvectors, **without** its clip of
        the states at ±10).
    eigenvectors : ``"gaussian"`` or ``"orthogonal"``
        For ``kind="contracting"``: ``U`` Gaussian (as the official generator; ``W`` is then non-normal and ``‖s_t‖``
        can grow by orders of magnitude before it decays — the official generator clips states at ±10, this one does
        not) or Haar-orthogonal
        (``W = U diag(λ) Uᵀ`` symmetric, so ``‖s_{t+1}‖ ≤ 0.9 ‖s_t‖`` up to the noise).
    noise_std : float
        ``σ`` (official 0.01).
    init_range : float
        ``r``: ``s_1 ~ U(−r, r)^D`` (official 1).

    Returns
    -------
    DynamicsBatch
        ``states (B, T+1, D)`` and ``W (B, D, D)``; ``inputs``/``targets`` are the ``(B, T, D)`` views.

    References
    ----------
    von Oswald et al. (2023) and the official ``LinearSequenceDataGenerator`` / contracting generator;
    Part IV, "Causal linear attention is one GD step".
    """
    B, T, D = (_checks.positive_int(n, v) for n, v in (("batch_size", batch_size), ("seq_len", seq_len), ("dim", dim)))
    sig = _checks.positive_float("noise_std", noise_std, allow_zero=True)
    r = _checks.positive_float("init_range", init_range)
    kw = {"generator": generator, "dtype": dtype, "device": device}
    if kind == "orthogonal":
        W = haar_orthogonal(B, D, **kw)
    elif kind == "contracting":
        lo, hi = (_checks.positive_float("eigenvalues", v, allow_zero=True) for v in eigenvalues)
        if not lo <= hi:
            raise ValueError(f"eigenvalues must be (low, high) with low <= high, got {eigenvalues}")
        lam = torch.cat([lo + (hi - lo) * torch.rand(B, D - 1, **kw), torch.full((B, 1), hi, dtype=dtype,
                                                                                  device=device)], dim=1)
        lam = torch.gather(lam, 1, torch.argsort(torch.rand(B, D, generator=generator, device=device), dim=1))
        if eigenvectors == "gaussian":
            U = torch.randn(B, D, D, **kw).double()
        elif eigenvectors == "orthogonal":
            U = haar_orthogonal(B, D, generator=generator, dtype=torch.float64, device=device)
        else:
            raise ValueError(f"eigenvectors must be 'gaussian' or 'orthogonal', got {eigenvectors!r}")
        W = (U @ torch.diag_embed(lam.double()) @ torch.linalg.inv(U)).to(dtype)
    else:
        raise ValueError(f"kind must be 'orthogonal' or 'contracting', got {kind!r}")
    s = [(2 * torch.rand(B, D, **kw) - 1) * r]  # s_1, (B, D)
    noise = torch.randn(B, T, D, **kw) * sig
    for t in range(T):
        s.append((W @ s[-1][..., None])[..., 0] + noise[:, t])
    return DynamicsBatch(torch.stack(s, dim=1), W)  # (B, T+1, D)


def mesa_tokens(states: torch.Tensor, *, masked: bool = False) -> torch.Tensor:
    """The constructed tokens ``e_t = (0, s_t, s_t, s_{t−1})`` (``s_0 = 0``) for ``states (B, T, D)`` → ``(B, T, 4D)``.

    The prediction of ``s_{t+1}`` is read from the zero slot ``e_t[:D]`` (positive sign, residual included); each
    token holds the pair ``(s_{t−1}, s_t)`` an attention layer can regress on. ``masked=True`` gives the official
    ``mask_inputs`` tokens ``(0, 0, s_t, s_{t−1})`` of the one-layer experiment.

    References
    ----------
    von Oswald et al. (2023) (tokens built from consecutive states) and the official
    ``ConstructedFullSeqGenerator``; Part IV, "Causal linear attention is one GD step".
    """
    _checks.tensor("states", states, 3, "(B, T, D)")
    prev = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)  # s_{t-1}, (B, T, D)
    first = torch.zeros_like(states) if masked else states
    return torch.cat([torch.zeros_like(states), first, states, prev], dim=-1)  # (B, T, 4D)


def observe(states: torch.Tensor, obs_dim: int, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor,
                                                                                                          torch.Tensor]:
    """Partial observations ``o_t = C s_t`` with ``C`` ``(obs_dim, D)``, entries ``0.5·N(0, 1)``, drawn per sequence
    (the official generator with ``eye_obs=False``): ``(observations (B, T, obs_dim), C (B, obs_dim, D))``.

    With ``obs_dim < D`` the observations alone do not follow a first-order linear rule; a model must combine several
    past observations (the official partially observed tokens stack ``o_t, o_{t−1}, …``).
    """
    _checks.tensor("states", states, 3, "(B, T, D)")
    B, _, D = states.shape
    C = 0.5 * torch.randn(B, _checks.positive_int("obs_dim", obs_dim), D, generator=generator, dtype=states.dtype,
                          device=states.device)
    return states @ C.transpose(1, 2), C  # (B, T, obs_dim)
