"""The small GPT-style transformer of the course, nanoGPT's shape with a pluggable sequence mixer.

Token and learned position embeddings; ``n_layer`` pre-LayerNorm blocks ``x ← x + mix(ln₁(x))``,
``x ← x + mlp(ln₂(x))``; a final LayerNorm; a language-model head tied to the token embedding (``tie_weights``). The
*mixer* of each block maps ``(B, T, C) → (B, T, C)`` causally and returns the update without the residual; the
default is causal softmax attention (:class:`~icl_course.causal.CausalSelfAttention` with ``residual=False``), and
any other causal layer can take its place (linear attention, the mesa layer of Part IV) with everything else equal.

References
----------
Radford et al. (2019) (GPT-2: pre-LayerNorm blocks, tied head); Karpathy's nanoGPT ``model.py`` (the layout and the
``GPTConfig``). Part IV, "A small language model with mesa layers".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks
from .causal import CausalSelfAttention

__all__ = ["GPTConfig", "GPT", "RegressionGPT", "attention_mixer"]

Mixer = Callable[[int], nn.Module]
"""``mixer(layer_index) -> module`` mapping ``(B, T, C)`` to the update ``(B, T, C)`` (no residual), causally."""


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of a :class:`GPT` (nanoGPT's ``GPTConfig``).

    ``d_model`` must split into ``n_head`` heads of ``d_model // n_head``; the MLP is ``d_model → mlp_ratio·d_model →
    d_model`` with GELU; ``bias`` for the LayerNorms and MLP (the mixers have none); ``init_std`` the std of every
    weight matrix and embedding at initialisation (GPT-2's 0.02).
    """

    vocab_size: int
    block_size: int = 64
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    mlp_ratio: int = 4
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = True
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model", "mlp_ratio"):
            _checks.positive_int(f"GPTConfig.{name}", getattr(self, name))
        if self.d_model % self.n_head:
            raise ValueError(f"GPTConfig.d_model ({self.d_model}) must split into n_head={self.n_head} heads")
        if not 0 <= float(self.dropout) < 1:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")
        _checks.positive_float("GPTConfig.init_std", self.init_std)

    @property
    def head_size(self) -> int:
        return self.d_model // self.n_head


def attention_mixer(config: GPTConfig, attention: str = "softmax", *, average: bool = False,
                    dtype: torch.dtype = torch.float32, device: str | torch.device | None = None) -> Mixer:
    """The factory of :class:`~icl_course.causal.CausalSelfAttention` mixers: ``n_head`` heads of ``head_size``, no
    biases, no residual; ``attention="softmax"`` scales scores by ``1/√head_size``, ``"linear"`` is the
    unnormalised ``Σ_{j≤t} (k_j·q_t) v_j``, or with ``average=True`` its mean ``(1/t) Σ_{j≤t}``. Weights are set by
    :class:`GPT`'s initialisation."""
    return lambda i: CausalSelfAttention(config.d_model, config.n_head, config.head_size, attention=attention,
                                         init_std=0.0, average=average, residual=False, dtype=dtype, device=device)


