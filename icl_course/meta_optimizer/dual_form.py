"""The dual form: a linear layer trained by gradient descent is its initial weights plus linear attention.

D1 (Irie et al. 2022; Aizerman et al. 1964's kernel view; Dai et al. 2022, Eq. 7–8). A linear layer
``F(x) = W0 x`` trained by one GD step of step size η on inputs ``x_i`` with output gradients ``∂L/∂y_i`` becomes
``W = W0 + ΔW`` with ``ΔW = Σ_i e_i x_iᵀ`` and error signals ``e_i = −η ∂L/∂(W0 x_i)``, so

    F(x) = W0 x + ΔW x = W0 x + Σ_i e_i (x_i·x) = W0 x + LinearAttn(V = E, K = X, q = x).

Over K steps the keys are every step's training inputs and the values every step's error signals.

D2 (Dai et al. 2022, Eq. 9–12). Linear attention of a query ``q`` over the keys and values of the demonstration
tokens ``X_demo`` and the query-text tokens ``X_text`` is ``(W_zsl + ΔW_ICL) q`` with ``W_zsl = W_V X_textᵀ X_text
W_Kᵀ`` and ``ΔW_ICL = W_V X_demoᵀ X_demo W_Kᵀ`` (rows as tokens): the demonstrations act as an update of the
zero-shot weights. For softmax attention this holds only after Dai's relaxation (dropping softmax and the scale),
whose cost :func:`relaxation_sweep` measures on toy numbers.

References
----------
Dai et al. (2022), §3 (Eqs. 7–12); Irie, Csordás & Schmidhuber (2022), "The dual form of neural networks
revisited"; Aizerman, Braverman & Rozonoer (1964). Part II, chapter "The dual form: attention as a gradient-descent
update" (``book/part2_dual_form.ipynb``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .. import _checks, attention, metrics, runtime
from ._dai_metrics import softmax_vs_linear

__all__ = ["gd_step_linear_layer", "GDStep", "dual_form_output", "gd_dual_form", "DualForm", "icl_weight_update",
           "icl_weight_update_from_kv", "expand_kv_groups", "DualFormSettings", "DUAL_FORM", "DualFormCheck",
           "dual_form_check", "IclUpdateCheck", "icl_update_check", "RelaxationSweep", "relaxation_sweep",
           "dual_form_explorer"]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _layer_args(W0: torch.Tensor, X: torch.Tensor, Y: torch.Tensor | None) -> None:
    for name, t in (("W0", W0), ("X", X)) + ((("Y", Y),) if Y is not None else ()):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(t).__name__}")
        if t.ndim < 2:
            raise ValueError(f"{name} must have at least 2 dims, got shape {tuple(t.shape)}")
    if X.shape[:-2] != W0.shape[:-2] or X.shape[-1] != W0.shape[-1]:
        raise ValueError(f"X (..., N, d_in) {tuple(X.shape)} must match W0 (..., d_out, d_in) {tuple(W0.shape)} in "
                         "its leading dims and d_in")
    if Y is not None and (Y.shape[:-1] != X.shape[:-1] or Y.shape[-1] != W0.shape[-2]):
        raise ValueError(f"Y must have shape (..., N, d_out) = {(*X.shape[:-1], W0.shape[-2])}, got "
                         f"{tuple(Y.shape)}")


# ------------------------------------------------------------------------------------------------ D1
class GDStep(NamedTuple):
    """One GD step of a linear layer: the updated weights ``W (..., d_out, d_in)`` and the error signals
    ``errors (..., N, d_out)``, ``e_i = −η ∂L/∂(W0 x_i)``, so that ``W = W0 + Σ_i e_i x_iᵀ``."""

    W: torch.Tensor
    errors: torch.Tensor


def gd_step_linear_layer(W0: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, lr: float, *,
                         loss: Loss | None = None) -> GDStep:
    """One GD step of step size ``lr`` on a linear layer ``F(x) = W0 x``, returning the weights and error signals.

    Shapes (rows are training examples, leading batch dims allowed): ``W0 (..., d_out, d_in)``, ``X (..., N, d_in)``,
    ``Y (..., N, d_out)``. Default loss: ``L(W) = 1/(2N) Σ_i ||W x_i − y_i||²`` (``solvers.gd``'s), whose error
    signals are ``e_i = −(η/N)(W0 x_i − y_i)``. Any other loss of the outputs: ``loss(pred, Y) -> scalar`` with
    ``pred = X W0ᵀ (..., N, d_out)`` — summed (not averaged) over leading batch dims, so tasks stay independent —
    and the error signals come from autograd, ``e_i = −η ∂L/∂(W0 x_i)``. Either way ``ΔW = Σ_i e_i x_iᵀ``
    (the chain rule through ``y_i = W0 x_i``). Dtype and device follow ``W0``.

    Worked number: ``W0 = 0``, one example ``x = 2``, ``y = 3``, ``η = 0.5`` → ``e = 0.5·3 = 1.5``, ``W = 3``.

    References
    ----------
    Irie et al. (2022), §2; Dai et al. (2022), Eq. 7. Part II, "The dual form".
    """
    _layer_args(W0, X, Y)
    lr = _checks.positive_float("lr", lr)
    if loss is None:
        errors = -(lr / X.shape[-2]) * (X @ W0.mT - Y)  # (..., N, d_out)
    else:
        with torch.enable_grad():
            pred = (X.detach() @ W0.detach().mT).requires_grad_(True)  # (..., N, d_out)
            value = loss(pred, Y.detach())
            if not isinstance(value, torch.Tensor) or value.ndim != 0:
                raise ValueError("loss(pred, Y) must return a scalar tensor")
            errors = -lr * torch.autograd.grad(value, pred)[0]
    return GDStep(W0 + errors.mT @ X, errors)  # ΔW = Σ_i e_i x_iᵀ = Eᵀ X


def dual_form_output(W0: torch.Tensor, X: torch.Tensor, errors: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The dual form ``F(x) = W0 x + Σ_i e_i (x_i·x)`` for query rows ``x (..., Tq, d_in)`` → ``(..., Tq, d_out)``.

    ``X (..., N, d_in)`` are the keys (training inputs), ``errors (..., N, d_out)`` the values (error signals):
    ``W0 x`` plus :func:`icl_course.attention.linear_attention` ``(q = x, k = X, v = E)``. Equals ``x Wᵀ`` for the
    updated ``W`` of :func:`gd_step_linear_layer` (claim D1) — without ever forming ``W``.
    """
    _layer_args(W0, X, errors)
    _checks.tensor("x", x, X.ndim, "(..., Tq, d_in)")
    if x.shape[:-2] != X.shape[:-2] or x.shape[-1] != X.shape[-1]:
        raise ValueError(f"x (..., Tq, d_in) {tuple(x.shape)} must match X {tuple(X.shape)} in leading dims and d_in")
    return x @ W0.mT + attention.linear_attention(x, X, errors)  # (..., Tq, d_out)


class DualForm(NamedTuple):
    """K GD steps of a linear layer and their dual form: the final weights ``W (..., d_out, d_in)``, the keys
    ``(..., K·N, d_in)`` (the training inputs of every step, step by step) and the values ``(..., K·N, d_out)`` (each
    step's error signals, computed at that step's weights)."""

    W: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor


def gd_dual_form(W0: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, lr: float, steps: int = 1, *,
                 loss: Loss | None = None) -> DualForm:
    """Run ``steps`` full-batch GD steps with :func:`gd_step_linear_layer` and collect the dual form's memory.

    ``W_K = W0 + Σ_{t<K} Σ_i e_i^{(t)} x_iᵀ``, so ``W_K x = W0 x + LinearAttn(q = x, k = keys, v = values)``: the
    dual form never forgets a step — the same input appears once per step as a key, with a new error signal as its
    value (claim D7). With the default loss, ``W`` equals ``solvers.gd(X, Y, lr, steps, w0=W0)``.
    """
    steps = _checks.positive_int("steps", steps)
    W, errors = W0, []
    for _ in range(steps):
        W, e = gd_step_linear_layer(W, X, Y, lr, loss=loss)
        errors.append(e)
    return DualForm(W, torch.cat([X] * steps, dim=-2), torch.cat(errors, dim=-2))


# ------------------------------------------------------------------------------------------------ D2
def icl_weight_update(W_K: torch.Tensor, W_V: torch.Tensor, X_demo: torch.Tensor,
                      X_text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dai et al.'s Eq. 12 with rows as tokens: ``(W_zsl, ΔW_ICL)``, each ``(..., d_v, d_k)``.

    ``W_K (d_k, d)`` and ``W_V (d_v, d)`` in ``nn.Linear`` layout; ``X_demo (..., T_demo, d)``, ``X_text (..., T_text,
    d)`` (the query-text tokens, the query's own included). ``W_zsl = W_V X_textᵀ X_text W_Kᵀ`` and ``ΔW_ICL = W_V
    X_demoᵀ X_demo W_Kᵀ``, so linear attention of ``q`` over the keys ``X W_Kᵀ`` and values ``X W_Vᵀ`` of ``[X_demo;
    X_text]`` is exactly ``(W_zsl + ΔW_ICL) q`` (claim D2). Dtype and device follow the inputs.
    """
    _checks.tensor("W_K", W_K, 2, "(d_k, d)")
    _checks.tensor("W_V", W_V, 2, "(d_v, d)")
    _checks.same("W_K", W_K.shape[1], "W_V", W_V.shape[1], "the input width d")
    for name, X in (("X_demo", X_demo), ("X_text", X_text)):
        _checks.tensor(name, X, X_demo.ndim if isinstance(X_demo, torch.Tensor) else 2, "(..., T, d)")
        if X.ndim < 2 or X.shape[-1] != W_K.shape[1]:
            raise ValueError(f"{name} must have shape (..., T, d) with d = {W_K.shape[1]}, got {tuple(X.shape)}")
    if X_demo.shape[:-2] != X_text.shape[:-2]:
        raise ValueError(f"X_demo {tuple(X_demo.shape)} and X_text {tuple(X_text.shape)} need the same leading dims")
    return (icl_weight_update_from_kv(X_demo @ W_K.T, X_demo @ W_V.T, X_text @ W_K.T, X_text @ W_V.T))


def icl_weight_update_from_kv(k_demo: torch.Tensor, v_demo: torch.Tensor, k_text: torch.Tensor,
                              v_text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W_zsl, ΔW_ICL)`` from recorded keys ``(..., T, d_k)`` and values ``(..., T, d_v)`` → each ``(..., d_v, d_k)``.

    ``W_zsl = Σ_text v kᵀ = V_textᵀ K_text`` and ``ΔW_ICL = V_demoᵀ K_demo``. Use it for real LMs, whose keys are not
    ``W_K x``: RoPE rotates each key by its position (record the keys after RoPE), and grouped-query attention
    shares one key/value head among several query heads (SmolLM2-135M: 3 KV heads serve 9 query heads), so a query
    head's ``ΔW_ICL`` is that of its KV group — compute it per KV head and :func:`expand_kv_groups` it, or expand the
    keys and values first. Leading dims (batch, heads) must agree.
    """
    doc = "(..., T, d)"
    kd = _checks.tensor("k_demo", k_demo, k_demo.ndim if isinstance(k_demo, torch.Tensor) else 2, doc)
    names = ("v_demo", "k_text", "v_text")
    vd, kt, vt = (_checks.tensor(n, t, kd.ndim, doc) for n, t in zip(names, (v_demo, k_text, v_text)))
    if kd.ndim < 2 or any(t.shape[:-2] != kd.shape[:-2] for t in (vd, kt, vt)):
        raise ValueError(f"k_demo, v_demo, k_text, v_text need the same leading dims, got {tuple(kd.shape)}, "
                         f"{tuple(vd.shape)}, {tuple(kt.shape)}, {tuple(vt.shape)}")
    _checks.same("k_demo", kd.shape[-2], "v_demo", vd.shape[-2], "the token count T")
    _checks.same("k_text", kt.shape[-2], "v_text", vt.shape[-2], "the token count T")
    _checks.same("k_demo", kd.shape[-1], "k_text", kt.shape[-1], "the key width d_k")
    _checks.same("v_demo", vd.shape[-1], "v_text", vt.shape[-1], "the value width d_v")
    return vt.mT @ kt, vd.mT @ kd  # (..., d_v, d_k) each


def expand_kv_groups(x: torch.Tensor, n_query_heads: int) -> torch.Tensor:
    """Repeat key/value heads for grouped-query attention: ``x (..., H_kv, T, d)`` → ``(..., n_query_heads, T, d)``.

    Query head ``h`` uses KV head ``h // (n_query_heads / H_kv)`` (consecutive query heads share a group, as in
    Hugging Face's ``repeat_kv``); works for ``(..., H_kv, d_v, d_k)`` update matrices too.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 3:
        raise ValueError(f"x must be a tensor of shape (..., H_kv, T, d), got {getattr(x, 'shape', type(x))}")
    n_query_heads = _checks.positive_int("n_query_heads", n_query_heads)
    if n_query_heads % x.shape[-3]:
        raise ValueError(f"n_query_heads ({n_query_heads}) must be a multiple of the KV heads H_kv ({x.shape[-3]})")
    return x.repeat_interleave(n_query_heads // x.shape[-3], dim=-3)


# ------------------------------------------------------------------------------------------------ experiments
@dataclass(frozen=True)
class DualFormSettings:
    """Sizes of the chapter's exactness checks (float64, random data): a linear layer ``d_in → d_out`` trained on
    ``n_train`` examples for ``steps`` steps of ``lr``, queried at ``n_queries`` inputs (D1, D7); one attention layer
    of width ``d_model`` with ``n_heads`` query heads sharing ``n_kv_heads`` key/value heads, ``n_demo``
    demonstration and ``n_text`` query-text tokens, over ``n_prompts`` prompts (D2 and the relaxation sweep)."""

    d_in: int = 6
    d_out: int = 3
    n_train: int = 8
    steps: int = 5
    lr: float = 0.3
    n_queries: int = 5
    d_model: int = 16
    d_head: int = 8
    n_heads: int = 9
    n_kv_heads: int = 3
    n_demo: int = 24
    n_text: int = 6
    n_prompts: int = 64


DUAL_FORM = runtime.Scales(cpu=DualFormSettings(), paper=DualFormSettings(d_model=576, d_head=64, n_demo=256,
                                                                          n_text=32, n_prompts=256))
"""Identities need no paper scale; ``paper`` uses SmolLM2-135M's widths (576, heads of 64, 9 query / 3 KV heads)."""


class DualFormCheck(NamedTuple):
    """Relative errors ``‖GD-updated output − dual-form output‖ / ‖GD-updated output‖`` (float64): one step with
    the squared loss, one step with a cross-entropy loss (error signals by autograd), and ``steps`` steps (D7)."""

    one_step: float
    any_loss: float
    multi_step: float


def _cross_entropy(pred: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy of logits ``pred (..., N, C)`` against soft targets ``Y``, summed over tasks."""
    return -(Y.softmax(-1) * pred.log_softmax(-1)).sum(-1).mean(-1).sum()


def dual_form_check(seed: int = 0, settings: DualFormSettings = DUAL_FORM.cpu) -> DualFormCheck:
    """Measure :class:`DualFormCheck` on random float64 data (4 tasks) — the value of claims D1 and D7."""
    s, g, f64 = settings, runtime.generator(seed), torch.float64
    W0 = torch.randn(4, s.d_out, s.d_in, generator=g, dtype=f64) / math.sqrt(s.d_in)
    X, x = (torch.randn(4, n, s.d_in, generator=g, dtype=f64) for n in (s.n_train, s.n_queries))
    Y = torch.randn(4, s.n_train, s.d_out, generator=g, dtype=f64)
    errs = []
    for loss in (None, _cross_entropy):
        W, e = gd_step_linear_layer(W0, X, Y, s.lr, loss=loss)
        errs.append(metrics.relative_error(dual_form_output(W0, X, e, x), x @ W.mT))
    multi = gd_dual_form(W0, X, Y, s.lr / 2, s.steps)
    errs.append(metrics.relative_error(dual_form_output(W0, multi.keys, multi.values, x), x @ multi.W.mT))
    return DualFormCheck(*errs)


class IclUpdateCheck(NamedTuple):
    """D2 in float64: relative error of ``(W_zsl + ΔW_ICL) q`` against linear attention over ``[demo; text]``, from
    the weights (:func:`icl_weight_update`) and from RoPE'd keys shared by KV groups
    (:func:`icl_weight_update_from_kv`), both on 4 random prompts; and, with softmax and the ``1/√d_head`` scale
    restored, on the ``n_prompts`` prompts of :func:`relaxation_sweep` (all query heads), the mean cosine of the
    attention output with ``(W_zsl + ΔW_ICL) q`` and of its ICL-induced change with ``ΔW_ICL q``, with their standard
    deviations over prompts and heads."""

    from_weights: float
    from_kv: float
    softmax_output_cos: float
    softmax_update_cos: float
    softmax_output_std: float
    softmax_update_std: float
    n_prompts: int


def _prompt(s: DualFormSettings, g: torch.Generator, n_prompts: int) -> tuple[torch.Tensor, ...]:
    """Random tokens and projections: ``X_demo, X_text (P, T, d)``, ``W_Q (H·dh, d)``, ``W_K, W_V (H_kv·dh, d)``."""
    f64 = torch.float64
    X_demo, X_text = (torch.randn(n_prompts, n, s.d_model, generator=g, dtype=f64) for n in (s.n_demo, s.n_text))
    W_Q, W_K, W_V = (torch.randn(h * s.d_head, s.d_model, generator=g, dtype=f64) / math.sqrt(s.d_model)
                     for h in (s.n_heads, s.n_kv_heads, s.n_kv_heads))
    return X_demo, X_text, W_Q, W_K, W_V


_ROPE_BASE = 100_000.0  # SmolLM2-135M's rope_theta


def _rotate(k: torch.Tensor, offset: int) -> torch.Tensor:
    """RoPE on keys or queries ``(..., T, dh)`` at positions ``offset + t``, in the ``rotate_half`` convention of
    Hugging Face's Llama (SmolLM2's): channel ``i < dh/2`` and channel ``i + dh/2`` form a pair, rotated by the angle
    ``pos·θ_i`` with ``θ_i = base^(−2i/dh)``. (GPT-J pairs neighbouring channels ``2i, 2i + 1`` instead; claim D2
    holds in either convention, since it uses the recorded, rotated keys.)"""
    T, dh = k.shape[-2:]
    pos = torch.arange(offset, offset + T, dtype=k.dtype, device=k.device)[:, None]  # (T, 1)
    ang = pos * _ROPE_BASE ** (-torch.arange(0, dh, 2, dtype=k.dtype, device=k.device) / dh)  # (T, dh/2)
    cos, sin = ang.cos().repeat(1, 2), ang.sin().repeat(1, 2)  # (T, dh): the angle of channel i is that of i mod dh/2
    a, b = k[..., : dh // 2], k[..., dh // 2:]
    return k * cos + torch.cat([-b, a], -1) * sin  # Llama's x·cos + rotate_half(x)·sin


def _heads(X: torch.Tensor, W: torch.Tensor, d_head: int) -> torch.Tensor:
    return (X @ W.T).unflatten(-1, (-1, d_head)).transpose(-3, -2)  # (P, T, H·dh) -> (P, H, T, dh)


def icl_update_check(seed: int = 0, settings: DualFormSettings = DUAL_FORM.cpu) -> IclUpdateCheck:
    """Measure :class:`IclUpdateCheck` on random float64 prompts — the value of claim D2."""
    s, g = settings, runtime.generator(seed)
    X_demo, X_text, W_Q, W_K, W_V = _prompt(s, g, 4)
    q = X_text[:, -1] @ W_Q[: s.d_head].T  # head 0's query at the last token, (P, dh)
    W_zsl, dW = icl_weight_update(W_K[: s.d_head], W_V[: s.d_head], X_demo, X_text)  # (P, dh, dh)
    X = torch.cat([X_demo, X_text], 1)
    lin = attention.linear_attention(q[:, None], X @ W_K[: s.d_head].T, X @ W_V[: s.d_head].T)[:, 0]
    from_w = metrics.relative_error(((W_zsl + dW) @ q[..., None])[..., 0], lin)
    # a real LM's layout: RoPE'd keys, 9 query heads sharing 3 KV heads
    kd, kt = _rotate(_heads(X_demo, W_K, s.d_head), 0), _rotate(_heads(X_text, W_K, s.d_head), s.n_demo)
    vd, vt = _heads(X_demo, W_V, s.d_head), _heads(X_text, W_V, s.d_head)  # (P, H_kv, T, dh)
    Q = _rotate(_heads(X_text[:, -1:], W_Q, s.d_head), s.n_demo + s.n_text - 1)  # (P, H, 1, dh)
    W_zsl, dW = (expand_kv_groups(w, s.n_heads) for w in icl_weight_update_from_kv(kd, vd, kt, vt))  # (P, H, dh, dh)
    k_all, v_all = (expand_kv_groups(torch.cat(p, -2), s.n_heads) for p in ((kd, kt), (vd, vt)))
    from_kv = metrics.relative_error(Q @ (W_zsl + dW).mT, attention.linear_attention(Q, k_all, v_all))
    sweep = relaxation_sweep([1 / math.sqrt(s.d_head)], seed=seed, settings=s)
    return IclUpdateCheck(from_w, from_kv, float(sweep.output_cos[0]), float(sweep.update_cos[0]),
                          float(sweep.output_std[0]), float(sweep.update_std[0]), s.n_prompts)


class RelaxationSweep(NamedTuple):
    """:func:`softmax_vs_linear` over random prompts at each logit scale: the scales ``(S,)`` and the mean over
    prompts and heads of ``output_cos`` and ``update_cos`` ``(S,)``, with their spread (standard deviation)."""

    scales: torch.Tensor
    output_cos: torch.Tensor
    update_cos: torch.Tensor
    output_std: torch.Tensor
    update_std: torch.Tensor


def relaxation_sweep(scales: Sequence[float], seed: int = 0, settings: DualFormSettings = DUAL_FORM.cpu, *,
                     centre_values: bool = False) -> RelaxationSweep:
    """How far softmax attention is from Dai's linear relaxation as the logits grow, on random toy prompts (keys and
    queries RoPE'd as in SmolLM2, shared KV heads): :func:`softmax_vs_linear` at the last query-text token for each
    scale (the logits are ``scale · k·q``; ``1/√d_head`` is a standard transformer's). With ``centre_values`` the
    values of each set (demonstrations, query text) are centred, the case whose small-scale limit
    :func:`softmax_vs_linear` derives."""
    s, g = settings, runtime.generator(seed + 1)
    X_demo, X_text, W_Q, W_K, W_V = _prompt(s, g, s.n_prompts)
    kd, kt = _rotate(_heads(X_demo, W_K, s.d_head), 0), _rotate(_heads(X_text, W_K, s.d_head), s.n_demo)
    vd, vt = _heads(X_demo, W_V, s.d_head), _heads(X_text, W_V, s.d_head)
    if centre_values:
        vd, vt = vd - vd.mean(-2, keepdim=True), vt - vt.mean(-2, keepdim=True)
    Q = _rotate(_heads(X_text[:, -1:], W_Q, s.d_head), s.n_demo + s.n_text - 1)[..., 0, :]  # (P, H, dh)
    kd, vd, kt, vt = (expand_kv_groups(t, s.n_heads) for t in (kd, vd, kt, vt))
    rows = [softmax_vs_linear(Q, kd, vd, kt, vt, scale=float(c)) for c in scales]
    out, upd = (torch.stack([getattr(r, f).flatten() for r in rows]) for f in ("output_cos", "update_cos"))
    return RelaxationSweep(torch.tensor([float(c) for c in scales], dtype=torch.float64), out.mean(1), upd.mean(1),
                           out.std(1), upd.std(1))


# ------------------------------------------------------------------------------------------------ widget
def dual_form_explorer(seed: int = 0, d_in: int = 4, max_train: int = 16, colors: dict | None = None):
    """An ipywidgets explorer (live in Jupyter and Colab): sliders for the step size η and the number of training
    points N; shows the GD-updated layer's output ``W x`` beside the dual form's ``W0 x + Σ_i e_i (x_i·x)`` (the two
    coincide) and the attention weights ``x_i·x`` of the query on the training inputs. ``colors`` maps ``"gd"``,
    ``"dual"`` and ``"attn"`` to colours (the notebook passes the course palette)."""
    import io

    import ipywidgets as W
    import matplotlib.pyplot as plt
    import numpy as np

    g, f64 = runtime.generator(seed), torch.float64
    colors = {"gd": "#D55E00", "dual": "#0072B2", "attn": "#009E73", **(colors or {})}
    X_all = torch.randn(1, max_train, d_in, generator=g, dtype=f64)
    Y_all = X_all @ torch.randn(1, d_in, 1, generator=g, dtype=f64)  # (1, N, 1) a linear teacher
    W0 = torch.zeros(1, 1, d_in, dtype=f64)
    x = torch.randn(1, 6, d_in, generator=g, dtype=f64)  # six query inputs
    lr_s = W.FloatSlider(value=0.5, min=0.05, max=1.5, step=0.05, description="η", continuous_update=False)
    n_s = W.IntSlider(value=8, min=1, max=max_train, description="N", continuous_update=False)
    image = W.Image(format="png")

    def draw(_=None) -> None:
        X, Y = X_all[:, : n_s.value], Y_all[:, : n_s.value]
        Wn, e = gd_step_linear_layer(W0, X, Y, lr_s.value)
        primal, dual = (x @ Wn.mT)[0, :, 0].numpy(), dual_form_output(W0, X, e, x)[0, :, 0].numpy()
        fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.0))
        idx = np.arange(6)
        a.bar(idx - 0.2, primal, 0.4, color=colors["gd"], label="GD-updated W x")
        a.bar(idx + 0.2, dual, 0.4, color=colors["dual"], label="dual form")
        a.set(xlabel="query", ylabel="output", title=f"max |difference| = {float(abs(primal - dual).max()):.0e}")
        a.legend()
        b.bar(np.arange(n_s.value), (X @ x[:, :1].mT)[0, :, 0].numpy(), color=colors["attn"])
        b.set(xlabel="training point i", ylabel="x_i · x (query 0)", title=f"attention scores, η = {lr_s.value:.2f}")
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        image.value = buf.getvalue()

    lr_s.observe(draw, names="value")
    n_s.observe(draw, names="value")
    draw()
    return W.VBox([W.HBox([lr_s, n_s]), image])
