"""Other sequences: contracting and partially observed linear dynamics.

*Contracting* dynamics ``s_{t+1} = W s_t + ε`` with ``W = U diag(λ) U⁻¹``, eigenvalues in ``(0.3, 0.9)`` (the official
contracting generator's eigenvalues): the states decay towards the noise, so later pairs carry less signal, and all
sequences share the prior mean ``E W = λ̄ I`` (``λ̄ ≈ 0.63``). The mesa layer and ridge regression (λ = 1e-3, pairs
``j ≤ t``) are compared with GD-1 at its best step from ``W_0 = 0`` and from ``ĉ I``, and with the context-free
predictors ``ĉ s_t`` and ``ĉ_t s_t`` fitted on other sequences (:func:`prior_gains`, :func:`contracting_curves`).

*Partially observed* dynamics: the model sees ``o_t = C s_t`` with ``C (p, D)``, ``p < D``
(:func:`~icl_course.tasks.observe`). One observation does not determine the next, but the stacked history
``z_t = [o_t, o_{t−1}, …, o_{t−k+1}]`` (zero-padded at the start; :func:`history_tokens`) generically does once
``k p ≥ D`` (observability): for ``t ≥ k`` and without noise, ``o_{t+1}`` is a linear function of ``z_t``. The
in-context objective becomes ridge regression of ``o_j`` on ``z_{j−1}`` (:func:`history_ridge_predict`), which is
exactly ``mesa_attention(q=z_t, k=z_{t−1}, v=o_t, λ)`` (:func:`history_mesa_error`). A mesa layer is trained on the
constructed tokens ``(0, o_t, z_t, z_{t−1})`` (:func:`history_layout`), its prediction of ``o_{t+1}`` read from the
first ``p`` entries, through the one Part IV recipe (``train_sequence_model`` with ``view=observed(p)``). These
tokens are the course's construction: the official ``ConstructedPartObsGenerator`` token is ``z_t`` alone
(``embed_dim // obs_dim`` observations, no zero slot, no ``z_{t−1}``). The Bayes-optimal reference with known ``W``
and ``C`` is the Kalman filter (:func:`kalman_predict`).

References
----------
von Oswald et al. (2023), "Uncovering mesa-optimization algorithms in Transformers" (contracting and partially
observed dynamics); official ``src/data/seq/contracting_seq.py``, ``src/data/seq/linear_seq.py`` (``eye_obs=False``)
and ``src/data/constr_data.py`` (``ConstructedPartObsGenerator``). Part IV, chapter "Other sequences: contracting and
partially observed systems" (``book/part4_variants.ipynb``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch

from .. import _checks, runtime, solvers, tasks, train
from ..causal import CausalStack
from ._common import DYNAMICS, Tokenizer, View, dynamics_eval_set, per_step_loss, train_sequence_model
from ._mesa_attention import MesaLayer, mesa_attention
from ._mesa_model import MESA, new_mesa_model

__all__ = ["VariantSettings", "VARIANTS", "CONTRACTING", "contracting_transition", "zero_predictor_loss",
           "contracting_eval_set", "PriorGains", "prior_gains",
           "gd_step_search", "contracting_curves", "train_contracting_mesa", "observed", "observed_eval_set",
           "history_tokens", "history_layout", "observation_matrix", "kalman_predict",
           "PaddingEffect", "padding_effect", "history_ridge_predict", "HistoryIdentity", "history_mesa_error",
           "history_curves",
           "new_history_mesa_model", "train_history_mesa", "ContractingComparison", "contracting_comparison",
           "HistoryFit", "history_fit"]

CONTRACTING = {"kind": "contracting", "eigenvalues": (0.3, 0.9), "eigenvectors": "orthogonal"}
"""The task keywords of the chapter's contracting dynamics: the official eigenvalues (``min_eig = 0.3``,
``max_eig = 0.9``, one of them equal to 0.9), with orthogonal eigenvectors. The official Gaussian ``U`` makes ``W``
non-normal: states can grow by orders of magnitude before they decay, and the official generator clips them at ±10,
which no linear learner models."""


@dataclass(frozen=True)
class VariantSettings:
    """The chapter's experiments: ridge ``lam`` (the official least-squares baseline's 1e-3); partial observations of
    ``obs_dim`` entries and a history of ``history`` of them for the trained layer; each mesa layer trains for
    ``steps`` updates of :data:`~icl_course.mesa.MESA`'s recipe (batch 32, Adam 1e-3, clip 1); losses are measured
    on ``eval_size`` sequences."""

    lam: float = 1e-3
    obs_dim: int = 5
    history: int = 3
    steps: int = 1500
    eval_size: int = 2000


VARIANTS = runtime.Scales(cpu=VariantSettings(), paper=VariantSettings(steps=MESA.cpu.steps, eval_size=10_000))
"""``cpu``: 1,500 updates per mesa layer (half of :data:`MESA`'s 3,000, about 20 CPU-seconds each), so that two layers
train live in one chapter; ``paper``: :data:`MESA`'s full 3,000 on 10,000 evaluation sequences."""


# ------------------------------------------------------------------------------------------ contracting
def contracting_transition(eigenvalues: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """``W = U diag(λ) U⁻¹`` ``(B, D, D)`` from eigenvalues ``(B, D)`` and eigenvectors ``U (B, D, D)`` (columns)."""
    _checks.tensor("eigenvalues", eigenvalues, 2, "(B, D)")
    _checks.tensor("U", U, 3, "(B, D, D)")
    if U.shape != (*eigenvalues.shape, eigenvalues.shape[1]):
        raise ValueError(f"U must have shape (B, D, D) = {(*eigenvalues.shape, eigenvalues.shape[1])} for eigenvalues "
                         f"{tuple(eigenvalues.shape)}, got {tuple(U.shape)}")
    return U @ torch.diag_embed(eigenvalues.to(U.dtype)) @ torch.linalg.inv(U)


def zero_predictor_loss(eigenvalues: torch.Tensor, t: int, noise_std: float = DYNAMICS.noise_std,
                        init_range: float = 1.0) -> torch.Tensor:
    """The expected loss ``½ E‖s_{t+1}‖²`` ``(B,)`` of predicting 0 at position ``t`` for a symmetric ``W`` with these
    eigenvalues ``(B, D)`` (orthogonal eigenvectors), ``s_1 ~ U(−r, r)^D``: the signal decays like ``λ^{2t}``, the
    noise piles up (the closed form is the chapter's exercise ``zero_loss``)."""
    _checks.tensor("eigenvalues", eigenvalues, 2, "(B, D)")
    t = _checks.positive_int("t", t)
    sig, r = _checks.positive_float("noise_std", noise_std, allow_zero=True), _checks.positive_float("init_range",
                                                                                                    init_range)
    lam2 = eigenvalues**2
    powers = torch.stack([lam2**m for m in range(t)], dim=0).sum((0, 2))  # Σ_{m<t} Σ_i λ_i^{2m}
    return 0.5 * ((lam2**t).sum(-1) * r**2 / 3 + sig**2 * powers)


def contracting_eval_set(n_seqs: int, *, seed: int, dtype: torch.dtype = torch.float32) -> tasks.DynamicsBatch:
    """A fixed set of contracting sequences (:data:`CONTRACTING`) drawn from its own ``seed``."""
    return dynamics_eval_set(n_seqs, seed=seed, dtype=dtype, **CONTRACTING)


def gd_step_search(batch: tasks.DynamicsBatch, lo: float = 0.0, hi: float = 1.0,
                   w0: float = 0.0) -> tuple[float, float]:
    """The single step size η that minimises GD-1's mean loss over all positions on ``batch``: ``(η*, loss)``
    (golden-section search; the official ``opt_eta`` scans a grid). The step starts from ``W_0 = w0·I``."""
    x = batch.inputs
    W0 = None if w0 == 0 else w0 * torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    loss = lambda eta: float(per_step_loss(solvers.causal_gd_predict(x, eta, W0), batch.targets).mean())
    eta = solvers.line_search(loss, lo, hi, tol=1e-5)
    return eta, loss(eta)


class PriorGains(NamedTuple):
    """The context-free predictors ``ŝ_{t+1} = ĉ s_t``: one least-squares gain ``shared`` for all sequences and
    positions, and one per position, ``position`` ``(T,)``."""

    shared: float
    position: torch.Tensor


def prior_gains(batch: tasks.DynamicsBatch) -> PriorGains:
    """:class:`PriorGains` fitted by least squares on ``batch`` (in float64): ``ĉ = Σ s_t·s_{t+1} / Σ ‖s_t‖²`` over all
    sequences and positions, and ``ĉ_t`` the same sum over sequences at position ``t``. No context is used: the gain
    is what the prior ``E W = λ̄ I`` alone allows."""
    x, y = batch.inputs.double(), batch.targets.double()
    return PriorGains(float((x * y).sum() / (x * x).sum()), ((x * y).sum((0, 2)) / (x * x).sum((0, 2))))


def contracting_curves(batch: tasks.DynamicsBatch, eta: float, lam: float = 1e-3, *, gains: PriorGains | None = None,
                       eta_prior: float | None = None) -> dict[str, torch.Tensor]:
    """Per-position loss curves ``(T,)`` on ``batch``: ridge (``lam``, pairs ``j ≤ t``, in float64), GD-1 at step
    ``eta`` from ``W_0 = 0`` and the zero predictor; with ``gains`` (:func:`prior_gains`, fitted on other sequences)
    also the context-free ``ĉ s_t`` and ``ĉ_t s_t``, and with ``eta_prior`` GD-1 at that step from ``W_0 = ĉ I``."""
    x, y = batch.inputs, batch.targets
    ridge = solvers.causal_ridge_predict(x.double(), lam).to(x.dtype)
    curves = {"ridge, pairs j ≤ t": per_step_loss(ridge, y),
              "GD-1": per_step_loss(solvers.causal_gd_predict(x, eta), y),
              "zero predictor": per_step_loss(torch.zeros_like(y), y)}
    if gains is not None:
        c_t = gains.position.to(x.dtype)
        curves["ĉ·s_t, no context"] = per_step_loss(gains.shared * x, y)
        curves["ĉ_t·s_t, no context"] = per_step_loss(c_t[None, :, None] * x, y)
        if eta_prior is not None:
            W0 = gains.shared * torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
            curves["GD-1 from ĉI"] = per_step_loss(solvers.causal_gd_predict(x, eta_prior, W0), y)
    elif eta_prior is not None:
        raise ValueError("eta_prior needs gains (the start ĉ I)")
    return curves


def train_contracting_mesa(settings: VariantSettings = VARIANTS.cpu, *, seed: int = 0, steps: int | None = None,
                           device: str | torch.device | None = None,
                           progress: bool | None = None) -> train.TrainedRun:
    """One mesa layer (:func:`~icl_course.mesa.new_mesa_model`) trained on contracting sequences with :data:`MESA`'s
    recipe for ``settings.steps`` updates (weights ``seed``, stream ``seed + 1``, evaluation set ``seed + 2``)."""
    cfg = MESA.cpu
    return train_sequence_model(new_mesa_model(cfg, seed=seed), seed=seed, steps=steps or settings.steps,
                                batch_size=cfg.batch_size, lr=cfg.lr, clip=cfg.clip, eval_size=settings.eval_size,
                                task_kw=CONTRACTING, device=device, progress=progress,
                                desc=f"mesa layer, contracting, seed {seed}")


# ---------------------------------------------------------------------------------- partial observations
def observed(obs_dim: int) -> View:
    """The view ``o_t = C s_t`` (:func:`~icl_course.tasks.observe`, ``C`` drawn per sequence): the returned batch's
    ``states`` are the observations ``(B, T+1, obs_dim)``, its ``W`` still the hidden transition."""
    p = _checks.positive_int("obs_dim", obs_dim)
    return lambda batch, gen: tasks.DynamicsBatch(tasks.observe(batch.states, p, generator=gen)[0], batch.W)


def observed_eval_set(n_seqs: int, obs_dim: int, *, seed: int, dtype: torch.dtype = torch.float32,
                      **task_kw) -> tasks.DynamicsBatch:
    """A fixed set of partially observed sequences: observations ``(B, T+1, obs_dim)`` of :data:`DYNAMICS`."""
    return dynamics_eval_set(n_seqs, seed=seed, dtype=dtype, view=observed(obs_dim), **task_kw)


def history_tokens(obs: torch.Tensor, k: int) -> torch.Tensor:
    """``z_t = [o_t, o_{t−1}, …, o_{t−k+1}]`` ``(B, T, k·p)`` for ``obs (B, T, p)``, zero-padded before ``o_1``. The
    stacking (newest first, zeros before ``o_1``) follows the official ``ConstructedPartObsGenerator``, whose token is
    this ``z_t`` alone with ``k = embed_dim // obs_dim``; the course's tokens (:func:`history_layout`) add a zero
    read-out slot, ``o_t`` and ``z_{t−1}``."""
    _checks.tensor("obs", obs, 3, "(B, T, p)")
    k = _checks.positive_int("k", k)
    B, T, p = obs.shape
    padded = torch.cat([obs.new_zeros(B, k - 1, p), obs], dim=1)  # (B, T+k−1, p)
    return torch.cat([padded[:, k - 1 - i:k - 1 - i + T] for i in range(k)], dim=-1)


def _previous(z: torch.Tensor) -> torch.Tensor:
    """``z_{t−1}`` with ``z_0 = 0``."""
    return torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], dim=1)


