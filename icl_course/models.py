"""Attention modules: linear self-attention layers and their stacks (shared or per-layer weights).

Weights are stored in ``nn.Linear(bias=False).weight`` layout ``(out, in)``, so the products ``W_Kᵀ W_Q`` and
``P W_V`` are the papers' (the official Haiku code stores the transposes). Inputs are batched token matrices
``E (B, T, D)`` with rows as tokens; the last token is the query.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import _checks
from .attention import linear_attention, softmax_attention
from .tasks import standard_tokens

__all__ = ["LinearSelfAttention", "LSAStack", "OFFICIAL_INIT_SCALE", "FeatureMap", "FeatureLSA", "StandardTokenLSA"]

OFFICIAL_INIT_SCALE = 0.002
"""Haiku ``VarianceScaling(0.002)`` of the official code: std ``√(0.002 / fan_in)`` after truncation."""

_ATTENTION = {"linear": linear_attention, "softmax": lambda q, k, v: softmax_attention(q, k, v, scale=1.0)}


def _truncated_normal_(weight: torch.Tensor, std: float, generator: torch.Generator | None) -> None:
    """Normal truncated at ±2 σ, rescaled so the *truncated* distribution has std ``std`` (Haiku's rule)."""
    sigma = std / 0.87962566103423978  # std of a unit normal truncated to [-2, 2]
    with torch.no_grad():
        if sigma == 0:
            weight.zero_()
            return
        weight.copy_(torch.nn.init.trunc_normal_(
            torch.empty_like(weight), 0.0, sigma, -2 * sigma, 2 * sigma, generator=generator))


class LinearSelfAttention(nn.Module):
    """One self-attention layer with a residual: ``e_j ← e_j + P W_V E_cᵀ ((W_K E_cᵀ)ᵀ W_Q e_j)``.

    With rows as tokens, ``E_out = E + ((E W_Qᵀ)(E_c W_Kᵀ)ᵀ)(E_c W_Vᵀ) Pᵀ`` where ``E_c`` are the context
    tokens (all tokens but the last), plus the query token when ``include_query``. One head; no softmax,
    scaling, bias, LayerNorm or MLP unless ``attention="softmax"`` (the ablation: softmax over keys, no scaling).

    Parameters
    ----------
    dim : int
        Token width D (``dx + dy``).
    include_query : bool
        Whether the query token is among the keys and values (the official code and Proposition 1: no).
    attention : {"linear", "softmax"}
    init_scale : float
        Weights start truncated-normal with std ``√(init_scale / dim)`` (official: 0.002).
    generator : torch.Generator, optional
        Seeds the initialisation.
    dtype, device
        Of the weights.

    References
    ----------
    von Oswald et al. (2022), Eq. 3 and Proposition 1; Part III, "One layer, one step".
    """

    def __init__(
        self,
        dim: int,
        *,
        include_query: bool = False,
        attention: str = "linear",
        init_scale: float = OFFICIAL_INIT_SCALE,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        self.dim = _checks.positive_int("dim", dim)
        if attention not in _ATTENTION:
            raise ValueError(f"attention must be one of {sorted(_ATTENTION)}, got {attention!r}")
        self.include_query = bool(include_query)
        self.attention = attention
        std = math.sqrt(_checks.positive_float("init_scale", init_scale, allow_zero=True) / dim)
        for name in ("W_Q", "W_K", "W_V", "P"):
            lin = nn.Linear(dim, dim, bias=False, dtype=dtype, device=device)
            _truncated_normal_(lin.weight, std, generator)
            setattr(self, name, lin)

    @classmethod
    def from_matrices(
        cls,
        W_Q: torch.Tensor,
        W_K: torch.Tensor,
        W_V: torch.Tensor,
        P: torch.Tensor,
        include_query: bool = False,
        attention: str = "linear",
    ) -> LinearSelfAttention:
        """A layer with exactly these ``(D, D)`` matrices in ``(out, in)`` layout; dtype and device follow them."""
        mats = {"W_Q": W_Q, "W_K": W_K, "W_V": W_V, "P": P}
        for name, m in mats.items():
            _checks.tensor(name, m, 2, "(D, D)")
        D = W_Q.shape[0]
        for name, m in mats.items():
            if tuple(m.shape) != (D, D):
                raise ValueError(f"{name} must have shape (D, D) = {(D, D)} like W_Q, got {tuple(m.shape)}")
            if m.dtype != W_Q.dtype or m.device != W_Q.device:
                raise TypeError(f"{name} must share W_Q's dtype and device ({W_Q.dtype}, {W_Q.device})")
        layer = cls(D, include_query=include_query, attention=attention, init_scale=0.0,
                    dtype=W_Q.dtype, device=W_Q.device)
        with torch.no_grad():
            for name, m in mats.items():
                getattr(layer, name).weight.copy_(m)
        return layer

    def matrices(self) -> dict[str, torch.Tensor]:
        """The four ``(D, D)`` weight matrices (detached), in ``(out, in)`` layout."""
        return {name: getattr(self, name).weight.detach() for name in ("W_Q", "W_K", "W_V", "P")}

    def forward(self, E: torch.Tensor, query_only: bool = False) -> torch.Tensor:
        """``E (B, T, D)`` → ``E_out (B, T, D)``, or ``(B, 1, D)`` (the query token alone) with ``query_only``."""
        _checks.tensor("E", E, 3, f"(B, T, D={self.dim})")
        if E.shape[2] != self.dim:
            raise ValueError(f"E must have shape (B, T, D={self.dim}), got {tuple(E.shape)}")
        if E.dtype != self.W_Q.weight.dtype:
            raise TypeError(f"E must have the layer's dtype {self.W_Q.weight.dtype}, got {E.dtype} (convert one of "
                            "them with .to(dtype))")
        if E.shape[1] < 2 and not self.include_query:
            raise ValueError(f"E needs at least one context token and the query, got T={E.shape[1]}")
        E_c = E if self.include_query else E[:, :-1]  # (B, N, D) keys/values come from these
        E_q = E[:, -1:] if query_only else E  # (B, T', D) tokens that get updated
        if self.attention == "linear":
            # Fast path: Σ_j (k_j·q) v_j = W_V (E_cᵀ E_c) W_Kᵀ q, one (D, D) Gram matrix per task.
            gram = E_c.transpose(1, 2) @ E_c  # (B, D, D)
            kq = self.W_Q(E_q) @ self.W_K.weight  # (B, T', D): rows (W_Kᵀ q_j)ᵀ
            return E_q + self.P(self.W_V(kq @ gram))  # (B, T', D)
        k, v = self.W_K(E_c), self.W_V(E_c)  # (B, N, D)
        q = self.W_Q(E_q)  # (B, T', D)
        return E_q + self.P(_ATTENTION[self.attention](q, k, v))  # (B, T', D)


class LSAStack(nn.Module):
    """K self-attention layers applied in sequence — separate weights per layer, or one layer applied K times.

    Parameters
    ----------
    layers : list of LinearSelfAttention
        One layer per application, or a single layer with ``shared=True``.
    n_layers : int, optional
        Number of applications of the shared layer (``shared=True`` only).
    n_context : int, optional
        If given, inputs must have exactly ``n_context`` context tokens (plus the query), else ``ValueError``.
    """

    def __init__(
        self,
        layers: list[LinearSelfAttention],
        *,
        shared: bool = False,
        n_layers: int | None = None,
        n_context: int | None = None,
    ) -> None:
        super().__init__()
        if not layers or not all(isinstance(layer, LinearSelfAttention) for layer in layers):
            raise TypeError("layers must be a non-empty list of LinearSelfAttention")
        if shared and len(layers) != 1:
            raise ValueError(f"shared=True takes exactly one layer, got {len(layers)}")
        if shared:
            depth = 1 if n_layers is None else _checks.positive_int("n_layers", n_layers)
        else:
            depth = len(layers)
            if n_layers is not None and n_layers != depth:
                raise ValueError(f"n_layers={n_layers} contradicts the {depth} layers given (unshared stack)")
        self.layers = nn.ModuleList(layers)
        self.shared = shared
        self.n_layers = depth
        self.n_context = None if n_context is None else _checks.positive_int("n_context", n_context)

    @classmethod
    def new(cls, dim: int, n_layers: int = 1, *, shared: bool = False, n_context: int | None = None,
            generator: torch.Generator | None = None, **layer_kw) -> LSAStack:
        """Freshly initialised stack; ``layer_kw`` go to :class:`LinearSelfAttention`."""
        depth = _checks.positive_int("n_layers", n_layers)
        layers = [LinearSelfAttention(dim, generator=generator, **layer_kw) for _ in range(1 if shared else depth)]
        return cls(layers, shared=shared, n_layers=depth, n_context=n_context)

    def layer(self, i: int) -> LinearSelfAttention:
        """The layer used at application ``i``."""
        return self.layers[0 if self.shared else i]  # type: ignore[return-value]

    def forward(self, E: torch.Tensor, query_only: bool = False, n_layers: int | None = None) -> torch.Tensor:
        """Apply the stack; ``query_only`` returns only the final query token ``(B, 1, D)``.

        ``n_layers`` overrides the depth of a shared stack (iterate the learned layer more or fewer times).
        """
        _checks.tensor("E", E, 3, "(B, N+1, D)")
        if self.n_context is not None and E.shape[1] != self.n_context + 1:
            raise ValueError(
                f"this model was built for n_context={self.n_context}: E must have shape "
                f"(B, {self.n_context + 1}, D), got {tuple(E.shape)}")
        depth = self.n_layers if n_layers is None else _checks.positive_int("n_layers", n_layers)
        if n_layers is not None and not self.shared and depth != len(self.layers):
            raise ValueError(f"n_layers can differ from {len(self.layers)} only for a shared stack")
        for i in range(depth):
            E = self.layer(i)(E, query_only=query_only and i == depth - 1)
        return E


class FeatureMap(nn.Module):
    """A two-layer MLP feature map ``m: R^dx → R^F``, ``m(x) = W_2 gelu(W_1 x + b_1) + b_2``.

    Initialised like ``nn.Linear`` (uniform in ``±1/√fan_in``), but from ``generator``.
    """

    def __init__(self, dx: int, hidden: int, features: int, *, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32, device: str | torch.device | None = None) -> None:
        super().__init__()
        self.dx = _checks.positive_int("dx", dx)
        self.features = _checks.positive_int("features", features)
        self.hidden = nn.Linear(dx, _checks.positive_int("hidden", hidden), dtype=dtype, device=device)
        self.out = nn.Linear(hidden, features, dtype=dtype, device=device)
        with torch.no_grad():
            for lin in (self.hidden, self.out):
                bound = 1 / math.sqrt(lin.in_features)
                for p in (lin.weight, lin.bias):
                    p.copy_(torch.rand(p.shape, generator=generator, dtype=p.dtype).mul(2 * bound).sub(bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (…, dx) → (…, F)``."""
        if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[-1] != self.dx:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (..., dx={self.dx}), got {shape}")
        return self.out(torch.nn.functional.gelu(self.hidden(x)))


def _split_tokens(E: torch.Tensor, dx: int, n_context: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _checks.tensor("E", E, 3, "(B, N+1, dx+dy)")
    if E.shape[2] <= dx or E.shape[1] < 2:
        raise ValueError(f"E must have shape (B, N+1, dx+dy) with dx={dx}, dy ≥ 1, N ≥ 1, got {tuple(E.shape)}")
    if n_context is not None and E.shape[1] != n_context + 1:
        raise ValueError(f"this model was built for n_context={n_context}: E must have shape "
                         f"(B, {n_context + 1}, D), got {tuple(E.shape)}")
    return E[:, :-1, :dx], E[:, :-1, dx:], E[:, -1, :dx]


class FeatureLSA(nn.Module):
    """An MLP feature map followed by linear self-attention: tokens ``(m(x_i), y_i)`` and query ``(m(x_q), 0)``.

    Takes the usual tokens ``E (B, N+1, dx+dy)`` of :func:`~icl_course.tasks.make_tokens` and returns the query token
    in the same layout, ``(x_q, ·)`` with the attention's y-slot, so :func:`~icl_course.gd_transformer.readout` and
    every loss of the course apply unchanged.

    References
    ----------
    von Oswald et al. (2022), Proposition 2; Part III, "Non-linear regression: GD on learned features".
    """

    def __init__(self, feature_map: FeatureMap, lsa: LSAStack) -> None:
        super().__init__()
        if lsa.layer(0).dim <= feature_map.features:
            raise ValueError(f"the attention's width ({lsa.layer(0).dim}) must be features + dy "
                             f"({feature_map.features} + dy)")
        self.feature_map, self.lsa = feature_map, lsa
        self.dx = feature_map.dx

    def feature_tokens(self, E: torch.Tensor) -> torch.Tensor:
        """``(B, N+1, dx+dy) → (B, N+1, F+dy)``: every token's x replaced by ``m(x)``."""
        _split_tokens(E, self.dx, self.lsa.n_context)
        return torch.cat([self.feature_map(E[..., :self.dx]), E[..., self.dx:]], dim=-1)

    def forward(self, E: torch.Tensor, query_only: bool = True) -> torch.Tensor:
        """``E (B, N+1, dx+dy)`` → the query token ``(B, 1, dx+dy)``."""
        if not query_only:
            raise ValueError("FeatureLSA returns the query token only (query_only=True)")
        out = self.lsa(self.feature_tokens(E), query_only=True)  # (B, 1, F+dy)
        return torch.cat([E[:, -1:, :self.dx], out[..., self.feature_map.features:]], dim=-1)


class StandardTokenLSA(nn.Module):
    """Attention layers on the standard token layout: ``x_i`` and ``y_i`` in separate tokens (one-hot positions).

    Takes the usual tokens ``E (B, N+1, dx+dy)``, rearranges them with :func:`~icl_course.tasks.standard_tokens`
    into ``2N + 1`` tokens of width ``dx + dy + 2N + 1``, applies the stack and returns the query token in the usual
    layout ``(x_q, ·)`` with the stack's y-slot. The stack's layers may differ in ``attention`` (e.g. a softmax
    first layer that copies, then a linear one).

    References
    ----------
    von Oswald et al. (2022), Proposition 3; Part III, "Standard tokens: copy, then descend".
    """

    def __init__(self, stack: LSAStack, dx: int, dy: int, n_context: int) -> None:
        super().__init__()
        self.dx, self.dy = _checks.positive_int("dx", dx), _checks.positive_int("dy", dy)
        self.n_context = _checks.positive_int("n_context", n_context)
        width = dx + dy + 2 * n_context + 1
        if stack.layer(0).dim != width:
            raise ValueError(f"the stack's width must be dx + dy + 2N + 1 = {width}, got {stack.layer(0).dim}")
        self.stack = stack

    def tokens(self, E: torch.Tensor) -> torch.Tensor:
        """``E (B, N+1, dx+dy)`` → standard tokens ``(B, 2N+1, dx+dy+2N+1)``."""
        x, y, xq = _split_tokens(E, self.dx, self.n_context)
        if y.shape[-1] != self.dy:
            raise ValueError(f"E must have shape (B, N+1, dx+dy={self.dx + self.dy}), got {tuple(E.shape)}")
        return standard_tokens(x, y, xq)

    def forward(self, E: torch.Tensor, query_only: bool = True) -> torch.Tensor:
        """``E (B, N+1, dx+dy)`` → the query token ``(B, 1, dx+dy)``."""
        if not query_only:
            raise ValueError("StandardTokenLSA returns the query token only (query_only=True)")
        out = self.stack(self.tokens(E), query_only=True)  # (B, 1, dx+dy+2N+1)
        return torch.cat([E[:, -1:, :self.dx], out[..., self.dx:self.dx + self.dy]], dim=-1)
