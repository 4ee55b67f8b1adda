"""Other sequences: contracting and partially observed linear dynamics.

*Contracting* dynamics ``s_{t+1} = W s_t + ε`` with ``W = U diag(λ) U⁻¹``, eigenvalues in ``(0.3, 0.9)`` (the official
contracting generator): the states decay towards the noise, so later pairs carry less signal, and one GD step with a
single step size suits early and late positions badly. The mesa layer and ridge regression (λ = 1e-3, pairs
``j ≤ t``) are compared with GD-1 at its best step on the same sequences (:func:`contracting_curves`).

*Partially observed* dynamics: the model sees ``o_t = C s_t`` with ``C (p, D)``, ``p < D``
(:func:`~icl_course.tasks.observe`). One observation does not determine the next, but the stacked history
``z_t = [o_t, o_{t−1}, …, o_{t−k+1}]`` (zero-padded at the start; :func:`history_tokens`) generically does once
``k p ≥ D`` (observability): ``o_{t+1}`` is a linear function of ``z_t``. The in-context objective becomes ridge
regression of ``o_j`` on ``z_{j−1}`` (:func:`history_ridge_predict`), which is exactly
``mesa_attention(q=z_t, k=z_{t−1}, v=o_t, λ)`` (:func:`history_mesa_error`). A mesa layer is trained on the
constructed tokens ``(0, o_t, z_t, z_{t−1})`` (:func:`history_layout`), its prediction of ``o_{t+1}`` read from the
first ``p`` entries, through the one Part IV recipe (``train_sequence_model`` with ``view=observed(p)``).

References
----------
von Oswald et al. (2023), "Uncovering mesa-optimization algorithms in Transformers" (contracting and partially
observed dynamics); official ``src/data/seq/contracting_seq.py``, ``src/data/seq/linear_seq.py`` (``eye_obs=False``)
and ``src/data/constr_data.py`` (``ConstructedPartObsGenerator``). Part IV, chapter "Other sequences: contracting and
partially observed systems" (``book/part4_variants.ipynb``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .. import _checks, runtime, solvers, tasks, train
from ..causal import CausalStack
from ._common import DYNAMICS, Tokenizer, View, dynamics_eval_set, per_step_loss, train_sequence_model
from ._mesa_attention import MesaLayer, mesa_attention
from ._mesa_model import MESA, new_mesa_model

__all__ = ["VariantSettings", "VARIANTS", "CONTRACTING", "contracting_transition", "zero_predictor_loss",
           "contracting_eval_set",
           "gd_step_search", "contracting_curves", "train_contracting_mesa", "observed", "observed_eval_set",
           "history_tokens", "history_layout", "history_ridge_predict", "HistoryIdentity", "history_mesa_error",
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
    eigenvalues ``(B, D)`` (orthogonal eigenvectors), ``s_1 ~ U(−r, r)^D``:
    ``½ [Σ_i λ_i^{2t} r²/3 + σ² Σ_{m<t} Σ_i λ_i^{2m}]`` — the signal decays like ``λ^{2t}``, the noise piles up."""
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


def gd_step_search(batch: tasks.DynamicsBatch, lo: float = 0.0, hi: float = 1.0) -> tuple[float, float]:
    """The single step size η that minimises GD-1's mean loss over all positions on ``batch``: ``(η*, loss)``
    (golden-section search; the official ``opt_eta`` scans a grid)."""
    loss = lambda eta: float(per_step_loss(solvers.causal_gd_predict(batch.inputs, eta), batch.targets).mean())
    eta = solvers.line_search(loss, lo, hi, tol=1e-5)
    return eta, loss(eta)


def contracting_curves(batch: tasks.DynamicsBatch, eta: float, lam: float = 1e-3) -> dict[str, torch.Tensor]:
    """Per-position loss curves ``(T,)`` on ``batch``: ridge (``lam``, pairs ``j ≤ t``, in float64), GD-1 at step
    ``eta`` and the zero predictor."""
    x, y = batch.inputs, batch.targets
    ridge = solvers.causal_ridge_predict(x.double(), lam).to(x.dtype)
    return {"ridge, pairs j ≤ t": per_step_loss(ridge, y), "GD-1": per_step_loss(solvers.causal_gd_predict(x, eta), y),
            "zero predictor": per_step_loss(torch.zeros_like(y), y)}


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
    """``z_t = [o_t, o_{t−1}, …, o_{t−k+1}]`` ``(B, T, k·p)`` for ``obs (B, T, p)``, zero-padded before ``o_1`` (the
    official ``ConstructedPartObsGenerator``)."""
    _checks.tensor("obs", obs, 3, "(B, T, p)")
    k = _checks.positive_int("k", k)
    B, T, p = obs.shape
    padded = torch.cat([obs.new_zeros(B, k - 1, p), obs], dim=1)  # (B, T+k−1, p)
    return torch.cat([padded[:, k - 1 - i:k - 1 - i + T] for i in range(k)], dim=-1)


