"""Part III, chapter "Standard tokens: copy, then descend" (Proposition 3: a softmax copy layer, then GD).

References
----------
von Oswald et al. (2022), Sec. 4 and Proposition 3; Olsson et al. (2022), induction heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .. import _checks, metrics, runtime, tasks, train
from ..models import LinearSelfAttention, LSAStack, StandardTokenLSA
from ..query import icl_loss, predict
from ._common import PAPER, gd_predict

__all__ = ["StandardSettings", "STANDARD", "constructed_copy_gd", "copy_gd_errors", "new_standard_model",
           "train_standard_tokens", "copy_attention", "copy_scores"]


@dataclass(frozen=True)
class StandardSettings:
    """Settings of the standard-token experiment (2 layers; Adam 1e-3; official init ``0.02 / 2`` and clip 10):
    train to the escape from the plateau (first evaluation below ``escape_loss``) plus ``after_escape`` steps, at
    most ``max_steps``."""

    batch_size: int
    max_steps: int
    after_escape: int
    escape_loss: float = 0.3
    init_scale: float = 0.01
    clip: float = 10.0


STANDARD = runtime.Scales(
    cpu=StandardSettings(batch_size=512, max_steps=4000, after_escape=1000),
    paper=StandardSettings(batch_size=2048, max_steps=10_000, after_escape=10_000),
)
"""The standard-token experiment at two scales. ``paper``: the official notebook's batch 2,048 and 10,000 steps;
``cpu``: batch 512, to the escape plus 1,000 steps."""


def constructed_copy_gd(dx: int, dy: int, n_context: int, lr: float, *, beta: float = 40.0,
                        dtype: torch.dtype = torch.float32) -> StandardTokenLSA:
    """Proposition 3's hand-built model: a softmax layer that copies each ``x_i`` into the token of ``y_i``,
    then Proposition 1's linear layer — one GD step at ``lr`` on the standard token layout.

    Layer 1 scores ``β [t = s + 1]`` from the one-hot positions (``W_Q = β I``, ``W_K`` shifts a position to the
    next), so every token attends to its predecessor with weight ``e^β / (e^β + 2N − 1)``; its value copies the
    x-slot. After it a target token holds ``(x_i, y_i, p)``; input tokens keep a zero y-slot, so in layer 2 they add
    nothing and the sum over all ``2N`` tokens is the GD step. Exact as ``β → ∞``; the error falls like ``e^{−β}``.

    References
    ----------
    von Oswald et al. (2022), Proposition 3; Olsson et al. (2022), previous-token and induction heads.
    """
    dx, dy = _checks.positive_int("dx", dx), _checks.positive_int("dy", dy)
    N = _checks.positive_int("n_context", n_context)
    beta = _checks.positive_float("beta", beta)
    T = 2 * N + 1
    D, p0 = dx + dy + T, dx + dy
    W_Q = torch.zeros(D, D, dtype=dtype)
    W_Q[p0:, p0:] = beta * torch.eye(T, dtype=dtype)
    W_K = torch.zeros(D, D, dtype=dtype)
    W_K[p0 + 1:, p0:D - 1] = torch.eye(T - 1, dtype=dtype)  # position s -> e_{s+1}
    x_block = torch.zeros(D, D, dtype=dtype)
    x_block[:dx, :dx] = torch.eye(dx, dtype=dtype)
    copy = LinearSelfAttention.from_matrices(W_Q, W_K, x_block, x_block.clone(), attention="softmax")
    y_block = torch.zeros(D, D, dtype=dtype)
    y_block[dx:p0, dx:p0] = torch.eye(dy, dtype=dtype)
    gd_layer = LinearSelfAttention.from_matrices(x_block.clone(), x_block.clone(), -y_block,
                                                 (_checks.positive_float("lr", lr, allow_zero=True) / N) * y_block)
    return StandardTokenLSA(LSAStack([copy, gd_layer]), dx, dy, N)


def copy_gd_errors(betas: Sequence[float], *, seed: int = 0, lr: float = 1.0, n_tasks: int = 64,
                   dtype: torch.dtype = torch.float64) -> dict[float, float]:
    """Max relative error of :func:`constructed_copy_gd` against one GD step, for each softmax sharpness ``β``."""
    b = tasks.sample_linear_regression(n_tasks, PAPER.n_context, PAPER.dx, generator=runtime.generator(seed),
                                       dtype=dtype)
    ref = gd_predict(b, lr)
    out = {}
    for beta in betas:
        model = constructed_copy_gd(b.dx, 1, b.x.shape[1], lr, beta=beta, dtype=dtype)
        with torch.no_grad():
            pred = predict(model, b.tokens(), b.dx)
        out[float(beta)] = metrics.relative_error(pred, ref, norm="max")
    return out


def new_standard_model(first: str = "softmax", *, seed: int = 0, dx: int = PAPER.dx, dy: int = PAPER.dy,
                       n_context: int = PAPER.n_context, init_scale: float = 0.01) -> StandardTokenLSA:
    """A fresh two-layer model on standard tokens: a ``first`` (``"softmax"`` or ``"linear"``) layer, then a
    linear one; official initialisation ``VarianceScaling(init_scale)``."""
    gen = runtime.generator(seed)
    D = dx + dy + 2 * n_context + 1
    layers = [LinearSelfAttention(D, attention=first, init_scale=init_scale, generator=gen),
              LinearSelfAttention(D, init_scale=init_scale, generator=gen)]
    return StandardTokenLSA(LSAStack(layers), dx, dy, n_context)


def train_standard_tokens(first: str = "softmax", *, seed: int = 0, scale: str = "cpu", max_steps: int | None = None,
                          eval_size: int = PAPER.eval_size, device: str | torch.device | None = None,
                          callbacks: dict | None = None, progress: bool | None = None) -> train.TrainedRun:
    """Train :func:`new_standard_model` on the first chapter's tasks (d = N = 10, x ~ U(−0.5, 0.5)).

    Seeds as in :func:`train_lsa` (weights ``seed``, stream ``seed + 1``, eval ``seed + 2``); evaluation every 50
    steps; stops ``after_escape`` steps after the first evaluation below ``escape_loss`` (:data:`STANDARD`) or at
    ``max_steps``. The escape step is recorded; ``callbacks`` (``name -> fn(model)``) are recorded at every
    evaluation (see :func:`train.fit`), e.g. :func:`copy_scores` over training.
    """
    cfg = STANDARD.pick(scale)
    dx, dy, N = PAPER.dx, PAPER.dy, PAPER.n_context
    model = new_standard_model(first, seed=seed, init_scale=cfg.init_scale)
    model = model.to(device) if device is not None else model
    ev = tasks.regression_eval_set(eval_size, N, dx, dy, seed=seed + 2, device=device)
    batches = tasks.regression_stream(cfg.batch_size, N, dx, dy, seed=seed + 1, device=device)
    return train.train_run(model, icl_loss, batches, max_steps or cfg.max_steps, eval_set=ev,
                           eval_batch=(ev.tokens(), ev.y_query), escape=train.Escape(cfg.escape_loss, cfg.after_escape),
                           lr=PAPER.lr, betas=PAPER.betas, clip=cfg.clip, eval_every=50, callbacks=callbacks,
                           progress=progress,
                           desc=f"standard tokens ({first}) seed {seed}")


def copy_attention(model: StandardTokenLSA, batch: tasks.RegressionBatch) -> torch.Tensor:
    """The first layer's attention weights, averaged over ``batch``: ``(2N+1, 2N)`` (queries × keys).

    Softmax layers give probabilities; a linear first layer gives its raw scores ``q·k``.
    """
    layer = model.stack.layer(0)
    with torch.no_grad():
        E = model.tokens(batch.tokens())
        scores = layer.W_Q(E) @ layer.W_K(E[:, :-1]).transpose(1, 2)  # (B, 2N+1, 2N)
        if layer.attention == "softmax":
            scores = torch.softmax(scores, dim=-1)
        return scores.mean(dim=0)


def copy_scores(attn: torch.Tensor) -> dict[str, float]:
    """From a ``(2N+1, 2N)`` attention map: the mean weight a target token puts on its own input
    (``"y_reads_x"``), an input token on its own target (``"x_reads_y"``), and the uniform level ``1 / 2N``."""
    _checks.tensor("attn", attn, 2, "(2N+1, 2N)")
    T, K = attn.shape
    if T != K + 1 or K % 2:
        raise ValueError(f"attn must have shape (2N+1, 2N), got {tuple(attn.shape)}")
    i = torch.arange(0, K, 2)
    return {"y_reads_x": float(attn[i + 1, i].mean()), "x_reads_y": float(attn[i, i + 1].mean()),
            "uniform": 1 / K}
