"""Dai et al. (2022)'s metrics for "ICL behaves like fine-tuning", their random baselines, and the relaxation's cost.

Pinned to the official code (microsoft/LMOps, ``understand_icl/icl_ft/compute_sim.py``):

- **Rec2FTP** = 100 · #(ZSL wrong ∧ FT right ∧ ICL right) / #(ZSL wrong ∧ FT right) (``count_f2t``).
- **SimAOU**: each self-attention output at the last query token is L2-normalised, then the cosine of
  ``h_ICL − h_ZSL`` and ``h_FT − h_ZSL`` is averaged over examples (per layer), then over layers (``analyze_sim``).
  Its "random" baseline replaces the FT update itself by a vector of ``U(0, 1)`` entries — not zero-mean.
- **SimAM**: cosine per head of the last token's *pre-softmax* attention logits over the query-text tokens, ICL
  against FT (and ICL against ZSL as the baseline); mean over heads, examples, then layers (``analyze_attn_map``).

Every cosine divides by ``‖a‖·‖b‖ + 1e-20`` as the official ``cal_cos_sim`` does, so a zero vector scores 0.

References
----------
Dai et al. (2022), "Why Can GPT Learn In-Context?", §3 (Eqs. 9–12) and §4.2–4.3. Part II, chapters "The dual form"
(``book/part2_dual_form.ipynb``), "ICL vs fine-tuning on a toy model", "A real LM" and "Critiques".
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["rec2ftp", "simaou", "simam", "uniform_update", "zero_mean_update", "kendall_tau", "PairedDifference",
           "paired_difference", "SoftmaxVsLinear", "softmax_vs_linear"]

_EPS = 1e-20  # the official cal_cos_sim's guard


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine along the last axis, ``num / (‖a‖‖b‖ + 1e-20)`` as in the official ``cal_cos_sim``."""
    num = (a * b).sum(-1)
    return num / (torch.linalg.vector_norm(a, dim=-1) * torch.linalg.vector_norm(b, dim=-1) + _EPS)


def _float_tensor(name: str, value: object, ndims: tuple[int, ...], shape_doc: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape_doc}, got {type(value).__name__}")
    if value.ndim not in ndims:
        raise ValueError(f"{name} must have shape {shape_doc}, got shape {tuple(value.shape)}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    return value


def _same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)} must have the same shape")


# ------------------------------------------------------------------------------------------------ Rec2FTP
def rec2ftp(*, zsl: torch.Tensor, icl: torch.Tensor, ft: torch.Tensor) -> float:
    """Recall to fine-tuning predictions, in percent: of the examples fine-tuning fixed, how many ICL fixed too.

    ``zsl, icl, ft`` are boolean "prediction is correct" vectors ``(n_ex,)`` over the same examples (zero-shot,
    in-context, fine-tuned). Returns ``100 · #(¬zsl ∧ ft ∧ icl) / #(¬zsl ∧ ft)``.

    Raises ``ValueError`` when no example is ZSL-wrong and FT-right (the metric is undefined, the official code
    divides by zero), when a vector is not boolean or not 1-D, or when the shapes differ; ``TypeError`` for
    non-tensors. Worked number: ``zsl = [F, F, F, T]``, ``ft = [T, T, F, T]``, ``icl = [T, F, T, T]`` → the first two
    examples count, one of them ICL-right → 50.0.

    References
    ----------
    Dai et al. (2022), §4.2 "Rec2FTP"; official ``compute_sim.py``, ``count_f2t``.
    """
    vecs = {"zsl": zsl, "icl": icl, "ft": ft}
    for name, v in vecs.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{name} must be a boolean torch.Tensor of shape (n_ex,), got {type(v).__name__}")
        if v.dtype != torch.bool:
            raise ValueError(f"{name} must be boolean (correct / wrong per example), got dtype {v.dtype}")
        if v.ndim != 1:
            raise ValueError(f"{name} must have shape (n_ex,), got shape {tuple(v.shape)}")
    _same_shape("zsl", zsl, "icl", icl)
    _same_shape("zsl", zsl, "ft", ft)
    fixed_by_ft = ~zsl & ft
    n = int(fixed_by_ft.sum())
    if n == 0:
        raise ValueError("Rec2FTP is undefined: no example is ZSL-wrong and FT-right (the denominator is 0)")
    return 100.0 * int((fixed_by_ft & icl).sum()) / n