def _previous(z: torch.Tensor) -> torch.Tensor:
    """``z_{t−1}`` with ``z_0 = 0``."""
    return torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], dim=1)


def history_layout(k: int) -> Tokenizer:
    """The constructed tokens for partial observations: ``obs (B, T, p)`` → ``(0, o_t, z_t, z_{t−1})``
    ``(B, T, 2p + 2kp)``; the prediction of ``o_{t+1}`` is read from the first ``p`` entries (the zero slot), and
    each token holds the pair ``(z_{t−1}, o_t)`` the objective regresses on. ``k = 1`` gives the full-state layout
    :func:`~icl_course.tasks.mesa_tokens` of the observations."""
    k = _checks.positive_int("k", k)

    def layout(obs: torch.Tensor) -> torch.Tensor:
        z = history_tokens(obs, k)
        return torch.cat([torch.zeros_like(obs), obs, z, _previous(z)], dim=-1)

    return layout


def history_ridge_predict(obs: torch.Tensor, k: int, lam: float) -> torch.Tensor:
    """``ô_{t+1} = W_t z_t`` ``(B, T, p)``: ridge regression of ``o_j`` on ``z_{j−1}`` over the pairs ``j ≤ t``,
    ``W_t = (Σ_j o_j z_{j−1}ᵀ)(Σ_j z_{j−1} z_{j−1}ᵀ + λI)⁻¹``. ``k = 1`` is ridge on single observations
    (:func:`~icl_course.solvers.causal_ridge_predict` of ``obs``), misspecified when ``p < D``."""
    lam = _checks.positive_float("lam", lam)
    z = history_tokens(obs, k)
    prev = _previous(z)
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


def history_curves(batch: tasks.DynamicsBatch, ks: tuple[int, ...] = (1, 2, 3, 4),
                   lam: float = 1e-3) -> dict[str, torch.Tensor]:
    """Per-position loss curves ``(T,)`` of the closed-form history ridge for every ``k`` in ``ks`` (float64) on an
    observed ``batch`` (:func:`observed_eval_set`), and of the zero predictor."""
    x, y = batch.inputs, batch.targets
    curves = {f"history ridge, k = {k}": per_step_loss(history_ridge_predict(x.double(), k, lam).to(x.dtype), y)
              for k in ks}
    curves["zero predictor"] = per_step_loss(torch.zeros_like(y), y)
    return curves


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
"""Late positions are ``t > LATE``, where every consistent learner has seen more pairs than unknowns."""


class ContractingComparison(NamedTuple):
    """M25: mean loss over positions ``t ≥ 2`` on contracting sequences of the trained mesa layer, ridge (λ = 1e-3,
    pairs ``j ≤ t``), GD-1 at its best step and the zero predictor; and the losses at ``t = 1`` of the layer and of the
    zero predictor (where ridge and GD-1 predict 0 too)."""

    mesa: float
    ridge: float
    gd: float
    zero: float
    mesa_first: float
    zero_first: float


def contracting_comparison(curves: dict[str, torch.Tensor], mesa: str = "mesa layer") -> ContractingComparison:
    """:class:`ContractingComparison` from per-position loss curves (:func:`contracting_curves` plus the model's)."""
    m = lambda key: float(curves[key][FIRST - 1:].mean())
    return ContractingComparison(m(mesa), m("ridge, pairs j ≤ t"), m("GD-1"), m("zero predictor"),
                                 float(curves[mesa][0]), float(curves["zero predictor"][0]))


class HistoryFit(NamedTuple):
    """M27: mean loss over positions ``t ≥ 2`` on partially observed sequences of ridge on single observations
    (``k = 1``), the closed-form history ridge at the trained layer's ``k``, the trained mesa layer, and the zero
    predictor; and the mean over ``t > LATE`` of the closed form and of the layer."""

    single: float
    history: float
    mesa: float
    zero: float
    history_late: float
    mesa_late: float


def history_fit(curves: dict[str, torch.Tensor], k: int, mesa: str = "mesa layer") -> HistoryFit:
    """:class:`HistoryFit` from per-position loss curves (:func:`history_curves` plus the model's)."""
    m = lambda key: float(curves[key][FIRST - 1:].mean())
    late = lambda key: float(curves[key][LATE:].mean())
    return HistoryFit(m("history ridge, k = 1"), m(f"history ridge, k = {k}"), m(mesa), m("zero predictor"),
                      late(f"history ridge, k = {k}"), late(mesa))
