"""Part IV, chapter "Causal linear attention is one GD step": the mesa objective of a sequence, one GD step on it,
its exact solution, the causal linear-attention layer that takes the step, a trained layer, and the algorithm read
off that layer's weights.

References
----------
von Oswald et al. (2023), "Uncovering mesa-optimization algorithms in Transformers" (the one-step construction),
and the official code (``GDSequenceSolver``, ``LeastSquaresSequenceSolver``, ``TFSubdiagonals``, ``OneLayerRevAlg``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .. import _checks, metrics, runtime, solvers, tasks, train
from ..causal import CausalSelfAttention, CausalStack
from ._common import (
    DYNAMICS,
    block_means,
    head_products,
    model_predictions,
    per_step_loss,
    train_sequence_model,
)

__all__ = ["OneLayerSettings", "ONE_LAYER", "gd_lr_line_search", "clipped_gd_line_search", "constructed_causal_lsa",
           "construction_error", "new_causal_lsa", "train_causal_lsa", "FittedGD", "fit_gd_with_init",
           "baseline_curves", "family_features", "FAMILY_NAMES", "GD_FEATURE", "family_parities", "fit_family",
           "family_predict", "effective_coefficients", "gd_alignment", "gd_step_variants", "condition_numbers"]


@dataclass(frozen=True)
class OneLayerSettings:
    """The one-layer experiment: ``n_heads`` heads of size ``key_size`` on the masked tokens ``(0, 0, s_t, s_{t−1})``;
    weights ``N(0, init_std²)``; Adam (AdamW with ``weight_decay``) at peak ``lr`` after an element-wise gradient clip
    at ``clip``, with a linear warm-up over ``warmup`` steps and cosine decay to ``final_lr``. ``activation_clip``:
    clip the output to ``±activation_clip`` (the official ``use_clip`` with 1.5 is on by default there; it is a
    non-linearity, so the book's layer runs without it and studies it separately)."""

    n_heads: int = 2
    key_size: int = 20
    masked: bool = True
    batch_size: int = 128
    steps: int = 1500
    lr: float = 1e-3
    clip: float = 1.0
    init_std: float = 2e-4
    activation_clip: float | None = None
    weight_decay: float = 0.0
    warmup: int = 75
    final_lr: float = 1e-5
    eval_size: int = 2000


ONE_LAYER = runtime.Scales(
    cpu=OneLayerSettings(),
    paper=OneLayerSettings(batch_size=256, steps=20_000, lr=3e-4, weight_decay=0.05, warmup=1000, eval_size=10_000),
)
"""``cpu``: batch 128, 1,500 Adam steps, warm-up to 1e-3 over 75 steps and cosine decay to 1e-5 (the official
schedule's shape; about 30 CPU-s). ``paper``: the official optimiser — AdamW (weight decay 0.05), batch 256, warm-up
to 3e-4 over 1,000 steps, cosine decay to 1e-5 at 20,000 steps (meant for a GPU)."""


def gd_lr_line_search(batch: tasks.DynamicsBatch, lo: float = 0.0, hi: float = 0.1) -> tuple[float, float]:
    """The single step size η that minimises GD-1's mean loss over all positions on ``batch``: ``(η*, loss)``.

    The official ``opt_eta`` scans a grid on 512 sequences; golden-section search on the same objective.
    """
    loss = lambda eta: float(per_step_loss(solvers.causal_gd_predict(batch.inputs, eta), batch.targets).mean())
    eta = solvers.line_search(loss, lo, hi, tol=1e-5)
    return eta, loss(eta)


def clipped_gd_line_search(batch: tasks.DynamicsBatch, clip: float = 1.5, lo: float = 0.0,
                           hi: float = 0.1) -> tuple[float, float]:
    """GD-1 with its prediction clipped to ``±clip`` (what the official activation clip does to a layer's output), at
    the step size best for it: ``(η, loss)``."""
    clip = _checks.positive_float("clip", clip)
    loss = lambda eta: float(per_step_loss(solvers.causal_gd_predict(batch.inputs, eta).clamp(-clip, clip),
                                           batch.targets).mean())
    eta = solvers.line_search(loss, lo, hi, tol=1e-5)
    return eta, loss(eta)


def constructed_causal_lsa(dim: int, lr: float, dtype: torch.dtype = torch.float32) -> CausalStack:
    """The hand-built causal linear-attention layer that takes one GD step on the mesa objective at every position.

    On tokens ``(0, s_t, s_t, s_{t−1})`` (slots 0–3) the queries, keys and values each read one slot and ``W_O``
    writes ``η`` times the result into slot 0 (which slots is the chapter's exercise ``causal_gd_weights``), so
    token ``t`` receives :func:`~icl_course.solvers.causal_gd_predict`'s prediction — exactly, in any dtype.
    """
    D = _checks.positive_int("dim", dim)
    eta = _checks.positive_float("lr", lr, allow_zero=True)
    slot = lambda i: torch.eye(D, 4 * D, dtype=dtype).roll(i * D, dims=1)  # (D, 4D): reads slot i
    layer = CausalSelfAttention.from_matrices(slot(2), slot(3), slot(2), eta * slot(0).T.contiguous())
    return CausalStack([layer])


def construction_error(*, seed: int = 0, n_seqs: int = 16, dtype: torch.dtype = torch.float64) -> float:
    """Relative error of :func:`constructed_causal_lsa` against :func:`~icl_course.solvers.causal_gd_predict`."""
    gen = runtime.generator(seed)
    b = tasks.sample_linear_dynamics(n_seqs, 20, 5, generator=gen, dtype=dtype)
    eta = float(torch.rand((), generator=gen)) * 0.1
    got = model_predictions(constructed_causal_lsa(5, eta, dtype), b)
    return metrics.relative_error(got, solvers.causal_gd_predict(b.inputs, eta))


def new_causal_lsa(settings: OneLayerSettings = ONE_LAYER.cpu, *, seed: int = 0, n_layers: int = 1,
                   dim: int = DYNAMICS.dim) -> CausalStack:
    """A freshly initialised stack of causal linear-attention layers on tokens of width ``4·dim``."""
    gen = runtime.generator(seed)
    layers = [CausalSelfAttention(4 * dim, settings.n_heads, settings.key_size, init_std=settings.init_std,
                                  generator=gen) for _ in range(n_layers)]
    return CausalStack(layers, masked_dims=2 * dim if settings.masked else 0, clip=settings.activation_clip)


def train_causal_lsa(*, seed: int = 0, scale: str = "cpu", steps: int | None = None,
                     activation_clip: float | None = None, eval_size: int | None = None,
                     device: str | torch.device | None = None, progress: bool | None = None) -> train.TrainedRun:
    """Train one causal linear-attention layer with :data:`ONE_LAYER`'s settings (weights ``seed``, stream
    ``seed + 1``, evaluation set ``seed + 2``); ``activation_clip=1.5`` adds the official output clip."""
    cfg = ONE_LAYER.pick(scale)
    if activation_clip is not None:
        cfg = replace(cfg, activation_clip=_checks.positive_float("activation_clip", activation_clip))
    n = steps or cfg.steps
    schedule = train.warmup_cosine(cfg.warmup, n, cfg.final_lr / cfg.lr) if cfg.warmup else None
    return train_sequence_model(new_causal_lsa(cfg, seed=seed), seed=seed, steps=n, batch_size=cfg.batch_size,
                                lr=cfg.lr, clip=cfg.clip, masked=cfg.masked, eval_size=eval_size or cfg.eval_size,
                                weight_decay=cfg.weight_decay, lr_schedule=schedule, device=device,
                                progress=progress, desc=f"causal LSA seed {seed}")


class FittedGD(torch.nn.Module):
    """One GD step on the mesa objective from a **learned** initial ``W_0`` with a **learned** step size ``η``
    (:func:`~icl_course.solvers.causal_gd_predict`); ``W_0`` starts at ``w0`` (default zeros).

    A matrix preconditioner ``P`` (``W_1 = W_0 + (C_t − W_0 A_t) P``) would add nothing on this task: for every ``P``
    the loss is convex and even in ``W_0`` (the ``W* → −W*`` symmetry), so ``W_0 = 0`` is optimal; at ``W_0 = 0`` it is
    convex in ``P`` and unchanged by ``P → QᵀPQ`` for every signed permutation ``Q`` (``U(−1, 1)^D`` states and Haar
    ``W*`` are invariant under them), so the average ``(tr P / D) I`` is no worse — a scalar step.

    Same interface as the attention models: tokens ``(0, ·, s_t, s_{t−1})`` in, the prediction written into the zero
    slot.
    """

    def __init__(self, dim: int = DYNAMICS.dim, lr: float = 0.03, dtype: torch.dtype = torch.float32,
                 w0: torch.Tensor | None = None) -> None:
        super().__init__()
        self.dim = _checks.positive_int("dim", dim)
        self.lr = torch.nn.Parameter(torch.tensor(float(lr), dtype=dtype))
        if w0 is not None and tuple(w0.shape) != (dim, dim):
            raise ValueError(f"w0 must have shape (dim, dim) = ({dim}, {dim}), got {tuple(w0.shape)}")
        start = torch.zeros(dim, dim, dtype=dtype) if w0 is None else w0.detach().to(dtype).clone()
        self.W0 = torch.nn.Parameter(start)
        self.register_buffer("w0_start", start.clone())  # where W_0 started, to see how far the fit moved it

    def forward(self, E: torch.Tensor) -> torch.Tensor:
        _checks.tensor("E", E, 3, f"(B, T, 4·{self.dim})")
        D = self.dim
        pred = solvers.causal_gd_predict(E[..., 2 * D:3 * D], self.lr, self.W0)  # (B, T, D)
        return torch.cat([E[..., :D] + pred, E[..., D:]], dim=-1)


def fit_gd_with_init(*, seed: int = 0, steps: int = 600, batch_size: int = 128, lr: float = 3e-3,
                     w0_scale: float = 0.3, progress: bool | None = None) -> train.TrainedRun:
    """Fit :class:`FittedGD`'s ``η`` and ``W_0`` on the training stream by Adam, like a model (stream ``seed + 1``).

    ``W_0`` starts away from the symmetric optimum ``0``, at ``w0_scale`` times a Haar-random orthogonal matrix
    (generator ``seed``; ``‖W_0‖_F = w0_scale·√D``), so that the fit has to find ``W_0 ≈ 0`` rather than start there.
    """
    gen = runtime.generator(seed)
    w0 = _checks.positive_float("w0_scale", w0_scale, allow_zero=True) * tasks.haar_orthogonal(1, DYNAMICS.dim,
                                                                                                 generator=gen)[0]
    return train_sequence_model(FittedGD(w0=w0), seed=seed, steps=steps, batch_size=batch_size, lr=lr, clip=1.0,
                                masked=False, eval_size=ONE_LAYER.cpu.eval_size, progress=progress,
                                desc="GD with learned W0 and η")


def baseline_curves(batch: tasks.DynamicsBatch, eta: float, lam: float = 1e-3) -> dict[str, torch.Tensor]:
    """Per-position losses ``(T,)`` of the zero predictor, GD-1 at ``eta`` and ridge on both pair conventions
    (computed in float64)."""
    s, y = batch.inputs.double(), batch.targets.double()
    preds = {"zero predictor": torch.zeros_like(y), "GD-1 (η*)": solvers.causal_gd_predict(s, eta),
             "ridge, pairs j ≤ t": solvers.causal_ridge_predict(s, lam, "j<=t"),
             "ridge, pairs j < t": solvers.causal_ridge_predict(s, lam, "j<t")}
    return {name: per_step_loss(p, y) for name, p in preds.items()}


# ---------------------------------------------------------------- how close is a predictor to one GD step?
SLOTS = {"s": 2, "prev": 3}
"""Where the tokens hold ``s_t`` and ``s_{t−1}`` (0-based slot index; slot 1, the duplicate ``s_t``, is masked)."""


def family_features(states: torch.Tensor) -> torch.Tensor:
    """The eight features a one-layer causal linear-attention model on the masked tokens can combine, ``(8, B, T, D)``.

    Feature ``(a, b, c)`` is ``Σ_{j≤t} (key_a(j)·query_b(t)) value_c(j)`` with each of key, query and value either the
    current state of its token (``s_j``, ``s_t``) or the previous one (``s_{j−1}``, ``s_{t−1}``), in the order
    ``(a, b, c) ∈ {s, prev}³`` (``a`` slowest). Feature ``(prev, s, s)`` is the GD step of
    :func:`~icl_course.solvers.causal_gd_predict` with ``η = 1``.
    """
    prev, cur = solvers.causal_pairs(states)
    pick = {"s": cur, "prev": prev}
    out = []
    for a in ("s", "prev"):
        for b in ("s", "prev"):
            scores = (pick[b] @ pick[a].transpose(1, 2)).tril()  # (B, T, T): query t · key j, j ≤ t
            out += [scores @ pick[c] for c in ("s", "prev")]
    return torch.stack(out)  # (8, B, T, D)


FAMILY_NAMES = [f"key {a}·query {b} → {c}" for a in ("s_j", "s_{j−1}") for b in ("s_t", "s_{t−1}")
                for c in ("s_j", "s_{j−1}")]
"""Readable names of the eight :func:`family_features`, in their order."""
GD_FEATURE = 4  # (prev, s, s): key s_{j−1}, query s_t, value s_j


def family_parities() -> torch.Tensor:
    """The parity ``(8,)`` of each :func:`family_features` term under the task's symmetry ``W* → −W*``: ``+1`` if the
    term flips like the target, ``−1`` if it flips the other way.

    The flip (with ``ε_m → (−1)^m ε_m``) maps every sequence to an equally likely one with ``s_m → (−1)^{m−1} s_m``;
    the target ``s_{t+1}`` gains ``(−1)^t`` and a term ``(a, b, c)`` gains ``(−1)^{t+1+n}`` with ``n`` the number of
    previous states (``s_{j−1}``, ``s_{t−1}``) among its key, query and value. So a term has the target's parity
    (``+1``) exactly when ``n`` is odd. In the least-squares fit over the task distribution the two groups are
    uncorrelated, and every opposite-parity term (``−1``) has population-optimal coefficient **0**: only the
    same-parity terms can correct the GD step (:data:`GD_FEATURE` is one of them).
    """
    n_prev = [(a == "prev") + (b == "prev") + (c == "prev") for a in ("s", "prev") for b in ("s", "prev")
              for c in ("s", "prev")]
    return torch.tensor([1 if n % 2 else -1 for n in n_prev], dtype=torch.int64)


def fit_family(states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The best combination ``(8,)`` of :func:`family_features` of ``states (B, T, D)`` for ``targets (B, T, D)``, by
    least squares in float64: the best any one-layer linear model with block-scaled-identity weights can do."""
    _checks.tensor("targets", targets, 3, "(B, T, D)")
    F = family_features(states.double()).flatten(1)  # (8, B·T·D)
    y = targets.double().flatten()
    return torch.linalg.solve(F @ F.T, F @ y)


def family_predict(states: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """``Σ_k coefficients_k · feature_k`` ``(B, T, D)``."""
    return torch.einsum("k,kbtd->btd", coefficients.to(states.dtype), family_features(states))


def effective_coefficients(layer: CausalSelfAttention, dim: int) -> torch.Tensor:
    """The layer's eight identifiable coefficients ``(8,)`` on the masked tokens, in :func:`family_features`' order:
    ``Σ_h`` (block mean of ``W_Kᵀ W_Q`` at key slot ``a``, query slot ``b``) × (block mean of ``W_O W_V`` from value
    slot ``c`` into the output slot). Per-head numbers are not identifiable (any invertible mix of the heads gives the
    same layer); these sums are."""
    T = torch.zeros(8, dtype=torch.float64)
    for kq, pv in head_products(layer):
        K, V = block_means(kq, dim).double(), block_means(pv, dim).double()
        T += torch.stack([K[SLOTS[a], SLOTS[b]] * V[0, SLOTS[c]] for a in ("s", "prev") for b in ("s", "prev")
                          for c in ("s", "prev")])
    return T


def gd_alignment(pred: torch.Tensor, states: torch.Tensor) -> tuple[float, float]:
    """How much of a predictor is one GD step: ``(c, R²)`` of the least-squares fit ``pred ≈ c · g`` with ``g`` the
    GD-1 prediction at ``η = 1``; ``c`` is the step size the predictor takes, ``R² = 1 − ‖pred − c g‖² / ‖pred‖²``."""
    g = solvers.causal_gd_predict(states.double(), 1.0)
    p = pred.double()
    c = float((p * g).sum() / (g * g).sum())
    return c, float(1 - ((p - c * g) ** 2).sum() / (p**2).sum())


def gd_step_variants(batch: tasks.DynamicsBatch) -> dict[str, torch.Tensor]:
    """Per-position losses ``(T,)`` of one GD step with a better step size: the best ``η_t`` for each position
    (closed form: ``η_t = Σ g·s / Σ g·g`` over the batch), and the sum normalised by ``t`` with its best single η."""
    g = solvers.causal_gd_predict(batch.inputs.double(), 1.0)  # (B, T, D)
    y = batch.targets.double()
    gg = (g * g).sum((0, 2))  # (T,); 0 at t = 1, where the only pair is (s_0 = 0, s_1)
    eta_t = torch.where(gg > 0, (g * y).sum((0, 2)) / gg.clamp_min(1e-300), torch.zeros_like(gg))
    t = torch.arange(1, g.shape[1] + 1, dtype=g.dtype)[None, :, None]
    loss = lambda eta: float(per_step_loss(eta * g / t, y).mean())
    eta_n = solvers.line_search(loss, 0.0, 5.0, tol=1e-5)
    return {"GD-1, best η per position": per_step_loss(eta_t[None, :, None] * g, y),
            "GD-1 normalised by t": per_step_loss(eta_n * g / t, y)}


def condition_numbers(states: torch.Tensor, t: int) -> torch.Tensor:
    """Condition number of ``Σ_{j≤t} s_{j−1} s_{j−1}ᵀ`` for every sequence ``(B,)`` — why one step stays far from the
    exact solution: a gradient step fits the high-energy directions and barely moves along the others."""
    prev, _ = solvers.causal_pairs(states.double())
    A = prev[:, :_checks.positive_int("t", t)].transpose(1, 2) @ prev[:, :t]  # (B, D, D)
    ev = torch.linalg.eigvalsh(A)
    return ev[:, -1] / ev[:, 0]