# ------------------------------------------------------------------------------------------------ SimAOU
def simaou(*, zsl: torch.Tensor, icl: torch.Tensor, ft: torch.Tensor | None = None,
           ft_update: torch.Tensor | None = None, per_example: bool = False) -> torch.Tensor:
    """Similarity of attention output updates: cosine of ``ĥ_ICL − ĥ_ZSL`` and ``ĥ_FT − ĥ_ZSL``.

    ``zsl, icl, ft`` are the self-attention outputs at the last query token, ``(n_ex, d)`` or
    ``(n_ex, n_layers, d)``; ``ĥ = h / ‖h‖`` row by row *before* the differences. Give exactly one of ``ft`` and
    ``ft_update``: Dai's random baselines replace the FT update ``ĥ_FT − ĥ_ZSL`` itself, so ``ft_update=U`` (same
    shape, e.g. :func:`uniform_update` or :func:`zero_mean_update`) is used in its place, unnormalised.

    Returns the mean over examples, a tensor of shape ``()`` or ``(n_layers,)``; with ``per_example=True`` the
    cosines themselves, ``(n_ex,)`` or ``(n_ex, n_layers)``, for paired statistics (:func:`paired_difference`).
    Dtype and device follow the inputs. Worked number: ``zsl = [1, 0]``, ``icl = [0, 1]``, ``ft = [1, 1]`` →
    updates ``[−1, 1]`` and ``[1/√2 − 1, 1/√2]``, cosine ≈ 0.924.

    References
    ----------
    Dai et al. (2022), §4.3 "SimAOU"; official ``compute_sim.py``, ``analyze_sim(normalize=True)``.
    """
    if (ft is None) == (ft_update is None):
        raise ValueError("give exactly one of ft (fine-tuned outputs) and ft_update (an update replacing ĥ_FT − ĥ_ZSL)")
    doc = "(n_ex, d) or (n_ex, n_layers, d)"
    zsl = _float_tensor("zsl", zsl, (2, 3), doc)
    icl = _float_tensor("icl", icl, (2, 3), doc)
    _same_shape("zsl", zsl, "icl", icl)
    z_hat = zsl / (torch.linalg.vector_norm(zsl, dim=-1, keepdim=True) + _EPS)
    icl_update = icl / (torch.linalg.vector_norm(icl, dim=-1, keepdim=True) + _EPS) - z_hat
    if ft is not None:
        ft = _float_tensor("ft", ft, (2, 3), doc)
        _same_shape("zsl", zsl, "ft", ft)
        update = ft / (torch.linalg.vector_norm(ft, dim=-1, keepdim=True) + _EPS) - z_hat
    else:
        update = _float_tensor("ft_update", ft_update, (2, 3), doc)
        _same_shape("zsl", zsl, "ft_update", update)
    cos = _cos(icl_update, update)  # (n_ex,) or (n_ex, n_layers)
    return cos if per_example else cos.mean(0)


def uniform_update(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Dai's random SimAOU baseline: an update with i.i.d. ``U(0, 1)`` entries, ``like``'s shape, dtype and device.

    Not zero-mean: every entry is positive, so its cosine with any update whose entries lean positive is far from 0
    (a weak baseline). Official ``compute_sim.py``: ``np.random.random(ftzs_updates.shape)``.
    """
    _float_tensor("like", like, tuple(range(1, 9)), "(n_ex, …)")
    return torch.rand(like.shape, generator=generator, dtype=like.dtype, device=like.device)


def zero_mean_update(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A zero-mean random update, i.i.d. ``N(0, 1)`` entries of ``like``'s shape, dtype and device.

    Its cosine with a fixed ``d``-dimensional vector has mean 0 and standard deviation ``1/√d`` — the baseline a
    SimAOU value has to beat by more than its spread (TARGETS D4).
    """
    _float_tensor("like", like, tuple(range(1, 9)), "(n_ex, …)")
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)


# ------------------------------------------------------------------------------------------------ SimAM
def simam(*, icl: torch.Tensor, other: torch.Tensor, per_example: bool = False) -> torch.Tensor:
    """Similarity of attention maps: cosine per head of the last token's pre-softmax attention logits.

    ``icl`` and ``other`` (the fine-tuned or zero-shot model's logits) cover the same query-text tokens, ICL positions
    aligned to the zero-shot ones: ``(n_ex, n_heads, T)`` or ``(n_ex, n_layers, n_heads, T)``. The cosine over ``T``
    is averaged over heads, then over examples: a tensor ``()`` or ``(n_layers,)``; with ``per_example=True`` the
    head-averaged cosines ``(n_ex,)`` or ``(n_ex, n_layers)``. Dtype and device follow the inputs.

    References
    ----------
    Dai et al. (2022), §4.3 "SimAM"; official ``compute_sim.py``, ``analyze_attn_map(softmax=False)``.
    """
    doc = "(n_ex, n_heads, T) or (n_ex, n_layers, n_heads, T)"
    icl = _float_tensor("icl", icl, (3, 4), doc)
    other = _float_tensor("other", other, (3, 4), doc)
    _same_shape("icl", icl, "other", other)
    cos = _cos(icl, other).mean(-1)  # per head (…, n_heads) -> mean over heads
    return cos if per_example else cos.mean(0)


