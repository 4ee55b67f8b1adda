"""What Part III's chapters share: the official regression setting, Proposition 1's construction, the weight
products every analysis reads, the one-layer training recipe and the comparison with GD."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .. import _checks, metrics, runtime, solvers, tasks, train
from ..models import LinearSelfAttention, LSAStack
from ..query import icl_loss, predict
from ..tasks import make_tokens


@dataclass(frozen=True)
class RegressionSettings:
    """The in-context linear-regression experiment of the official ``constructed_token_setup`` notebook.

    ``d = N = 10``, one output, batch 2,048, evaluation on 10,000 tasks, Adam (lr 1e-3, β = (0.9, 0.98)) after
    global-norm clipping at 1e-3. ``steps``: the official notebook trains 5,000 steps; the book 3,000 (the GD level
    is reached by ~600).

    References
    ----------
    von Oswald et al. (2022), Sec. 3 and the official notebook ``constructed_token_setup``.
    """

    dx: int = 10
    dy: int = 1
    n_context: int = 10
    batch_size: int = 2048
    eval_size: int = 10_000
    clip: float = 1e-3
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    steps: int = 5000

    def __getitem__(self, key: str):
        warnings.warn(f"settings[{key!r}] is deprecated and will be removed in the next release; use settings.{key}",
                      DeprecationWarning, stacklevel=2)
        return getattr(self, key)


ONE_LAYER = runtime.Scales(cpu=RegressionSettings(steps=3000), paper=RegressionSettings(steps=5000))
"""The one-layer experiment at the book's size (3,000 steps) and the official one (5,000 steps)."""

PAPER = ONE_LAYER.paper
"""The headline setting of the official ``constructed_token_setup`` notebook (d, N, batch, clip, Adam)."""


def constructed_lsa(
    dx: int,
    dy: int,
    n_context: int,
    lr: float | Sequence[float],
    n_layers: int = 1,
    dtype: torch.dtype = torch.float32,
) -> LSAStack:
    """The hand-built model of Proposition 1: ``n_layers`` linear self-attention layers = that many GD steps.

    Each layer's key–query product compares the tokens' x-parts, its values carry the y-parts and its projection
    writes ``η_k / N`` times their sum back into the y-slots; the matrices themselves are an exercise of the chapter
    (``proposition1_weights``), so they are not spelled out here (``model.layer(k).matrices()`` shows them). Keys and
    values come from the context tokens only. After layer k a context token holds ``(x_j, y_j − W_k x_j)`` and the
    query ``(x_q, −W_k x_q)``.

    Parameters
    ----------
    dx, dy, n_context : int
        Input and output dimension and the context length N the model accepts (other lengths raise).
    lr : float or sequence of ``n_layers`` floats
        GD step size η (per layer if a sequence).
    n_layers : int
        Number of layers = GD steps.

    References
    ----------
    von Oswald et al. (2022), Proposition 1 and Appendix A.1; Part III, "One layer, one step".
    """
    dx, dy = _checks.positive_int("dx", dx), _checks.positive_int("dy", dy)
    N, K = _checks.positive_int("n_context", n_context), _checks.positive_int("n_layers", n_layers)
    if isinstance(lr, str):
        raise TypeError(f"lr must be a real number or a sequence of {K} real numbers, got a str")
    if isinstance(lr, Sequence):
        if len(lr) != K:
            raise ValueError(f"lr as a sequence needs one step size per layer ({K}), got {len(lr)}")
        lrs = [_checks.positive_float(f"lr[{k}]", v, allow_zero=True) for k, v in enumerate(lr)]
    else:
        lrs = [_checks.positive_float("lr", lr, allow_zero=True)] * K
    D = dx + dy
    x_block = torch.zeros(D, D, dtype=dtype)
    x_block[:dx, :dx] = torch.eye(dx, dtype=dtype)
    y_block = torch.zeros(D, D, dtype=dtype)
    y_block[dx:, dx:] = torch.eye(dy, dtype=dtype)
    layers = [LinearSelfAttention.from_matrices(x_block, x_block.clone(), -y_block, (eta / N) * y_block)
              for eta in lrs]
    return LSAStack(layers, n_context=N)


def gd_predict(batch: tasks.RegressionBatch, lr: float, steps: int = 1) -> torch.Tensor:
    """Predictions ``(B, dy)`` of ``steps`` GD steps from 0 on each task's context."""
    return solvers.predict(solvers.gd(batch.x, batch.y, lr, steps), batch.x_query)