class MLP(nn.Module):
    """``x → W₂ gelu(W₁ x + b₁) + b₂`` (dropout after), ``(B, T, C) → (B, T, C)``."""

    def __init__(self, config: GPTConfig, dtype: torch.dtype, device: str | torch.device | None) -> None:
        super().__init__()
        hidden = config.mlp_ratio * config.d_model
        self.fc = nn.Linear(config.d_model, hidden, bias=config.bias, dtype=dtype, device=device)
        self.proj = nn.Linear(hidden, config.d_model, bias=config.bias, dtype=dtype, device=device)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """One pre-LayerNorm block: ``x ← x + mix(ln₁(x))``, then ``x ← x + mlp(ln₂(x))``."""

    def __init__(self, config: GPTConfig, mix: nn.Module, dtype: torch.dtype,
                 device: str | torch.device | None) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model, bias=config.bias, dtype=dtype, device=device)
        self.mix = mix
        self.ln2 = nn.LayerNorm(config.d_model, bias=config.bias, dtype=dtype, device=device)
        self.mlp = MLP(config, dtype, device)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.mix(self.ln1(x)))  # (B, T, C)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """A decoder-only transformer over token ids: ``idx (B, T)`` → next-token logits ``(B, T, vocab_size)``.

    Parameters
    ----------
    config : GPTConfig
    mixer : callable, optional
        ``mixer(i)`` builds the sequence mixer of block ``i`` (see :data:`Mixer`); default
        ``attention_mixer(config, "softmax")``. It must be causal and return modules of the GPT's dtype and device.
    generator : torch.Generator, optional
        Seeds the initialisation. Every ``nn.Linear`` and ``nn.Embedding`` the model holds — the mixers' included —
        starts ``N(0, init_std²)``, drawn in module order, biases at 0, LayerNorms at (1, 0); other parameters of a
        mixer (e.g. the mesa layer's λ) keep their own. So with one seed, mixers whose weight matrices have the same
        shapes start from the same weights.
    dtype, device
        Of the weights.

    Notes
    -----
    The head is tied (``tie_weights=True``): logits are ``ln_f(x) Eᵀ`` with ``E`` the token embedding, as in GPT-2
    and nanoGPT; untied, it is a separate ``nn.Linear(d_model, vocab_size, bias=False)``.
    """

    def __init__(self, config: GPTConfig, mixer: Mixer | None = None, *, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32, device: str | torch.device | None = None) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        make = attention_mixer(config, dtype=dtype, device=device) if mixer is None else mixer
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model, dtype=dtype, device=device)
        self.pos_emb = nn.Embedding(config.block_size, config.d_model, dtype=dtype, device=device)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config, make(i), dtype, device) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.d_model, bias=config.bias, dtype=dtype, device=device)
        self.head = None if config.tie_weights else nn.Linear(config.d_model, config.vocab_size, bias=False,
                                                              dtype=dtype, device=device)
        for name, p in self.named_parameters():
            if p.dtype != dtype or p.device != self.tok_emb.weight.device:
                raise TypeError(f"parameter {name} is {p.dtype} on {p.device}; the mixer must build modules of the "
                                f"GPT's dtype {dtype} and device {self.tok_emb.weight.device}")
        self._init_weights(generator)

    def _init_weights(self, generator: torch.Generator | None) -> None:
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    m.weight.normal_(0.0, self.config.init_std, generator=generator)
                    if getattr(m, "bias", None) is not None:
                        m.bias.zero_()

    def num_params(self, embeddings: bool = True) -> int:
        """Number of parameters (a tied head counted once); ``embeddings=False`` leaves out both embeddings."""
        n = sum(p.numel() for p in self.parameters())
        return n if embeddings else n - self.tok_emb.weight.numel() - self.pos_emb.weight.numel()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx (B, T)`` int64 with ``T ≤ block_size`` → logits ``(B, T, vocab_size)``."""
        if not isinstance(idx, torch.Tensor) or idx.ndim != 2 or idx.is_floating_point():
            shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise ValueError(f"idx must be an integer tensor of shape (B, T), got {shape}")
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"idx must have shape (B, T ≤ block_size={self.config.block_size}), got {(B, T)}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return x @ self.tok_emb.weight.T if self.head is None else self.head(x)  # (B, T, V)

    def token_losses(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy in nats of each next token, ``(B, T)``, for inputs ``idx`` and targets ``targets (B, T)``."""
        logits = self(idx)
        if not isinstance(targets, torch.Tensor) or targets.shape != idx.shape:
            raise ValueError(f"targets must have the shape of idx (B, T) = {tuple(idx.shape)}, got "
                             f"{getattr(targets, 'shape', type(targets).__name__)}")
        V = logits.shape[-1]
        return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none").view(idx.shape)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
                 generator: torch.Generator | None = None, greedy: bool = False) -> torch.Tensor:
        """Extend ``idx (B, T0)`` by ``max_new_tokens`` tokens, each sampled from the softmax of the last logits at
        ``temperature`` (or their argmax with ``greedy``), conditioning on the last ``block_size`` tokens."""
        n = _checks.positive_int("max_new_tokens", max_new_tokens)
        temperature = _checks.positive_float("temperature", temperature)
        for _ in range(n):
            logits = self(idx[:, -self.config.block_size:])[:, -1] / temperature  # (B, V)
            nxt = logits.argmax(-1, keepdim=True) if greedy else torch.multinomial(
                torch.softmax(logits.double(), -1), 1, generator=generator)
            idx = torch.cat([idx, nxt.to(idx.dtype)], dim=1)
        return idx


class RegressionGPT(nn.Module):
    """The same transformer over real-valued tokens (Garg et al.'s model): ``tokens (B, T, in_dim)`` → ``(B, T,
    out_dim)``.

    A linear read-in ``in_dim → d_model`` (with bias) replaces the token embedding, learned positions are added,
    then the :class:`GPT`'s blocks and final LayerNorm, and a linear read-out ``d_model → out_dim``. ``config``'s
    ``vocab_size`` and ``tie_weights`` are unused (pass ``vocab_size=1``). Initialised like :class:`GPT`.

    References
    ----------
    Garg et al. (2022), Sec. 2 (GPT-2 backbone with linear read-in and read-out); Part I, "Learning to learn in
    context".
    """

    def __init__(self, config: GPTConfig, in_dim: int, out_dim: int = 1, *, mixer: Mixer | None = None,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.in_dim = _checks.positive_int("in_dim", in_dim)
        self.out_dim = _checks.positive_int("out_dim", out_dim)
        make = attention_mixer(config, dtype=dtype, device=device) if mixer is None else mixer
        self.read_in = nn.Linear(self.in_dim, config.d_model, dtype=dtype, device=device)
        self.pos_emb = nn.Embedding(config.block_size, config.d_model, dtype=dtype, device=device)
        self.blocks = nn.ModuleList([Block(config, make(i), dtype, device) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.d_model, bias=config.bias, dtype=dtype, device=device)
        self.read_out = nn.Linear(config.d_model, self.out_dim, dtype=dtype, device=device)
        GPT._init_weights(self, generator)  # type: ignore[arg-type]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens (B, T, in_dim)`` with ``T ≤ block_size`` → outputs ``(B, T, out_dim)``, causally."""
        _checks.tensor("tokens", tokens, 3, f"(B, T, in_dim={self.in_dim})")
        B, T, D = tokens.shape
        if D != self.in_dim or T > self.config.block_size:
            raise ValueError(f"tokens must have shape (B, T ≤ block_size={self.config.block_size}, "
                             f"in_dim={self.in_dim}), got {(B, T, D)}")
        x = self.read_in(tokens) + self.pos_emb(torch.arange(T, device=tokens.device))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.read_out(self.ln_f(x))  # (B, T, out_dim)