def history_layout(k: int) -> Tokenizer:
    """The course's constructed tokens for partial observations: ``obs (B, T, p)`` → ``(0, o_t, z_t, z_{t−1})``
    ``(B, T, 2p + 2kp)`` (not the official layout, whose token is ``z_t`` alone); the prediction of ``o_{t+1}`` is
    read from the first ``p`` entries (the zero slot), and each token holds the pair ``(z_{t−1}, o_t)`` the objective
    regresses on. ``k = 1`` gives the full-state layout
    :func:`~icl_course.tasks.mesa_tokens` of the observations."""
    k = _checks.positive_int("k", k)

    def layout(obs: torch.Tensor) -> torch.Tensor:
        z = history_tokens(obs, k)
        return torch.cat([torch.zeros_like(obs), obs, z, _previous(z)], dim=-1)

    return layout


def history_ridge_predict(obs: torch.Tensor, k: int, lam: float, *, skip_padded: bool = False) -> torch.Tensor:
    """``ô_{t+1} = W_t z_t`` ``(B, T, p)``: ridge regression of ``o_j`` on ``z_{j−1}`` over the pairs ``j ≤ t``,
    ``W_t = (Σ_j o_j z_{j−1}ᵀ)(Σ_j z_{j−1} z_{j−1}ᵀ + λI)⁻¹``. ``k = 1`` is ridge on single observations
    (:func:`~icl_course.solvers.causal_ridge_predict` of ``obs``), misspecified when ``p < D``. ``skip_padded``
    leaves out the pairs ``j ≤ k`` whose key ``z_{j−1}`` is zero-padded (for them ``z_{j−1} ≠ O_k s_{j−1}``)."""
    lam = _checks.positive_float("lam", lam)
    z = history_tokens(obs, k)
    prev = _previous(z)
    if skip_padded:
        keep = (torch.arange(obs.shape[1], device=obs.device) >= k).to(obs.dtype)[None, :, None]  # pairs j ≥ k + 1
        prev, obs = prev * keep, obs * keep
    A = torch.cumsum(prev[..., :, None] * prev[..., None, :], dim=1)  # Σ z_{j−1} z_{j−1}ᵀ, (B, T, kp, kp)
    C = torch.cumsum(obs[..., :, None] * prev[..., None, :], dim=1)  # Σ o_j z_{j−1}ᵀ, (B, T, p, kp)
    eye = torch.eye(z.shape[-1], dtype=obs.dtype, device=obs.device)
    return (C @ torch.linalg.solve(A + lam * eye, z[..., None]))[..., 0]


