"""Momentum attention (Dai et al. 2022, §5): softmax attention plus an exponential moving average of the values.

Dai et al. read the attention values as meta-gradients (the dual form, chapter "The dual form") and, by analogy with
gradient descent with momentum, add an exponential moving average (EMA) of the earlier values to the attention output:

    MoAttn(V, K, q_t) = Attn(V, K, q_t) + Σ_{i=1}^{t−1} η^{t−i} v_i,        0 < η < 1.

The form implemented here reads that equation literally: per head, *unnormalised* (no ``(1 − η)`` factor), over
``i < t`` only, added to the head's attention output before ``W_O``. The paper gives no η and the official
repository (microsoft/LMOps, ``understand_icl``) holds no momentum-attention code, so η is fixed at
:data:`MOMENTUM_ETA` ``= 1/2`` before any training (the EMA's weights then sum to 1, as the softmax's do). The book
writes this coefficient β, keeping η for step sizes as the rest of the course does; the code keeps Dai's ``eta``.

The EMA ``m_t = Σ_{i<t} η^{t−i} v_i`` (``m_1 = 0``, ``m_t = η (m_{t−1} + v_{t−1})``) is one product with the
strictly lower-triangular Toeplitz matrix ``D_{ti} = η^{t−i}`` (:func:`value_momentum`), checked against the loop.
Heavy-ball updates of a linear layer equal the initial weights plus linear attention with values scaled by
coefficients ``c_i ≥ 1`` (:func:`momentum_coefficients`, :func:`momentum_dual`). The experiment (:data:`RECALL`,
:func:`momentum_comparison`): in-context associative recall, the course's small GPT with the softmax mixer and with
:class:`MoAttn`, same weights, batches and optimiser, paired over seeds; compared by the step of the escape from
the loss plateau.

References
----------
Dai et al. (2022), "Why can GPT learn in-context?", §5 (momentum-based attention, Tables 6–7); Polyak (1964) (heavy
ball). Part II, chapter "Momentum attention" (``book/part2_momentum.ipynb``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import _checks, runtime, train
from ..attention import softmax_attention
from ..causal import CausalSelfAttention
from ..gpt import GPT, GPTConfig, attention_mixer

__all__ = ["MOMENTUM_ETA", "momentum_decay_matrix", "value_momentum", "value_momentum_loop", "momentum_attention",
           "MoAttn", "momentum_mixer", "momentum_coefficients", "momentum_update", "momentum_dual",
           "MomentumExactness", "momentum_exactness", "RecallSettings", "RECALL", "MIXERS", "recall_batch",
           "new_recall_model", "recall_loss", "recall_accuracy", "train_recall", "SignTest", "sign_test",
           "MomentumComparison", "momentum_comparison"]

MOMENTUM_ETA = 0.5
"""The fixed η of the chapter (Dai et al. publish none): the EMA's weights then sum to ``η/(1 − η) = 1``."""


def _eta(eta: object) -> float:
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta < 1:
        raise ValueError(f"eta must be a real number in [0, 1), got {eta!r}")
    return float(eta)


# ------------------------------------------------------------------------------- the EMA of the values
def momentum_decay_matrix(T: int, eta: float, *, dtype: torch.dtype = torch.float32,
                          device: str | torch.device | None = None) -> torch.Tensor:
    """The ``(T, T)`` strictly lower-triangular Toeplitz matrix ``D_{ti} = η^{t−i}`` for ``i < t``, else 0.

    ``(D v)_t = Σ_{i<t} η^{t−i} v_i`` is the momentum term of Dai et al. (2022, §5). With ``T = 3``, ``η = 0.5``:
    ``[[0, 0, 0], [0.5, 0, 0], [0.25, 0.5, 0]]``.
    """
    T, eta = _checks.positive_int("T", T), _eta(eta)
    i = torch.arange(T, device=device)
    lag = (i[:, None] - i[None, :]).to(dtype)  # (T, T): t − i
    return torch.where(lag > 0, eta**lag, torch.zeros((), dtype=dtype, device=device))


def _check_v(v: object) -> torch.Tensor:
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"v must be a torch.Tensor of shape (..., T, d), got {type(v).__name__}")
    if v.ndim < 2 or not v.is_floating_point():
        raise ValueError(f"v must be a floating tensor of shape (..., T, d), got {v.dtype} {tuple(v.shape)}")
    return v