def weight_blocks(layer: LinearSelfAttention, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`weight_products` after checking that ``dx`` splits the layer's tokens into an x- and a y-part."""
    kq, pv = weight_products(layer)
    dx = _checks.positive_int("dx", dx)
    if dx >= kq.shape[0]:
        raise ValueError(f"dx must be below the layer's token size D = {kq.shape[0]} (tokens (x, y)), got {dx}")
    return kq, pv


def weight_products(layer: LinearSelfAttention) -> tuple[torch.Tensor, torch.Tensor]:
    """The identifiable parts of a layer: ``W_Kᵀ W_Q`` and ``P W_V`` (both ``(D, D)``, detached).

    Only these products enter the forward pass; the factors have a gauge freedom
    (``W_K → A W_K, W_Q → A⁻ᵀ W_Q``; ``(W_Kᵀ W_Q, P W_V) → (c·W_Kᵀ W_Q, P W_V / c)``).
    """
    m = layer.matrices()
    return m["W_K"].T @ m["W_Q"], m["P"] @ m["W_V"]


class ParallelHeads(torch.nn.Module):
    """Several attention heads read the same tokens and add their updates: ``E_q + Σ_h (head_h(E) − E_q)``.

    Each head is a :class:`LinearSelfAttention` (its own ``W_Q, W_K, W_V, P``); with ``attention="softmax"`` and two
    heads of opposite scores the zero-order term of the softmax cancels, which one head cannot do (von Oswald et al.
    2022, App. A.9, Figs. 11–12). Same interface as a one-layer :class:`LSAStack` (``forward(E, query_only)``,
    ``n_context``), so :func:`train_lsa`, :func:`compare_with_gd` and the sweeps take it.
    """

    def __init__(self, dim: int, heads: int = 2, *, n_context: int | None = None,
                 generator: torch.Generator | None = None, **layer_kw) -> None:
        super().__init__()
        n_heads = _checks.positive_int("heads", heads)
        self.heads = torch.nn.ModuleList(LinearSelfAttention(dim, generator=generator, **layer_kw)
                                         for _ in range(n_heads))
        self.n_context = None if n_context is None else _checks.positive_int("n_context", n_context)

    def forward(self, E: torch.Tensor, query_only: bool = False) -> torch.Tensor:
        """``E (B, N+1, D)`` → ``(B, N+1, D)``, or the query token ``(B, 1, D)`` with ``query_only``."""
        _checks.tensor("E", E, 3, "(B, N+1, D)")
        if self.n_context is not None and E.shape[1] != self.n_context + 1:
            raise ValueError(f"this model was built for n_context={self.n_context}: E must have shape "
                             f"(B, {self.n_context + 1}, D), got {tuple(E.shape)}")
        E_q = E[:, -1:] if query_only else E  # (B, T', D)
        return E_q + sum(head(E, query_only=query_only) - E_q for head in self.heads)


def train_lsa(
    *,
    seed: int = 0,
    steps: int = 3000,
    n_layers: int = 1,
    shared: bool = False,
    attention: str = "linear",
    heads: int = 1,
    include_query: bool = False,
    batch_size: int = PAPER.batch_size,
    eval_size: int = PAPER.eval_size,
    n_context: int = PAPER.n_context,
    dx: int = PAPER.dx,
    dy: int = PAPER.dy,
    clip: float | None = PAPER.clip,
    eval_every: int = 100,
    after_escape: int | None = None,
    escape_loss: float | None = None,
    callbacks: dict | None = None,
    progress: bool | None = None,
    **task_kw,
) -> train.TrainedRun:
    """Train a linear self-attention model on fresh in-context regression tasks with the official settings.

    The seed fixes the initial weights (``seed``), the training stream (``seed + 1``) and the evaluation set
    (``seed + 2``). ``task_kw`` go to :func:`tasks.sample_linear_regression` (e.g. ``input_range``);
    ``callbacks`` (``name -> fn(model)``) are recorded at every evaluation (see :func:`train.fit`).

    Training can sit on a plateau near the zero predictor's loss for a seed-dependent number of steps. With
    ``after_escape`` and ``escape_loss`` it stops ``after_escape`` steps after the first evaluation below
    ``escape_loss`` (:class:`train.Escape`), and ``steps`` is only the cap; the escape step is recorded (None if the
    run never escaped). ``heads > 1`` trains one layer of that many :class:`ParallelHeads` instead of a stack.
    """
    if _checks.positive_int("heads", heads) > 1:
        if n_layers != 1 or shared:
            raise ValueError(f"heads={heads} trains one layer of parallel heads: n_layers must be 1 and shared False")
        model = ParallelHeads(dx + dy, heads, n_context=n_context, attention=attention, include_query=include_query,
                              generator=runtime.generator(seed))
    else:
        model = LSAStack.new(dx + dy, n_layers, shared=shared, n_context=n_context, attention=attention,
                             include_query=include_query, generator=runtime.generator(seed))
    ev = tasks.regression_eval_set(eval_size, n_context, dx, dy, seed=seed + 2, **task_kw)
    escape = None
    if escape_loss is not None and after_escape is None:
        raise ValueError("escape_loss needs after_escape, the steps to train once the loss is below it")
    if after_escape is not None:
        if escape_loss is None:
            raise ValueError("after_escape needs escape_loss, the loss below which the plateau counts as left")
        escape = train.Escape(escape_loss, _checks.positive_int("after_escape", after_escape))
    batches = tasks.regression_stream(batch_size, n_context, dx, dy, seed=seed + 1, **task_kw)
    return train.train_run(model, icl_loss, batches, steps, eval_set=ev, eval_batch=(ev.tokens(), ev.y_query),
                           escape=escape, lr=PAPER.lr, betas=PAPER.betas, clip=clip, eval_every=eval_every,
                           callbacks=callbacks, progress=progress, desc=f"LSA seed {seed}")


def pool_stream(pool: tasks.RegressionBatch, batch_size: int, *, seed: int, device: str | torch.device | None = None):
    """``step -> (tokens, y_query)`` from a *fixed* pool of tasks instead of fresh ones: at every step
    ``batch_size`` tasks drawn uniformly with replacement from ``pool`` by one seeded generator, or the whole pool
    when it holds no more than ``batch_size`` tasks (full-batch training). The fixed-training-set experiment of
    von Oswald et al. (2022), App. A.12."""
    if not isinstance(pool, tasks.RegressionBatch):
        raise TypeError(f"pool must be a tasks.RegressionBatch, got {type(pool).__name__}")
    batch_size = _checks.positive_int("batch_size", batch_size)
    tokens, y_query = pool.tokens(), pool.y_query
    n_pool = tokens.shape[0]
    gen = runtime.generator(seed, device)

    def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if n_pool <= batch_size:
            return tokens, y_query
        idx = torch.randint(n_pool, (batch_size,), generator=gen, device=gen.device).to(tokens.device)
        return tokens[idx], y_query[idx]

    return batches


def compare_with_gd(model: torch.nn.Module, batch: tasks.RegressionBatch, lr: float, steps: int = 1) -> dict:
    """Trained model vs ``steps`` GD steps at ``lr`` on the same tasks: losses, "Preds diff", "Model cos/diff"."""
    dx = batch.dx
    tokens = batch.tokens()
    with torch.no_grad():
        pred_tf, pred_gd = predict(model, tokens, dx), gd_predict(batch, lr, steps)
    sens_tf = metrics.sensitivities(lambda xq: predict(model, make_tokens(batch.x, batch.y, xq), dx), batch.x_query)
    sens_gd = solvers.gd(batch.x, batch.y, lr, steps)  # ∂ŷ/∂x_q of GD is its weight matrix
    return _alignment(batch, "gd", pred_tf, pred_gd, sens_tf, sens_gd)


def _alignment(batch: tasks.RegressionBatch, ref_name: str, pred_tf: torch.Tensor, pred_ref: torch.Tensor,
               sens_tf: torch.Tensor, sens_ref: torch.Tensor) -> dict:
    """The comparison :func:`compare_with_gd` and ``compare_with_gdpp`` report: both losses on the batch's queries,
    "Preds diff", and "Model cos/diff" of the implicit models ``∂ŷ/∂x_q``."""
    return {
        "loss_tf": float(metrics.half_squared_error(pred_tf, batch.y_query)),
        f"loss_{ref_name}": float(metrics.half_squared_error(pred_ref, batch.y_query)),
        "pred_diff": metrics.prediction_difference(pred_tf, pred_ref),
        "model_cos": metrics.model_cosine(sens_tf, sens_ref),
        "model_diff": metrics.model_difference(sens_tf, sens_ref),
    }