class HistoryIdentity(NamedTuple):
    """M26: float64 relative differences of :func:`history_ridge_predict` from ``mesa_attention(q=z_t, k=z_{t−1},
    v=o_t, λ)`` (``mesa``) and, for ``k = 1``, from ridge on the observations as states (``single``)."""

    mesa: float
    single: float


def history_mesa_error(*, seed: int = 0, n_seqs: int = 16, obs_dim: int = 5, k: int = 3,
                       lam: float = 1e-3) -> HistoryIdentity:
    """:class:`HistoryIdentity` on partially observed float64 sequences (round-off: each pair is one formula)."""
    obs = observed_eval_set(n_seqs, obs_dim, seed=seed, dtype=torch.float64).inputs
    z = history_tokens(obs, k)
    mesa = mesa_attention(z[:, None], _previous(z)[:, None], obs[:, None], lam, method="solve")[:, 0]
    rel = lambda a, b: float((a - b).norm() / b.norm())
    single = solvers.causal_ridge_predict(obs, lam)
    return HistoryIdentity(rel(mesa, history_ridge_predict(obs, k, lam)),
                           rel(history_ridge_predict(obs, 1, lam), single))


def observation_matrix(n_seqs: int, obs_dim: int, *, seed: int, dtype: torch.dtype = torch.float32,
                       **task_kw) -> torch.Tensor:
    """The observation matrices ``C`` ``(B, obs_dim, D)`` of :func:`observed_eval_set` with the same arguments (drawn
    again from the same ``seed``), for the predictors that know the system (:func:`kalman_predict`)."""
    p, drawn = _checks.positive_int("obs_dim", obs_dim), []
    drawn_view = lambda batch, gen: drawn.append(tasks.observe(batch.states, p, generator=gen)[1])
    dynamics_eval_set(n_seqs, seed=seed, dtype=dtype, view=drawn_view, **task_kw)
    return drawn[0]