def value_momentum(v: torch.Tensor, eta: float) -> torch.Tensor:
    """The EMA of the earlier values at every position, ``m_t = Σ_{i<t} η^{t−i} v_i``: ``v (…, T, d) → (…, T, d)``.

    One product with :func:`momentum_decay_matrix` (the causal convolution with the kernel ``η, η², …``), in
    ``v``'s dtype and device; equals :func:`value_momentum_loop`. ``m_1 = 0``.

    References
    ----------
    Dai et al. (2022), §5 (the momentum term of MoAttn). Part II, "Momentum attention".
    """
    _check_v(v)
    return momentum_decay_matrix(v.shape[-2], eta, dtype=v.dtype, device=v.device) @ v  # (…, T, d)


def value_momentum_loop(v: torch.Tensor, eta: float) -> torch.Tensor:
    """:func:`value_momentum` by its recursion ``m_1 = 0``, ``m_t = η (m_{t−1} + v_{t−1})`` — the readable reference
    (``O(T)`` sequential steps). ``v (…, T, d) → (…, T, d)``."""
    _check_v(v)
    eta = _eta(eta)
    m, out = torch.zeros_like(v[..., 0, :]), [torch.zeros_like(v[..., 0, :])]
    for t in range(1, v.shape[-2]):
        m = eta * (m + v[..., t - 1, :])
        out.append(m)
    return torch.stack(out, dim=-2)


def momentum_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eta: float) -> torch.Tensor:
    """Causal momentum attention ``out_t = Σ_{j≤t} softmax_j(k_j·q_t/√dk) v_j + Σ_{i<t} η^{t−i} v_i``.

    ``q, k (…, T, dk)``, ``v (…, T, dv)`` → ``(…, T, dv)``; ``eta = 0`` is causal softmax attention.

    References
    ----------
    Dai et al. (2022), §5, the MoAttn equation. Part II, "Momentum attention".
    """
    return softmax_attention(q, k, v, causal=True) + value_momentum(v, eta)


class MoAttn(CausalSelfAttention):
    """Multi-head causal momentum attention, a mixer for :class:`~icl_course.gpt.GPT`.

    ``e_t ← [e_t +] W_O concat_h (Attn_h(q_t) + Σ_{i<t} η^{t−i} v_{h,i})``: :class:`~icl_course.causal.
    CausalSelfAttention` with ``attention="softmax"`` — the same four matrices ``W_Q, W_K, W_V`` ``(H·k, D)`` and
    ``W_O`` ``(D, H·k)``, registered in the same order, so one seed gives both mixers the same weights — plus the
    EMA of each head's values before ``W_O``. ``eta`` is fixed (a buffer-free float, not trained). ``eta = 0`` is
    the plain softmax mixer.
    """

    def __init__(self, dim: int, n_heads: int = 1, key_size: int | None = None, *, eta: float = MOMENTUM_ETA,
                 init_std: float = 0.02, residual: bool = False, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32, device: str | torch.device | None = None) -> None:
        super().__init__(dim, n_heads, key_size, attention="softmax", init_std=init_std, residual=residual,
                         generator=generator, dtype=dtype, device=device)
        self.eta = _eta(eta)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_heads={self.n_heads}, key_size={self.key_size}, eta={self.eta}"

    def forward(self, E: torch.Tensor) -> torch.Tensor:
        """``E (B, T, D)`` → the update ``(B, T, D)`` (``E`` + update when ``residual``)."""
        q, k, v = self.heads(E)  # (B, H, T, k)
        out = momentum_attention(q, k, v, self.eta)  # (B, H, T, k)
        B, T = E.shape[:2]
        update = self.W_O(out.transpose(1, 2).reshape(B, T, -1))  # (B, T, D)
        return E + update if self.residual else update


def momentum_mixer(config: GPTConfig, eta: float = MOMENTUM_ETA, *, dtype: torch.dtype = torch.float32,
                   device: str | torch.device | None = None):
    """The factory of :class:`MoAttn` mixers for a :class:`~icl_course.gpt.GPT` (``n_head`` heads of
    ``head_size``, no residual) — the counterpart of ``gpt.attention_mixer(config, "softmax")``."""
    eta = _eta(eta)
    return lambda i: MoAttn(config.d_model, config.n_head, config.head_size, eta=eta, init_std=0.0, dtype=dtype,
                            device=device)


