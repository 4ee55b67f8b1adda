"""Part III, chapter "Standard tokens: copy, then descend" (Proposition 3: a softmax copy layer, then GD).

Two copy directions make the second layer's sum a GD step: Proposition 3's (App. A.5: every input token copies the
label that *follows* it, :func:`constructed_label_copy_gd`) and the reverse (every target copies the input before it,
a previous-token head, :func:`constructed_copy_gd`). Only the second survives a causal mask
(:class:`CausalSelfAttention`, ``new_standard_model(causal=True)``).

References
----------
von Oswald et al. (2022), Sec. 4, Proposition 3 and App. A.5; Olsson et al. (2022), induction heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .. import _checks, metrics, runtime, solvers, tasks, train
from ..models import LinearSelfAttention, LSAStack, StandardTokenLSA
from ..query import icl_loss, predict
from ._common import PAPER, gd_predict

__all__ = ["StandardSettings", "STANDARD", "COPY_DIRECTIONS", "copy_layer", "constructed_label_copy_gd",
           "constructed_copy_gd", "copy_gd_errors", "CausalSelfAttention", "new_standard_model",
           "train_standard_tokens", "copy_attention", "copy_scores", "with_gd_step", "copy_readout"]

COPY_DIRECTIONS = ("next", "previous")
"""The copy layer's two directions: ``"next"`` — every token reads the token after it, so an input token takes its
label (Proposition 3, App. A.5); ``"previous"`` — every token reads the one before it, so a target token takes its
input (a previous-token head, the only direction a causal mask allows)."""


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


def _direction(direction: object) -> str:
    if direction not in COPY_DIRECTIONS:
        raise ValueError(f"direction must be one of {list(COPY_DIRECTIONS)}, got {direction!r}")
    return str(direction)


def copy_layer(dx: int, dy: int, n_context: int, *, direction: str = "next", beta: float = 40.0,
               dtype: torch.dtype = torch.float32) -> LinearSelfAttention:
    """The softmax copy layer on the standard layout (width ``dx + dy + 2N + 1``), sharpness ``beta``.

    ``W_Q = β I`` on the one-hot positions, so token ``t`` scores ``β`` on the key whose position ``W_K`` maps to
    ``p_t``, ``0`` on every other key.

    - ``direction="next"`` (Proposition 3, App. A.5): ``W_K p_s = p_{s−1}``, so token ``t`` reads token ``t + 1``; the
      value copies the y-slot, and input token ``x_i`` becomes ``(x_i, y_i)``. The query has no successor and would
      otherwise average every label into its own y-slot, so ``W_K p_0 = p_{2N}`` sends it to token 0 (an input token,
      y-slot 0). The last target token has no successor either; it averages labels into a token whose x-slot is 0,
      which the GD layer ignores.
    - ``direction="previous"``: token ``t`` reads token ``t − 1``, and target token ``y_i`` becomes ``(x_i, y_i)`` (a
      previous-token head). Building this layer is the chapter's exercise ``input_copy_weights``.

    References
    ----------
    von Oswald et al. (2022), Proposition 3 and App. A.5; Olsson et al. (2022), previous-token heads.
    """
    dx, dy = _checks.positive_int("dx", dx), _checks.positive_int("dy", dy)
    N = _checks.positive_int("n_context", n_context)
    beta = _checks.positive_float("beta", beta)
    direction = _direction(direction)
    T = 2 * N + 1
    D, p0 = dx + dy + T, dx + dy
    W_Q = torch.zeros(D, D, dtype=dtype)
    W_Q[p0:, p0:] = beta * torch.eye(T, dtype=dtype)
    W_K = torch.zeros(D, D, dtype=dtype)
    slot = torch.zeros(D, D, dtype=dtype)
    if direction == "next":
        W_K[p0:D - 2, p0 + 1:D - 1] = torch.eye(T - 2, dtype=dtype)  # key at position s -> p_{s-1}
        W_K[D - 1, p0] = 1.0  # key at position 0 -> p_{2N}: the query reads token 0
        slot[dx:p0, dx:p0] = torch.eye(dy, dtype=dtype)  # copy the y-slot
    else:
        W_K[p0 + 1:, p0:D - 1] = torch.eye(T - 1, dtype=dtype)
        slot[:dx, :dx] = torch.eye(dx, dtype=dtype)
    return LinearSelfAttention.from_matrices(W_Q, W_K, slot, slot.clone(), attention="softmax")


def _gd_layer(dx: int, dy: int, dim: int, n_context: int, lr: float, dtype: torch.dtype) -> LinearSelfAttention:
    """Proposition 1's layer on the standard layout's ``dim``-wide tokens: keys and queries from the x-slot, values
    from the y-slot, ``η/N`` times their sum written back into the y-slot (the query's y-slot reads −ŷ)."""
    N = _checks.positive_int("n_context", n_context)
    x_block = torch.zeros(dim, dim, dtype=dtype)
    x_block[:dx, :dx] = torch.eye(dx, dtype=dtype)
    y_block = torch.zeros(dim, dim, dtype=dtype)
    y_block[dx:dx + dy, dx:dx + dy] = torch.eye(dy, dtype=dtype)
    return LinearSelfAttention.from_matrices(x_block, x_block.clone(), -y_block,
                                             (_checks.positive_float("lr", lr, allow_zero=True) / N) * y_block)


def _copy_then_gd(dx: int, dy: int, n_context: int, lr: float, direction: str, beta: float,
                  dtype: torch.dtype) -> StandardTokenLSA:
    copy = copy_layer(dx, dy, n_context, direction=direction, beta=beta, dtype=dtype)
    N = _checks.positive_int("n_context", n_context)
    return StandardTokenLSA(LSAStack([copy, _gd_layer(dx, dy, copy.dim, N, lr, dtype)]), dx, dy, N)


def constructed_label_copy_gd(dx: int, dy: int, n_context: int, lr: float, *, beta: float = 40.0,
                              dtype: torch.dtype = torch.float32) -> StandardTokenLSA:
    """Proposition 3's hand-built model (App. A.5): a softmax layer in which every input token copies the label of
    the *next* token (:func:`copy_layer`, ``direction="next"``), then Proposition 1's linear layer — one GD step at
    ``lr`` on the standard token layout.

    After the copy an input token holds ``(x_i, y_i, p)`` and a target token keeps a zero x-slot, so in the second
    layer (keys from the x-slot, values from the y-slot) targets add nothing and the sum over all ``2N`` tokens is
    the GD step. Exact as ``β → ∞``; the error falls like ``e^{−β}``.

    References
    ----------
    von Oswald et al. (2022), Proposition 3 and App. A.5 ("copying the target data of the next token").
    """
    return _copy_then_gd(dx, dy, n_context, lr, "next", beta, dtype)


def constructed_copy_gd(dx: int, dy: int, n_context: int, lr: float, *, beta: float = 40.0,
                        dtype: torch.dtype = torch.float32) -> StandardTokenLSA:
    """The reverse of Proposition 3's copy: every token reads its *predecessor* (:func:`copy_layer`,
    ``direction="previous"``), so a target token becomes ``(x_i, y_i)`` — a previous-token head — then
    Proposition 1's linear layer: one GD step at ``lr``, exact as ``β → ∞``.

    Input tokens keep a zero y-slot, so in the second layer they add nothing. This is the direction a causal model
    can use (it reads only earlier tokens); :func:`constructed_label_copy_gd` is the paper's.

    References
    ----------
    von Oswald et al. (2022), Proposition 3; Olsson et al. (2022), previous-token and induction heads.
    """
    return _copy_then_gd(dx, dy, n_context, lr, "previous", beta, dtype)


def with_gd_step(model: StandardTokenLSA, lr: float) -> StandardTokenLSA:
    """``model``'s own first layer followed by Proposition 1's layer at ``lr`` in place of its second layer: whether
    one GD step can use what the first layer wrote (the copies it made, in the slots a GD step reads).

    The first layer is shared, not copied; the new second layer is masked like it when it is causal (which cannot
    change the prediction: only the query's output is read).
    """
    if not isinstance(model, StandardTokenLSA) or len(model.stack.layers) != 2:
        raise TypeError(f"model must be a two-layer StandardTokenLSA, got {type(model).__name__}")
    first = model.stack.layer(0)
    dtype = first.W_Q.weight.dtype
    gd_layer = _gd_layer(model.dx, model.dy, first.dim, model.n_context, lr, dtype)
    if isinstance(first, CausalSelfAttention):
        gd_layer = CausalSelfAttention.from_matrices(**gd_layer.matrices())
    return StandardTokenLSA(LSAStack([first, gd_layer.to(first.W_Q.weight.device)]), model.dx, model.dy,
                            model.n_context)


def copy_gd_errors(betas: Sequence[float], *, seed: int = 0, lr: float = 1.0, n_tasks: int = 64,
                   direction: str = "next", dtype: torch.dtype = torch.float64) -> dict[float, float]:
    """Max relative error of copy + GD layer against one GD step, for each softmax sharpness ``β``: Proposition 3's
    :func:`constructed_label_copy_gd` (``direction="next"``) or :func:`constructed_copy_gd` (``"previous"``)."""
    direction = _direction(direction)
    b = tasks.sample_linear_regression(n_tasks, PAPER.n_context, PAPER.dx, generator=runtime.generator(seed),
                                       dtype=dtype)
    ref = gd_predict(b, lr)
    out = {}
    for beta in betas:
        model = _copy_then_gd(b.dx, 1, b.x.shape[1], lr, direction, beta, dtype)
        with torch.no_grad():
            pred = predict(model, b.tokens(), b.dx)
        out[float(beta)] = metrics.relative_error(pred, ref, norm="max")
    return out


class CausalSelfAttention(LinearSelfAttention):
    """:class:`~icl_course.models.LinearSelfAttention` with a causal mask: context token ``t`` attends only to the
    context tokens ``s ≤ t`` (itself included, as in a language model); the query, the last token, still attends to
    every context token — all of them come before it.

    Same parameters, initialisation and weights as the parent, so ``new_standard_model(causal=True)`` starts from
    the very weights of ``new_standard_model()`` with the same seed; only the mask differs. With
    ``query_only=True`` the mask cannot matter (the query's row is all ones) and the parent's computation is used.

    References
    ----------
    Olsson et al. (2022) (causal, decoder-only models); von Oswald et al. (2022), Sec. 4 (no mask).
    """

    causal = True

    def mask(self, T: int, K: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Boolean ``(T, K)``: True where token ``t`` may read key ``s`` (``s ≤ t``); the keys are the first ``K``."""
        return torch.ones(T, K, dtype=torch.bool, device=device).tril()

    def forward(self, E: torch.Tensor, query_only: bool = False) -> torch.Tensor:
        """``E (B, T, D)`` → ``E_out (B, T, D)``, or ``(B, 1, D)`` (the query token alone) with ``query_only``."""
        if query_only:
            return super().forward(E, query_only=True)
        _checks.tensor("E", E, 3, f"(B, T, D={self.dim})")
        if E.shape[2] != self.dim:
            raise ValueError(f"E must have shape (B, T, D={self.dim}), got {tuple(E.shape)}")
        if E.dtype != self.W_Q.weight.dtype:
            raise TypeError(f"E must have the layer's dtype {self.W_Q.weight.dtype}, got {E.dtype}")
        if E.shape[1] < 2 and not self.include_query:
            raise ValueError(f"E needs at least one context token and the query, got T={E.shape[1]}")
        E_c = E if self.include_query else E[:, :-1]  # (B, K, D)
        scores = self.W_Q(E) @ self.W_K(E_c).transpose(1, 2)  # (B, T, K)
        allowed = self.mask(E.shape[1], E_c.shape[1], E.device)
        if self.attention == "softmax":
            weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        else:
            weights = scores.masked_fill(~allowed, 0.0)
        return E + self.P(weights @ self.W_V(E_c))  # (B, T, D)


def new_standard_model(first: str = "softmax", *, causal: bool = False, seed: int = 0, dx: int = PAPER.dx,
                       dy: int = PAPER.dy, n_context: int = PAPER.n_context,
                       init_scale: float = 0.01) -> StandardTokenLSA:
    """A fresh two-layer model on standard tokens: a ``first`` (``"softmax"`` or ``"linear"``) layer, then a
    linear one; official initialisation ``VarianceScaling(init_scale)``.

    ``causal=True`` masks both layers (:class:`CausalSelfAttention`), as in a language model. The query still reads
    the whole context in both; the second layer's mask cannot change the prediction (only the query's output is
    read), so what the mask takes away is the first layer's look ahead. Same initial weights as ``causal=False``.
    """
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
    gen = runtime.generator(seed)
    D = dx + dy + 2 * n_context + 1
    cls = CausalSelfAttention if causal else LinearSelfAttention
    layers = [cls(D, attention=first, init_scale=init_scale, generator=gen),
              cls(D, init_scale=init_scale, generator=gen)]
    return StandardTokenLSA(LSAStack(layers), dx, dy, n_context)


def train_standard_tokens(first: str = "softmax", *, causal: bool = False, seed: int = 0, scale: str = "cpu",
                          max_steps: int | None = None, eval_size: int = PAPER.eval_size,
                          device: str | torch.device | None = None, callbacks: dict | None = None,
                          progress: bool | None = None) -> train.TrainedRun:
    """Train :func:`new_standard_model` (``causal``: masked, see there) on the first chapter's tasks
    (d = N = 10, x ~ U(−0.5, 0.5)).

    Seeds as in :func:`train_lsa` (weights ``seed``, stream ``seed + 1``, eval ``seed + 2``); evaluation every 50
    steps; stops ``after_escape`` steps after the first evaluation below ``escape_loss`` (:data:`STANDARD`) or at
    ``max_steps``. The escape step is recorded; ``callbacks`` (``name -> fn(model)``) are recorded at every
    evaluation (see :func:`train.fit`), e.g. :func:`copy_scores` over training.
    """
    cfg = STANDARD.pick(scale)
    dx, dy, N = PAPER.dx, PAPER.dy, PAPER.n_context
    model = new_standard_model(first, causal=causal, seed=seed, init_scale=cfg.init_scale)
    model = model.to(device) if device is not None else model
    ev = tasks.regression_eval_set(eval_size, N, dx, dy, seed=seed + 2, device=device)
    batches = tasks.regression_stream(cfg.batch_size, N, dx, dy, seed=seed + 1, device=device)
    return train.train_run(model, icl_loss, batches, max_steps or cfg.max_steps, eval_set=ev,
                           eval_batch=(ev.tokens(), ev.y_query), escape=train.Escape(cfg.escape_loss, cfg.after_escape),
                           lr=PAPER.lr, betas=PAPER.betas, clip=cfg.clip, eval_every=50, callbacks=callbacks,
                           progress=progress,
                           desc=f"standard tokens ({first}{', causal' if causal else ''}) seed {seed}")


def copy_attention(model: StandardTokenLSA, batch: tasks.RegressionBatch) -> torch.Tensor:
    """The first layer's attention weights, averaged over ``batch``: ``(2N+1, 2N)`` (queries × keys).

    Softmax layers give probabilities; a linear first layer gives its raw scores ``q·k``. A causal layer
    (:class:`CausalSelfAttention`) gives exactly 0 on the keys its mask hides.
    """
    layer = model.stack.layer(0)
    with torch.no_grad():
        E = model.tokens(batch.tokens())
        scores = layer.W_Q(E) @ layer.W_K(E[:, :-1]).transpose(1, 2)  # (B, 2N+1, 2N)
        hidden = None
        if isinstance(layer, CausalSelfAttention):
            hidden = ~layer.mask(scores.shape[1], scores.shape[2], scores.device)
        if layer.attention == "softmax":
            scores = torch.softmax(scores if hidden is None else scores.masked_fill(hidden, float("-inf")), dim=-1)
        elif hidden is not None:
            scores = scores.masked_fill(hidden, 0.0)
        return scores.mean(dim=0)


def copy_scores(attn: torch.Tensor, *, causal: bool = False) -> dict[str, float]:
    """From a ``(2N+1, 2N)`` attention map: the mean weight a target token puts on its own input
    (``"y_reads_x"``), an input token on its own target (``"x_reads_y"``), and ``"uniform"``, the weight a target
    token would put on its input if it attended evenly: ``1 / 2N``, or with ``causal=True`` the mean over the
    targets of ``1 / (keys it sees)`` (target ``i`` sees ``2i + 2`` keys under the mask)."""
    _checks.tensor("attn", attn, 2, "(2N+1, 2N)")
    T, K = attn.shape
    if T != K + 1 or K % 2:
        raise ValueError(f"attn must have shape (2N+1, 2N), got {tuple(attn.shape)}")
    i = torch.arange(0, K, 2)
    uniform = float((1 / (i + 2).double()).mean()) if causal else 1 / K
    return {"y_reads_x": float(attn[i + 1, i].mean()), "x_reads_y": float(attn[i, i + 1].mean()),
            "uniform": uniform}


def _r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float(1 - ((pred - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum())


def copy_readout(model: StandardTokenLSA, fit: tasks.RegressionBatch, batch: tasks.RegressionBatch) -> dict:
    """How much of each target token's input ``x_i`` the first layer wrote into the target token — wherever it put
    it — and whether one GD step could use it.

    Linear read-outs, fitted by least squares on the tasks of ``fit`` (float64), map the first layer's output at a
    target token to ``x_i`` and ``y_i`` and at the query to ``x_q``; a second linear-attention layer can compute any
    such read-out with its keys, values and queries. On ``batch`` it returns ``r2_x`` (how well ``x_i`` is read out of
    the whole target token after the first layer), ``r2_x_before`` (the same before it: the copy's baseline),
    ``r2_x_slot`` (read out of the target's x-slot alone, the only place :func:`with_gd_step` looks), ``r2_y``; and
    ``loss``/``lr``: one GD step on the read-out pairs ``(x̂_i, ŷ_i)`` and query ``x̂_q`` at its best step size,
    against ``loss_gd``, one GD step on the true pairs at its own best step size.
    """
    if not isinstance(model, StandardTokenLSA):
        raise TypeError(f"model must be a StandardTokenLSA, got {type(model).__name__}")
    for name, b in (("fit", fit), ("batch", batch)):
        if not isinstance(b, tasks.RegressionBatch):
            raise TypeError(f"{name} must be a tasks.RegressionBatch, got {type(b).__name__}")
    dx, first = model.dx, model.stack.layer(0)

    def parts(b: tasks.RegressionBatch, after: bool):
        with torch.no_grad():
            E = model.tokens(b.tokens().to(first.W_Q.weight.dtype))
            H = (first(E) if after else E).double()  # (B, 2N+1, D)
        return H[:, 1:-1:2].reshape(-1, H.shape[-1]), H[:, -1]  # target tokens (B·N, D), query (B, D)

    def readout(a: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.linalg.lstsq(a, target, driver="gelsd").solution  # (D, out); gelsd: the token is rank-deficient

    x_fit, y_fit = fit.x.double().reshape(-1, dx), fit.y.double().reshape(fit.x.shape[0] * fit.x.shape[1], -1)
    x_ev, y_ev = batch.x.double().reshape(-1, dx), batch.y.double().reshape(batch.x.shape[0] * batch.x.shape[1], -1)
    out = {}
    for key, after, cols in (("r2_x", True, None), ("r2_x_before", False, None), ("r2_x_slot", True, slice(0, dx))):
        (t_fit, _), (t_ev, _) = parts(fit, after), parts(batch, after)
        if cols is not None:
            t_fit, t_ev = t_fit[:, cols], t_ev[:, cols]
        out[key] = _r2(t_ev @ readout(t_fit, x_fit), x_ev)
    (t_fit, q_fit), (t_ev, q_ev) = parts(fit, True), parts(batch, True)
    r_y, r_q = readout(t_fit, y_fit), readout(q_fit, fit.x_query.double())
    x_hat = (t_ev @ readout(t_fit, x_fit)).reshape(batch.x.shape)
    y_hat = (t_ev @ r_y).reshape(batch.y.shape)
    out["r2_y"] = _r2(y_hat.reshape(-1, y_ev.shape[1]), y_ev)
    decoded = tasks.RegressionBatch(x_hat, y_hat, q_ev @ r_q, batch.y_query.double(), batch.w.double())
    truth = tasks.RegressionBatch(*(t.double() for t in batch))

    def loss(b: tasks.RegressionBatch, eta: float) -> float:
        return float(metrics.half_squared_error(gd_predict(b, eta), b.y_query))

    out["lr"] = solvers.line_search(lambda e: loss(decoded, e), 0.0, 30.0, tol=1e-3)
    out["loss"] = loss(decoded, out["lr"])
    out["loss_gd"] = loss(truth, solvers.line_search(lambda e: loss(truth, e), 0.0, 30.0, tol=1e-3))
    return out