def kalman_predict(obs: torch.Tensor, W: torch.Tensor, C: torch.Tensor, noise_std: float = DYNAMICS.noise_std,
                   prior_var: float = 1 / 3) -> torch.Tensor:
    """The Kalman filter's one-step prediction ``ô_{t+1} = C W ŝ_{t|t}`` ``(B, T, p)`` from ``o_1 … o_t`` with the
    system known: ``W (B, D, D)``, ``C (B, p, D)``, process noise ``σ = noise_std``, no observation noise, and
    ``s_1 ~ (0, prior_var·I)`` (``U(−1, 1)^D`` has variance 1/3). It is the best predictor linear in the past
    observations (the Bayes-optimal one for Gaussian ``s_1``), a floor for every in-context learner of the same data.
    The innovation covariance ``C P Cᵀ`` may be singular without noise; its pseudo-inverse is used, with directions
    of variance below ``1e-10·prior_var`` (already known) left out."""
    _checks.tensor("obs", obs, 3, "(B, T, p)")
    B, T, p = obs.shape
    D = W.shape[-1]
    if W.shape != (B, D, D) or C.shape != (B, p, D):
        raise ValueError(f"need W (B, D, D) and C (B, p, D) for obs {tuple(obs.shape)}, got {tuple(W.shape)} and "
                         f"{tuple(C.shape)}")
    sig = _checks.positive_float("noise_std", noise_std, allow_zero=True)
    eye = torch.eye(D, dtype=obs.dtype, device=obs.device)
    P = (_checks.positive_float("prior_var", prior_var) * eye).expand(B, D, D)  # Cov(s_t | o_1 … o_{t−1})
    tiny = 1e-10 * prior_var
    s = obs.new_zeros(B, D, 1)  # E[s_t | o_1 … o_{t−1}]
    Ct = C.transpose(1, 2)
    preds = []
    for t in range(T):
        K = P @ Ct @ torch.linalg.pinv(C @ P @ Ct, atol=tiny)  # gain (B, D, p)
        s = s + K @ (obs[:, t, :, None] - C @ s)  # E[s_t | o_1 … o_t]
        P = P - K @ C @ P
        P = 0.5 * (P + P.transpose(1, 2))
        s = W @ s  # E[s_{t+1} | o_1 … o_t]
        preds.append((C @ s)[..., 0])
        P = W @ P @ W.transpose(1, 2) + sig**2 * eye
    return torch.stack(preds, dim=1)