# ------------------------------------------------------------------------------------------------ statistics
def kendall_tau(a: torch.Tensor, b: torch.Tensor) -> float:
    """Kendall's τ-b rank correlation of two 1-D score vectors of the same length ``n ≥ 2``.

    ``τ_b = (C − D) / √((n₀ − n_a)(n₀ − n_b))`` over all ``n₀ = n(n−1)/2`` pairs, with ``C``/``D`` the concordant and
    discordant pairs and ``n_a``/``n_b`` the pairs tied in ``a``/``b``; without ties it equals τ-a = (C − D)/n₀ (and
    ``scipy.stats.kendalltau``'s default). Raises ``ValueError`` when either vector is constant (τ undefined).
    Dai et al. (2022) §4.3 report a Kendall coefficient of attention to training tokens; the course treats it as
    exploratory only (the official dual-form attention scores could not be verified).
    """
    a = _float_tensor("a", a, (1,), "(n,)")
    b = _float_tensor("b", b, (1,), "(n,)")
    _same_shape("a", a, "b", b)
    if a.shape[0] < 2:
        raise ValueError(f"a and b need at least 2 entries, got {a.shape[0]}")
    sa = torch.sign(a[:, None] - a[None, :]).double()  # (n, n)
    sb = torch.sign(b[:, None] - b[None, :]).double()
    upper = torch.ones_like(sa, dtype=torch.bool).triu(1)
    s = float((sa * sb)[upper].sum())  # C − D
    na, nb = float(sa[upper].abs().sum()), float(sb[upper].abs().sum())  # untied pairs
    if na == 0 or nb == 0:
        raise ValueError("Kendall's τ is undefined when a or b is constant")
    return s / math.sqrt(na * nb)


class PairedDifference(NamedTuple):
    """Per-example differences ``a − b``: their mean, standard deviation (n − 1), standard error of the mean, count
    and the fraction of examples with ``a > b``."""

    mean: float
    std: float
    sem: float
    n: int
    frac_positive: float


def paired_difference(a: torch.Tensor, b: torch.Tensor) -> PairedDifference:
    """Paired statistics of two per-example scores ``a, b (n_ex,)`` (e.g. ``simaou(..., per_example=True)``
    against a baseline on the same examples); ``n_ex ≥ 2``. Worked number: ``a = [1, 2, 3]``, ``b = [0, 0, 4]`` →
    differences ``[1, 2, −1]``: mean 2/3, std ≈ 1.528, sem ≈ 0.882, frac_positive 2/3."""
    a = _float_tensor("a", a, (1,), "(n_ex,)")
    b = _float_tensor("b", b, (1,), "(n_ex,)")
    _same_shape("a", a, "b", b)
    n = a.shape[0]
    if n < 2:
        raise ValueError(f"a and b need at least 2 examples for a spread, got {n}")
    d = (a - b).double()
    std = float(d.std(correction=1))
    return PairedDifference(float(d.mean()), std, std / math.sqrt(n), n, float((d > 0).double().mean()))


# ------------------------------------------------------------------------------------------------ relaxation
class SoftmaxVsLinear(NamedTuple):
    """How far softmax attention is from Dai's relaxed linear form, per head ``(..., H)``: ``output_cos`` — cosine
    of the softmax output over ``[demo; text]`` and ``(W_zsl + ΔW_ICL) q``; ``update_cos`` — cosine of the softmax
    output's ICL-induced change and ``ΔW_ICL q``."""

    output_cos: torch.Tensor
    update_cos: torch.Tensor