# ------------------------------------------------------------------------------- momentum in the dual form
def momentum_coefficients(T: int, eta: float, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``c (T,)``: the total weight (≥ 1) of the i-th error signal after ``T`` heavy-ball steps; ``η = 0`` gives ones
    (plain GD). The closed form is the chapter's exercise ``momentum_gd_dual``."""
    T, eta = _checks.positive_int("T", T), _eta(eta)
    i = torch.arange(1, T + 1, dtype=dtype)
    return (1 - eta ** (T - i + 1)) / (1 - eta)


def _check_update(W0: torch.Tensor, x: torch.Tensor, e: torch.Tensor) -> None:
    _checks.tensor("W0", W0, 3, "(B, dy, dx)")
    _checks.tensor("x", x, 3, "(B, N, dx)")
    _checks.tensor("e", e, 3, "(B, N, dy)")
    if x.shape[:2] != e.shape[:2] or W0.shape != (x.shape[0], e.shape[2], x.shape[2]):
        raise ValueError(f"need W0 (B, dy, dx), x (B, N, dx), e (B, N, dy) with matching B, N, dx, dy; got "
                         f"{tuple(W0.shape)}, {tuple(x.shape)}, {tuple(e.shape)}")


def momentum_update(W0: torch.Tensor, x: torch.Tensor, e: torch.Tensor, lr: float, eta: float) -> torch.Tensor:
    """Heavy-ball updates of a linear layer, one example per step, driven by the error signals ``e``:
    ``u_i = η u_{i−1} + e_i x_iᵀ`` (``u_0 = 0``), ``W_i = W_{i−1} + lr·u_i``. Returns ``W_N (B, dy, dx)``.

    ``W0 (B, dy, dx)``, ``x (B, N, dx)``, ``e (B, N, dy)``. With ``e_i = −∂L/∂(W x_i)`` held fixed (the dual form's
    meta-gradients, Dai et al. 2022, Eq. 8–10) and ``η = 0`` this is ``W0 + lr Σ e_i x_iᵀ``.
    """
    _check_update(W0, x, e)
    lr, eta = _checks.positive_float("lr", lr), _eta(eta)
    W, u = W0.clone(), torch.zeros_like(W0)
    for i in range(x.shape[1]):
        u = eta * u + e[:, i, :, None] * x[:, i, None, :]  # (B, dy, dx): e_i x_iᵀ
        W = W + lr * u
    return W


def momentum_dual(W0: torch.Tensor, x: torch.Tensor, e: torch.Tensor, q: torch.Tensor, lr: float,
                  eta: float) -> torch.Tensor:
    """The dual form of :func:`momentum_update` applied to a query: ``W_N q = W0 q + lr Σ_i c_i e_i (x_i·q)`` — linear
    attention with keys ``x_i``, values ``c_i e_i`` (:func:`momentum_coefficients`). ``q (B, dx)`` → ``(B, dy)``."""
    _check_update(W0, x, e)
    _checks.tensor("q", q, 2, "(B, dx)")
    if q.shape != (x.shape[0], x.shape[2]):
        raise ValueError(f"q must have shape (B, dx) = {(x.shape[0], x.shape[2])}, got {tuple(q.shape)}")
    lr = _checks.positive_float("lr", lr)
    c = momentum_coefficients(x.shape[1], eta, dtype=x.dtype).to(x.device)  # (N,)
    scores = (x @ q[:, :, None])[..., 0]  # (B, N): x_i·q
    return (W0 @ q[:, :, None])[..., 0] + lr * ((c * scores)[:, None, :] @ e)[:, 0]


class MomentumExactness(NamedTuple):
    """Float64 relative errors of the chapter's identities (D13–D15)."""

    ema_vs_loop: float
    dual_vs_primal: float
    eta0_vs_softmax: float


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@torch.no_grad()
def momentum_exactness(seed: int = 0) -> MomentumExactness:
    """Measure, in float64 on data from ``seed``: :func:`value_momentum` vs its loop (``(2, 3, 40, 8)``, η = 0.5 and
    0.9, the worse); :func:`momentum_dual` vs :func:`momentum_update` (B = 4, N = 12, dx = 5, dy = 3, η = 0.9); a
    GPT with ``MoAttn(η = 0)`` vs the same GPT with the softmax mixer, same seed (logits of 4 sequences)."""
    g = runtime.generator(seed)
    v = torch.randn(2, 3, 40, 8, generator=g, dtype=torch.float64)
    ema = max(_rel(value_momentum(v, eta), value_momentum_loop(v, eta)) for eta in (0.5, 0.9))
    W0, x = torch.randn(4, 3, 5, generator=g, dtype=torch.float64), torch.randn(4, 12, 5, generator=g,
                                                                                dtype=torch.float64)
    e, q = torch.randn(4, 12, 3, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    primal = (momentum_update(W0, x, e, 0.1, 0.9) @ q[:, :, None])[..., 0]
    dual = _rel(momentum_dual(W0, x, e, q, 0.1, 0.9), primal)
    cfg = GPTConfig(vocab_size=11, block_size=9, n_layer=2, n_head=2, d_model=16)
    plain = GPT(cfg, attention_mixer(cfg, "softmax", dtype=torch.float64), generator=runtime.generator(seed),
                dtype=torch.float64)
    mo = GPT(cfg, momentum_mixer(cfg, 0.0, dtype=torch.float64), generator=runtime.generator(seed),
             dtype=torch.float64)
    idx = torch.randint(0, 11, (4, 9), generator=g)
    return MomentumExactness(ema, dual, _rel(mo(idx), plain(idx)))


# ------------------------------------------------------------------------------- the experiment
@dataclass(frozen=True)
class RecallSettings:
    """In-context associative recall and the training budget shared by both mixers.

    A sequence holds ``n_pairs`` *pair tokens*, each binding one of ``n_keys`` keys (distinct within a sequence) to
    one of ``n_values`` values, then a *query token* naming one of those keys; the target is the value bound to it.
    Only the last position is scored. Vocabulary: keys ``0 … n_keys − 1``, values next, then the pair tokens
    ``(key, value)``. Chance is ``1/n_values`` (loss ``log n_values``). The GPT: ``n_layer`` blocks of ``n_head``
    heads, width ``d_model``; Adam (the course's betas) at ``lr`` after global-norm clipping at ``clip``, ``steps``
    updates of ``batch_size`` fresh sequences, evaluated every ``eval_every`` updates on ``eval_size`` fixed
    sequences; ``eta`` of :class:`MoAttn`. A run *escapes* the plateau at the first evaluation below
    ``escape_loss`` within the first ``steps − then`` updates and stops ``then`` updates later (``train.Escape``);
    ``seeds`` the number of paired runs.
    """

    n_pairs: int = 6
    n_keys: int = 8
    n_values: int = 8
    n_layer: int = 2
    n_head: int = 2
    d_model: int = 32
    steps: int = 1_150
    batch_size: int = 64
    lr: float = 3e-3
    clip: float = 1.0
    eval_every: int = 25
    eval_size: int = 1_000
    eta: float = MOMENTUM_ETA
    escape_loss: float = 1.0
    then: int = 150
    seeds: int = 6

    def __post_init__(self) -> None:
        for name in ("n_pairs", "n_keys", "n_values", "steps", "batch_size", "eval_every", "eval_size", "then",
                     "seeds"):
            _checks.positive_int(f"RecallSettings.{name}", getattr(self, name))
        if self.n_pairs > self.n_keys:
            raise ValueError(f"RecallSettings.n_pairs ({self.n_pairs}) must be ≤ n_keys ({self.n_keys})")
        _eta(self.eta)
        _checks.positive_float("RecallSettings.escape_loss", self.escape_loss)
        if self.then >= self.steps:
            raise ValueError(f"RecallSettings.then ({self.then}) must be < steps ({self.steps})")

    @property
    def vocab_size(self) -> int:
        return self.n_keys + self.n_values + self.n_keys * self.n_values

    def gpt_config(self) -> GPTConfig:
        return GPTConfig(vocab_size=self.vocab_size, block_size=self.n_pairs + 1, n_layer=self.n_layer,
                         n_head=self.n_head, d_model=self.d_model)


RECALL = runtime.Scales(
    cpu=RecallSettings(),
    paper=RecallSettings(n_pairs=24, n_keys=64, n_values=64, n_layer=4, n_head=4, d_model=128, steps=5_500,
                         eval_every=100, eval_size=10_000, then=500, seeds=16),
)
"""``cpu``: what the book trains: 6 pairs over 8 keys and 8 values, two layers of width 32, lr 3e-3 (at 6e-3 and
1e-2 most runs of either mixer stayed on the plateau for 600 updates); an escape below 1 nat counts within 1,000
updates, each run stops 150 updates after it (at most 1,150; 7 ms an update); six paired seeds. ``paper``: a larger
recall task for a GPU, not Dai et al.'s 350M-parameter language model, which this chapter does not reproduce."""

MIXERS = ("softmax", "momentum")
"""The two mixers compared, in this order everywhere."""


def recall_batch(settings: RecallSettings, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
    """``batch_size`` recall sequences ``(B, n_pairs + 1)`` int64 and their targets ``(B,)`` (value token ids)."""
    B, P, K, V = _checks.positive_int("batch_size", batch_size), settings.n_pairs, settings.n_keys, settings.n_values
    keys = torch.argsort(torch.rand(B, K, generator=generator), dim=-1)[:, :P]  # (B, P): distinct keys
    vals = torch.randint(0, V, (B, P), generator=generator)  # (B, P)
    pairs = K + V + keys * V + vals  # (B, P): the pair tokens
    which = torch.randint(0, P, (B,), generator=generator)
    rows = torch.arange(B)
    return torch.cat([pairs, keys[rows, which, None]], dim=1), K + vals[rows, which]


def new_recall_model(kind: str, settings: RecallSettings = RECALL.cpu, *, seed: int = 0,
                     device: str | torch.device | None = None) -> GPT:
    """A fresh GPT with the mixer ``kind`` (``"softmax"`` or ``"momentum"``), weights from ``seed`` — the same
    weights for both kinds."""
    if kind not in MIXERS:
        raise ValueError(f"kind must be one of {list(MIXERS)}, got {kind!r}")
    cfg = settings.gpt_config()
    make = (attention_mixer(cfg, "softmax", device=device) if kind == "softmax"
            else momentum_mixer(cfg, settings.eta, device=device))
    return GPT(cfg, make, generator=runtime.generator(seed), device=device)


def recall_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy (nats) of the last position's prediction against the target value."""
    x, y = batch
    return F.cross_entropy(model(x)[:, -1], y)


@torch.no_grad()
def recall_accuracy(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Fraction of sequences whose last-position argmax is the target value."""
    x, y = batch
    return float((model(x)[:, -1].argmax(-1) == y).double().mean())


def _eval_set(settings: RecallSettings, size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = recall_batch(settings, size, runtime.generator(10_007))
    return x.to(device), y.to(device)


def train_recall(kind: str, settings: RecallSettings = RECALL.cpu, *, seed: int = 0, eval_size: int | None = None,
                 device: str | torch.device | None = None, progress: bool | None = None) -> train.TrainedRun:
    """Train one GPT with the mixer ``kind`` through :func:`~icl_course.train.train_run`. Weights from ``seed``; the
    batch of update ``s`` from the generator seeded ``1_000_003·(seed + 1) + s`` — so for one seed both mixers see
    the same batches in the same order; tracked on a fixed evaluation set (seed 10,007, ``eval_size`` sequences);
    stopped ``settings.then`` updates after the escape (``run.escape``, ``None`` if the loss never fell below
    ``settings.escape_loss``)."""
    model = new_recall_model(kind, settings, seed=seed, device=device)

    def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = recall_batch(settings, settings.batch_size, runtime.generator(1_000_003 * (seed + 1) + step))
        return x.to(device), y.to(device)

    ev = _eval_set(settings, eval_size or settings.eval_size, device)
    return train.train_run(model, recall_loss, batches, settings.steps, eval_set=ev, eval_batch=ev,
                           escape=train.Escape(settings.escape_loss, settings.then), lr=settings.lr,
                           clip=settings.clip, eval_every=settings.eval_every, progress=progress,
                           desc=f"{kind} GPT seed {seed}")


class SignTest(NamedTuple):
    """A paired two-sided sign test: ``lower`` pairs with a negative difference, ``higher`` positive, ``ties`` zero;
    ``p`` the exact binomial(n, 1/2) probability, ties dropped, of a split at least as uneven."""

    lower: int
    higher: int
    ties: int
    p: float


def sign_test(diffs: list[float]) -> SignTest:
    """The exact two-sided sign test of paired differences ``diffs`` (a list of numbers, ties = 0 dropped):
    ``p = min(1, 2 Σ_{j ≤ min(lower, higher)} C(n, j) / 2^n)``; ``p = 1`` when every pair ties."""
    if not isinstance(diffs, (list, tuple)) or not all(isinstance(d, (int, float)) for d in diffs):
        raise TypeError(f"diffs must be a list of numbers, got {diffs!r}")
    lower, higher = sum(d < 0 for d in diffs), sum(d > 0 for d in diffs)
    n = lower + higher
    tail = sum(math.comb(n, j) for j in range(min(lower, higher) + 1)) / 2**n
    return SignTest(lower, higher, len(diffs) - n, min(1.0, 2 * tail))


class MomentumComparison(NamedTuple):
    """Paired runs of the two mixers. Per mixer, lists in ``seeds`` order: the evaluation steps and losses of each run
    (``steps``, ``curves``; a run stops ``then`` updates after its escape), the ``escape`` step (first evaluation
    below ``escape_loss``; ``None``: never, within ``cap`` updates), and the loss and accuracy on the evaluation set
    when the run stopped (``final_loss``, ``final_acc``); ``chance`` is ``log n_values``."""

    seeds: tuple[int, ...]
    steps: dict[str, list[list[int]]]
    curves: dict[str, list[list[float]]]
    escape: dict[str, list[int | None]]
    final_loss: dict[str, list[float]]
    final_acc: dict[str, list[float]]
    cap: int
    escape_loss: float
    chance: float

    def escape_steps(self, kind: str) -> list[int]:
        """The escape steps of ``kind``, a run that never escaped counted at ``cap`` (right-censored)."""
        return [self.cap if e is None else e for e in self.escape[kind]]

    def diff(self) -> list[int]:
        """Momentum − softmax escape step per seed (censored at ``cap``); negative: momentum escaped sooner."""
        return [m - s for m, s in zip(self.escape_steps("momentum"), self.escape_steps("softmax"))]

    def sign_test(self) -> SignTest:
        """:func:`sign_test` of :meth:`diff` (``lower``: seeds on which momentum escaped sooner)."""
        return sign_test(self.diff())

    def not_escaped(self, kind: str) -> int:
        """How many runs of ``kind`` never fell below ``escape_loss`` within ``cap`` updates."""
        return sum(e is None for e in self.escape[kind])

    def solved(self, kind: str, accuracy: float = 0.9) -> int:
        """How many runs of ``kind`` ended with an accuracy of at least ``accuracy``."""
        return sum(a >= accuracy for a in self.final_acc[kind])

    def converged(self, accuracy: float = 0.9) -> bool:
        """Every run that escaped ended with an accuracy of at least ``accuracy``: escaped runs solved the task, and
        the others are exactly those counted by :meth:`not_escaped`."""
        return all(a >= accuracy for k in MIXERS for e, a in zip(self.escape[k], self.final_acc[k]) if e is not None)


def _within(escape: int | None, settings: RecallSettings) -> int | None:
    return escape if escape is not None and escape <= settings.steps - settings.then else None


def momentum_comparison(settings: RecallSettings = RECALL.cpu, *, first_seed: int = 0, eval_size: int | None = None,
                        device: str | torch.device | None = None,
                        progress: bool | None = None) -> MomentumComparison:
    """Train both mixers on seeds ``first_seed … first_seed + settings.seeds − 1`` (:func:`train_recall`) and
    collect the :class:`MomentumComparison`."""
    seeds = tuple(range(first_seed, first_seed + settings.seeds))
    out: dict[str, dict[str, list]] = {f: {k: [] for k in MIXERS} for f in ("steps", "curves", "escape", "loss", "acc")}
    for seed in seeds:
        for kind in MIXERS:
            run = train_recall(kind, settings, seed=seed, eval_size=eval_size, device=device, progress=progress)
            for f, value in (("steps", run.history.eval_step), ("curves", run.history.eval_loss),
                             ("escape", _within(run.escape, settings)), ("loss", run.history.eval_loss[-1]),
                             ("acc", recall_accuracy(run.model, run.eval_set))):
                out[f][kind].append(value)
    return MomentumComparison(seeds, out["steps"], out["curves"], out["escape"], out["loss"], out["acc"],
                              settings.steps - settings.then, settings.escape_loss, math.log(settings.n_values))