def history_curves(batch: tasks.DynamicsBatch, ks: tuple[int, ...] = (1, 2, 3, 4), lam: float = 1e-3, *,
                   C: torch.Tensor | None = None, learnt: tuple[int, float] | None = None) -> dict[str, torch.Tensor]:
    """Per-position loss curves ``(T,)`` of the closed-form history ridge for every ``k`` in ``ks`` (float64) on an
    observed ``batch`` (:func:`observed_eval_set`), and of the zero predictor; with the observation matrices ``C``
    (:func:`observation_matrix`) also the Kalman filter (:func:`kalman_predict`, known ``W`` and ``C``), and with
    ``learnt = (k, λ)`` the history ridge at that ``k`` and a trained layer's ``λ``."""
    x, y = batch.inputs, batch.targets
    curves = {f"history ridge, k = {k}": per_step_loss(history_ridge_predict(x.double(), k, lam).to(x.dtype), y)
              for k in ks}
    if learnt is not None:
        k, lam_l = learnt
        curves[f"history ridge, k = {k}, learnt λ"] = per_step_loss(
            history_ridge_predict(x.double(), k, lam_l).to(x.dtype), y)
    if C is not None:
        curves["Kalman filter (known W, C)"] = per_step_loss(
            kalman_predict(x.double(), batch.W.double(), C.double()).to(x.dtype), y)
    curves["zero predictor"] = per_step_loss(torch.zeros_like(y), y)
    return curves