def softmax_vs_linear(q: torch.Tensor, k_demo: torch.Tensor, v_demo: torch.Tensor, k_text: torch.Tensor,
                      v_text: torch.Tensor, *, scale: float) -> SoftmaxVsLinear:
    """Compare one query's softmax attention with the linear form that Dai et al.'s Eq. 10–12 relax it to.

    Shapes: ``q (..., H, dk)``; ``k_demo (..., H, Td, dk)``, ``v_demo (..., H, Td, dv)`` (demonstration tokens);
    ``k_text (..., H, Tt, dk)``, ``v_text (..., H, Tt, dv)`` (query-text tokens, the query's own position included).
    Softmax attention uses the logits ``scale · k_j·q``. The linear form drops softmax *and* scaling: linear attention
    over both sets is exactly ``Σ_j v_j (k_j·q) = (W_zsl + ΔW_ICL) q`` with ``W_zsl = Σ_text v kᵀ`` and
    ``ΔW_ICL = Σ_demo v kᵀ`` (claim D2). Cosines are scale-free, so dropping the normalisation costs nothing here;
    what they measure is the direction.

    Returns :class:`SoftmaxVsLinear` of two ``(..., H)`` tensors:
    ``output_cos = cos(softmax_attn(q; [demo; text]), (W_zsl + ΔW_ICL) q)`` and
    ``update_cos = cos(softmax_attn(q; [demo; text]) − softmax_attn(q; text), ΔW_ICL q)``.

    Small-logit limit (``scale → 0``), with values centred within each set (``Σ_demo v = Σ_text v = 0``): softmax
    weights are ``(1 + s_j − s̄)/n + O(s²)``, so the softmax output tends to ``(scale/N)(W_zsl + ΔW_ICL) q`` (``N =
    Td + Tt``: ``output_cos → 1``) and its ICL change to ``(scale/N)(ΔW_ICL q − (Td/Tt) W_zsl q)``: the
    renormalisation shrinks the zero-shot part, which the linear form keeps, so ``update_cos`` tends to
    ``cos(ΔW_ICL q − (Td/Tt) W_zsl q, ΔW_ICL q)``, not 1.

    References
    ----------
    Dai et al. (2022), §3.2, Eqs. 9–12 (the relaxation). Part II, "The dual form" (toy numbers) and "Critiques"
    (a real LM's layers).
    """
    q = _float_tensor("q", q, tuple(range(2, 9)), "(..., H, dk)")
    names = ("k_demo", "v_demo", "k_text", "v_text")
    kd, vd, kt, vt = (_float_tensor(n, t, (q.ndim + 1,), "(..., H, T, d)") for n, t in zip(names, (k_demo, v_demo,
                                                                                                     k_text, v_text)))
    for name, t in zip(names, (kd, vd, kt, vt)):
        if t.shape[:-2] != q.shape[:-1]:
            raise ValueError(f"{name} must have leading dims {tuple(q.shape[:-1])} (those of q (..., H, dk)), got "
                             f"shape {tuple(t.shape)}")
    for name, t in (("k_demo", kd), ("k_text", kt)):
        if t.shape[-1] != q.shape[-1]:
            raise ValueError(f"{name} must have dk = {q.shape[-1]} (q's last dim), got {t.shape[-1]}")
    if kd.shape[-2] != vd.shape[-2] or kt.shape[-2] != vt.shape[-2] or vd.shape[-1] != vt.shape[-1]:
        raise ValueError(f"values must match their keys' T and share dv: k_demo {tuple(kd.shape)}, v_demo "
                         f"{tuple(vd.shape)}, k_text {tuple(kt.shape)}, v_text {tuple(vt.shape)}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0 or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    qc = q.unsqueeze(-1)  # (..., H, dk, 1)
    s_demo, s_text = (kd @ qc).squeeze(-1), (kt @ qc).squeeze(-1)  # (..., H, Td), (..., H, Tt)
    v_all = torch.cat([vd, vt], -2)  # (..., H, Td+Tt, dv)
    s_all = torch.cat([s_demo, s_text], -1)  # (..., H, Td+Tt)
    soft_all = (torch.softmax(scale * s_all, -1).unsqueeze(-2) @ v_all).squeeze(-2)  # (..., H, dv)
    soft_text = (torch.softmax(scale * s_text, -1).unsqueeze(-2) @ vt).squeeze(-2)
    dw_q = (s_demo.unsqueeze(-2) @ vd).squeeze(-2)  # ΔW_ICL q = Σ_demo v_j (k_j·q), (..., H, dv)
    lin_all = (s_all.unsqueeze(-2) @ v_all).squeeze(-2)  # (W_zsl + ΔW_ICL) q
    return SoftmaxVsLinear(_cos(soft_all, lin_all), _cos(soft_all - soft_text, dw_q))
