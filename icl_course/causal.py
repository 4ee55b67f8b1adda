"""Causal sequence models: multi-head causal self-attention (linear or softmax) and its stack.

Every position ``t`` attends to the positions ``j ≤ t`` (itself included, as in the official code's ``tril``).
Weights are stored ``(out, in)`` (``nn.Linear(bias=False).weight``), the transposes of the official Flax kernels.
Inputs are batched token sequences ``E (B, T, D)``, rows as tokens.

References
----------
von Oswald et al. (2023) and the official ``MultiHeadAttention`` / ``TF_BlockList`` (the block: optional input
mask, residual attention, element-wise activation clip); Part IV.
"""

from __future__ import annotations

import torch
from torch import nn

from . import _checks
from .attention import linear_attention, softmax_attention

__all__ = ["CausalSelfAttention", "CausalStack", "OFFICIAL_MESA_INIT_STD"]

OFFICIAL_MESA_INIT_STD = 2e-4
"""Every kernel of the official mesa code starts ``N(0, 0.0002²)`` (``normal(stddev=0.0002)``)."""

_NAMES = ("W_Q", "W_K", "W_V", "W_O")


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with a residual: ``e_t ← e_t + W_O concat_h Σ_{j≤t} a_h(q_t, k_j) v_j``.

    Head ``h`` owns rows ``h·k … (h+1)·k − 1`` of ``W_Q, W_K, W_V`` (``(H·k, D)``) and the same columns of ``W_O``
    (``(D, H·k)``). ``attention="linear"``: ``a(q, k) = k·q`` (no softmax, no scaling, no normalisation);
    ``"softmax"``: ``softmax_j(k·q / √k_size)`` over ``j ≤ t``. With rows as tokens and one head,
    ``E_out = E + causal((E W_Qᵀ)(E W_Kᵀ)ᵀ)(E W_Vᵀ) W_Oᵀ``.

    Parameters
    ----------
    dim : int
        Token width D.
    n_heads, key_size : int
        H and k (key, query and value size per head).
    attention : {"linear", "softmax"}
    init_std : float
        Weights start ``N(0, init_std²)`` (official: 2e-4).
    average : bool
        Linear only: divide position ``t``'s sum by its number of keys ``t`` — the *mean*
        ``(1/t) Σ_{j≤t} (k_j·q_t) v_j``, one GD step on the averaged objective ``L_t / t`` rather than on ``L_t``
        (default ``False``: the sum, the official code's convention). Softmax weights sum to one already.
    residual : bool
        Add the input back (default). ``False`` returns the update ``W_O concat_h …`` alone, for blocks that add
        their own residual (the pre-LayerNorm block of :class:`~icl_course.gpt.GPT`).
    """

    def __init__(self, dim: int, n_heads: int = 1, key_size: int | None = None, *, attention: str = "linear",
                 init_std: float = OFFICIAL_MESA_INIT_STD, average: bool = False, residual: bool = True,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        self.residual = bool(residual)
        if average and attention != "linear":
            raise ValueError(f"average=True is for attention='linear' (softmax weights sum to one), got {attention!r}")
        self.average = bool(average)
        self.dim = _checks.positive_int("dim", dim)
        self.n_heads = _checks.positive_int("n_heads", n_heads)
        self.key_size = dim if key_size is None else _checks.positive_int("key_size", key_size)
        if attention not in ("linear", "softmax"):
            raise ValueError(f"attention must be 'linear' or 'softmax', got {attention!r}")
        self.attention = attention
        std = _checks.positive_float("init_std", init_std, allow_zero=True)
        inner = self.n_heads * self.key_size
        for name, (i, o) in zip(_NAMES, [(dim, inner)] * 3 + [(inner, dim)]):
            lin = nn.Linear(i, o, bias=False, dtype=dtype, device=device)
            with torch.no_grad():
                lin.weight.copy_(torch.randn(o, i, generator=generator, dtype=dtype).mul(std))
            setattr(self, name, lin)

    @classmethod
    def from_matrices(cls, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor, W_O: torch.Tensor, *,
                      n_heads: int = 1, attention: str = "linear") -> CausalSelfAttention:
        """A layer with exactly these matrices (``(H·k, D)`` for Q, K, V; ``(D, H·k)`` for ``W_O``)."""
        for name, m in zip(_NAMES, (W_Q, W_K, W_V, W_O)):
            _checks.tensor(name, m, 2, "(H·k, D)" if name != "W_O" else "(D, H·k)")
            if m.dtype != W_Q.dtype or m.device != W_Q.device:
                raise TypeError(f"{name} must share W_Q's dtype and device ({W_Q.dtype}, {W_Q.device})")
        inner, D = W_Q.shape
        n_heads = _checks.positive_int("n_heads", n_heads)
        if inner % n_heads:
            raise ValueError(f"W_Q's rows ({inner}) must split into n_heads={n_heads} heads")
        for name, m, shape in (("W_K", W_K, (inner, D)), ("W_V", W_V, (inner, D)), ("W_O", W_O, (D, inner))):
            if tuple(m.shape) != shape:
                raise ValueError(f"{name} must have shape {shape} to match W_Q {tuple(W_Q.shape)}, "
                                 f"got {tuple(m.shape)}")
        layer = cls(D, n_heads, inner // n_heads, attention=attention, init_std=0.0, dtype=W_Q.dtype,
                    device=W_Q.device)
        with torch.no_grad():
            for name, m in zip(_NAMES, (W_Q, W_K, W_V, W_O)):
                getattr(layer, name).weight.copy_(m)
        return layer

    def matrices(self) -> dict[str, torch.Tensor]:
        """The four weight matrices (detached), ``(out, in)`` layout."""
        return {name: getattr(self, name).weight.detach() for name in _NAMES}

    def heads(self, E: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-head queries, keys and values ``(B, H, T, k)`` of tokens ``E (B, T, D)``."""
        _checks.tensor("E", E, 3, f"(B, T, D={self.dim})")
        if E.shape[2] != self.dim:
            raise ValueError(f"E must have shape (B, T, D={self.dim}), got {tuple(E.shape)}")
        B, T, _ = E.shape
        split = lambda x: x.view(B, T, self.n_heads, self.key_size).transpose(1, 2)  # (B, H, T, k)
        return split(self.W_Q(E)), split(self.W_K(E)), split(self.W_V(E))

    def scores(self, E: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(B, H, T, T)`` (zero above the diagonal): ``k_j·q_t``, or their causal softmax."""
        q, k, _ = self.heads(E)
        s = q @ k.transpose(-2, -1)  # (B, H, T, T)
        mask = torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).tril()
        if self.attention == "linear":
            s = s.masked_fill(~mask, 0.0)
            return s / self._counts(s) if self.average else s
        return torch.softmax((s / self.key_size**0.5).masked_fill(~mask, float("-inf")), dim=-1)

    @staticmethod
    def _counts(x: torch.Tensor) -> torch.Tensor:
        """``(T, 1)``: the number of keys ``j ≤ t`` of each position, 1 … T (``x (…, T, ·)``)."""
        return torch.arange(1, x.shape[-2] + 1, dtype=x.dtype, device=x.device)[:, None]

    def forward(self, E: torch.Tensor) -> torch.Tensor:
        """``E (B, T, D)`` → ``E + attention(E)`` ``(B, T, D)`` (``attention(E)`` alone when ``residual=False``)."""
        q, k, v = self.heads(E)
        if self.attention == "linear":
            out = linear_attention(q, k, v, causal=True)  # (B, H, T, k)
            out = out / self._counts(out) if self.average else out  # the mean over the t keys j ≤ t
        else:
            out = softmax_attention(q, k, v, causal=True)
        B, T = E.shape[:2]
        update = self.W_O(out.transpose(1, 2).reshape(B, T, -1))  # (B, T, D)
        return E + update if self.residual else update


class CausalStack(nn.Module):
    """Causal attention layers in sequence, with the official block's two extras.

    Before every layer the first ``masked_dims`` entries of every token are zeroed, in the residual stream too
    (official ``mask_inputs``: the one-layer experiment's tokens ``(0, 0, s_t, s_{t−1})``); after every layer the
    stream is clipped element-wise to ``±clip`` (official ``use_clip``, 1.5; ``None`` turns it off).
    """

    def __init__(self, layers: list[nn.Module], *, masked_dims: int = 0, clip: float | None = None) -> None:
        super().__init__()
        if not layers or not all(isinstance(layer, nn.Module) for layer in layers):
            raise TypeError("layers must be a non-empty list of modules mapping (B, T, D) to (B, T, D)")
        self.layers = nn.ModuleList(layers)
        self.masked_dims = _checks.positive_int("masked_dims", masked_dims) if masked_dims else 0
        self.clip = None if clip is None else _checks.positive_float("clip", clip)

    def forward(self, E: torch.Tensor, n_layers: int | None = None) -> torch.Tensor:
        """``E (B, T, D)`` → ``(B, T, D)`` after the first ``n_layers`` layers (all by default)."""
        _checks.tensor("E", E, 3, "(B, T, D)")
        depth = len(self.layers) if n_layers is None else _checks.positive_int("n_layers", n_layers)
        for layer in list(self.layers)[:depth]:
            if self.masked_dims:
                E = torch.cat([torch.zeros_like(E[..., :self.masked_dims]), E[..., self.masked_dims:]], dim=-1)
            E = layer(E)
            if self.clip is not None:
                E = E.clamp(-self.clip, self.clip)
        return E