class PaddingEffect(NamedTuple):
    """Mean loss over ``t > LATE`` of the history ridge without process noise (σ = 0), with all pairs ``j ≤ t``
    (``padded``) and without the zero-padded pairs ``j ≤ k`` (``clean``), for ``k`` in ``ks``."""

    ks: tuple[int, ...]
    padded: tuple[float, ...]
    clean: tuple[float, ...]


def padding_effect(n_seqs: int = 300, obs_dim: int = 5, *, seed: int = 2, ks: tuple[int, ...] = (2, 3),
                   lam: float = 1e-3) -> PaddingEffect:
    """:class:`PaddingEffect` on ``n_seqs`` noise-free partially observed float64 sequences: there ``o_{t+1}`` is
    exactly linear in ``z_t`` for ``t ≥ k``, so what is left late comes from the padded pairs and from ``λ``."""
    ev = observed_eval_set(n_seqs, obs_dim, seed=seed, dtype=torch.float64, settings=replace(DYNAMICS, noise_std=0.0))
    late = lambda pred: float(per_step_loss(pred, ev.targets)[LATE:].mean())
    return PaddingEffect(tuple(ks), tuple(late(history_ridge_predict(ev.inputs, k, lam)) for k in ks),
                         tuple(late(history_ridge_predict(ev.inputs, k, lam, skip_padded=True)) for k in ks))


def new_history_mesa_model(obs_dim: int, k: int, *, seed: int = 0) -> CausalStack:
    """A freshly initialised one-mesa-layer model (:data:`MESA`'s head, key size ``k·obs_dim``, initialisation) on
    the tokens of :func:`history_layout`, width ``2p + 2kp``."""
    p, k = _checks.positive_int("obs_dim", obs_dim), _checks.positive_int("k", k)
    cfg = MESA.cpu
    layer = MesaLayer(2 * p + 2 * k * p, cfg.n_heads, k * p, k * p, lam_init=cfg.lam_init, method=cfg.method,
                      init_std=cfg.init_std, generator=runtime.generator(seed))
    return CausalStack([layer])


def train_history_mesa(settings: VariantSettings = VARIANTS.cpu, *, seed: int = 0, k: int | None = None,
                       steps: int | None = None, device: str | torch.device | None = None,
                       progress: bool | None = None) -> train.TrainedRun:
    """One mesa layer trained to predict ``o_{t+1}`` from the history tokens (:func:`history_layout`) of partially
    observed orthogonal dynamics, with :data:`MESA`'s recipe through ``train_sequence_model`` (``view=observed(p)``;
    weights ``seed``, stream ``seed + 1``, evaluation set ``seed + 2``)."""
    cfg, k = MESA.cpu, settings.history if k is None else k
    return train_sequence_model(new_history_mesa_model(settings.obs_dim, k, seed=seed), seed=seed,
                                steps=steps or settings.steps, batch_size=cfg.batch_size, lr=cfg.lr, clip=cfg.clip,
                                eval_size=settings.eval_size, tokens=history_layout(k), view=observed(settings.obs_dim),
                                device=device, progress=progress, desc=f"mesa layer, history k = {k}, seed {seed}")


# ---------------------------------------------------------------------------------------- claim values
FIRST = 2
"""Claims average the loss over positions ``t ≥ 2``: at ``t = 1`` no pair has been seen, every learner predicts 0, and
on contracting sequences that one position would hold most of the mean."""

LATE = 20
"""Late positions are ``t > LATE``, where every consistent learner with ``k ≤ 3`` has seen more pairs than unknowns."""


EARLY = (3, 10)
"""Early positions ``3 ≤ t ≤ 10``: a few pairs have been seen and the states have not yet faded into the noise, so this
is where the context can beat a learnt prior gain on contracting sequences."""


class ContractingComparison(NamedTuple):
    """M25: mean loss over positions ``t ≥ 2`` on contracting sequences of the trained mesa layer, ridge (λ = 1e-3,
    pairs ``j ≤ t``), GD-1 at its best step from ``W_0 = 0`` (``gd``) and from ``ĉ I`` (``gd_prior``), the
    context-free ``ĉ s_t`` (``shared``) and ``ĉ_t s_t`` (``position``) and the zero predictor; the losses at ``t = 1``
    of the layer and of the zero predictor (where ridge and GD-1 from 0 predict 0 too); and the means over
    :data:`EARLY` of the layer, ridge and ``ĉ_t s_t``."""

    mesa: float
    ridge: float
    gd: float
    gd_prior: float
    shared: float
    position: float
    zero: float
    mesa_first: float
    zero_first: float
    mesa_early: float
    ridge_early: float
    position_early: float


def contracting_comparison(curves: dict[str, torch.Tensor], mesa: str = "mesa layer") -> ContractingComparison:
    """:class:`ContractingComparison` from per-position loss curves (:func:`contracting_curves` with ``gains`` and
    ``eta_prior``, plus the model's)."""
    m = lambda key: float(curves[key][FIRST - 1:].mean())
    early = lambda key: float(curves[key][EARLY[0] - 1:EARLY[1]].mean())
    return ContractingComparison(m(mesa), m("ridge, pairs j ≤ t"), m("GD-1"), m("GD-1 from ĉI"),
                                 m("ĉ·s_t, no context"), m("ĉ_t·s_t, no context"), m("zero predictor"),
                                 float(curves[mesa][0]), float(curves["zero predictor"][0]), early(mesa),
                                 early("ridge, pairs j ≤ t"), early("ĉ_t·s_t, no context"))


class HistoryFit(NamedTuple):
    """M27: mean loss over positions ``t ≥ 2`` on partially observed sequences of ridge on single observations
    (``k = 1``), the closed-form history ridge at the trained layer's ``k`` (λ = 1e-3, ``history``; the layer's learnt
    λ, ``learnt``), the trained mesa layer, the Kalman filter with ``W`` and ``C`` known and the zero predictor; and the
    means over ``t > LATE`` of the closed forms, the layer and the Kalman filter."""

    single: float
    history: float
    learnt: float
    mesa: float
    kalman: float
    zero: float
    history_late: float
    learnt_late: float
    mesa_late: float
    kalman_late: float


def history_fit(curves: dict[str, torch.Tensor], k: int, mesa: str = "mesa layer") -> HistoryFit:
    """:class:`HistoryFit` from per-position loss curves (:func:`history_curves` with ``C`` and ``learnt``, plus the
    model's)."""
    m = lambda key: float(curves[key][FIRST - 1:].mean())
    late = lambda key: float(curves[key][LATE:].mean())
    h, lt, kf = f"history ridge, k = {k}", f"history ridge, k = {k}, learnt λ", "Kalman filter (known W, C)"
    return HistoryFit(m("history ridge, k = 1"), m(h), m(lt), m(mesa), m(kf), m("zero predictor"), late(h), late(lt),
                      late(mesa), late(kf))
