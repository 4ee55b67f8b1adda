"""Part IV, chapter "A small language model with mesa layers": three two-layer character-level GPTs that differ only
in their sequence mixer — causal softmax attention, causal linear attention, the mesa layer — trained on the same
batches with the same optimiser and budget on the rotten-tomatoes movie-review sentences, and compared with the
counting baselines (unigram, add-one bigram) on held-out sentences, overall and position by position (against the
bigram's loss at the same position of the same windows), and probed with every mixer restricted to a short window.

References
----------
von Oswald et al. (2023), the language-modelling experiment with mesa layers; Karpathy's nanoGPT (the character-level
set-up); Pang and Lee (2005) (the sentences). Part IV, ``book/part4_language.ipynb``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import runtime, tasks, train
from ..causal import CausalSelfAttention
from ..gpt import GPT, GPTConfig, attention_mixer
from ._mesa_attention import MesaLayer

__all__ = ["LanguageSettings", "LANGUAGE", "MIXERS", "LINEAR_SUM", "LN2", "language_corpus", "mesa_mixer",
           "new_language_model", "lm_loss", "train_language_model", "window_losses", "position_losses",
           "bigram_losses", "local_context", "Baselines", "ngram_baselines", "sample_text", "LanguageComparison",
           "language_comparison", "EARLY", "LATE"]

MIXERS = ("softmax", "linear", "mesa")
"""The three sequence mixers the chapter compares, in this order everywhere."""
LINEAR_SUM = "linear (sum)"
"""The ablation: linear attention with the plain sum ``Σ_{j≤t}`` (the chapter's ``"linear"`` takes the mean)."""
LN2 = math.log(2)
"""nats per bit: a loss in nats divided by ``LN2`` is in bits."""


@dataclass(frozen=True)
class LanguageSettings:
    """One budget for every mixer: the GPT's sizes, the optimiser (Adam after global-norm clipping, linear warm-up
    then cosine decay to ``final_lr``·``lr``), the number of updates and batches, the tracked validation windows,
    and the mesa layer's initial ridge λ and solver (``"recurrent"``: Sherman–Morrison, fastest on CPU; ``"solve"``:
    parallel over positions, for accelerators)."""

    block_size: int = 64
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    betas: tuple[float, float] = (0.9, 0.99)
    warmup: int = 30
    final_lr: float = 0.1
    clip: float = 1.0
    eval_every: int = 25
    eval_windows: int = 256
    lam_init: float = 1.0
    mesa_method: str = "recurrent"

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        """The :class:`~icl_course.gpt.GPTConfig` of these settings for a vocabulary of ``vocab_size``."""
        return GPTConfig(vocab_size=vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, d_model=self.d_model)


LANGUAGE = runtime.Scales(
    cpu=LanguageSettings(),
    paper=LanguageSettings(block_size=256, n_layer=4, n_head=8, d_model=256, steps=20_000, batch_size=64, lr=1e-3,
                           warmup=1_000, eval_every=1_000, eval_windows=1_024, mesa_method="solve"),
)
"""``cpu``: what the book trains (two layers, d_model 64, 300 updates of 32 windows of 64 characters). ``paper``: a
GPU-sized run of the same comparison (four layers, d_model 256, 20,000 updates) — larger, but not the paper's own
set-up, whose sizes and data this chapter does not reproduce."""


def language_corpus() -> tasks.CharCorpus:
    """The chapter's corpus: the rotten-tomatoes sentences, 10 % held out by sentence (split seed 0)."""
    return tasks.char_corpus(tasks.movie_review_sentences("rotten_tomatoes"), val_fraction=0.1, split_seed=0)


def mesa_mixer(config: GPTConfig, *, lam_init: float = 1.0, method: str = "recurrent",
               dtype: torch.dtype = torch.float32, device: str | torch.device | None = None):
    """The factory of mesa-layer mixers for a :class:`~icl_course.gpt.GPT`: ``n_head`` heads with keys and values of
    ``head_size``, a learnt ridge λ per head starting at ``lam_init``, no residual — the same four weight matrices as
    the attention mixers (so :class:`~icl_course.gpt.GPT` starts them from the same weights) plus ``n_head`` λ's."""
    return lambda i: MesaLayer(config.d_model, config.n_head, config.head_size, config.head_size, lam_init=lam_init,
                               method=method, residual=False, init_std=0.0, dtype=dtype, device=device)


def new_language_model(kind: str, vocab_size: int, settings: LanguageSettings = LANGUAGE.cpu, *, seed: int = 0,
                       dtype: torch.dtype = torch.float32, device: str | torch.device | None = None) -> GPT:
    """A freshly initialised GPT with the mixer ``kind`` (one of :data:`MIXERS`, or :data:`LINEAR_SUM`); weights
    from ``seed``. ``"linear"`` is causal linear attention averaged over the keys ``j ≤ t``."""
    if kind not in (*MIXERS, LINEAR_SUM):
        raise ValueError(f"kind must be one of {[*MIXERS, LINEAR_SUM]}, got {kind!r}")
    config = settings.gpt_config(vocab_size)
    if kind == "mesa":
        make = mesa_mixer(config, lam_init=settings.lam_init, method=settings.mesa_method, dtype=dtype, device=device)
    elif kind == "softmax":
        make = attention_mixer(config, "softmax", dtype=dtype, device=device)
    else:  # linear attention: the mean over the keys j ≤ t, or (LINEAR_SUM) their plain sum
        make = attention_mixer(config, "linear", average=kind == "linear", dtype=dtype, device=device)
    return GPT(config, make, generator=runtime.generator(seed), dtype=dtype, device=device)


def lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean next-character cross-entropy (nats) of ``batch = (x (B, T), y (B, T))``."""
    x, y = batch
    return model.token_losses(x, y).mean()


def train_language_model(kind: str, corpus: tasks.CharCorpus, settings: LanguageSettings = LANGUAGE.cpu, *,
                         seed: int = 0, steps: int | None = None, device: str | torch.device | None = None,
                         progress: bool | None = None) -> train.TrainedRun:
    """Train one GPT with the mixer ``kind`` on ``settings``' budget with the course's loop (:func:`~icl_course.train
    .train_run`). Seeds: the weights ``seed``, the training windows ``seed + 1`` — so for one seed the three mixers
    see exactly the same batches in the same order. Tracked every ``eval_every`` updates on the first
    ``eval_windows`` validation windows (the run's ``eval_set``)."""
    n = steps or settings.steps
    model = new_language_model(kind, corpus.vocab_size, settings, seed=seed, device=device)
    batches = tasks.window_stream(corpus.train, settings.batch_size, settings.block_size, seed=seed + 1,
                                  device=device)
    x, y = corpus.windows("val", settings.block_size, settings.eval_windows)
    x, y = x.to(device), y.to(device)
    schedule = train.warmup_cosine(settings.warmup, n, settings.final_lr)
    return train.train_run(model, lm_loss, batches, n, eval_set=(x, y), eval_batch=(x, y), lr=settings.lr,
                           betas=settings.betas, clip=settings.clip, lr_schedule=schedule,
                           eval_every=settings.eval_every, progress=progress, desc=f"{kind} GPT seed {seed}")


def window_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Validation loss (nats) of every next character of the windows ``(x, y)``: ``(W, T)`` float64, no gradient
    (the model is evaluated in ``eval`` mode, ``chunk`` windows at a time)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model.token_losses(x[i:i + chunk], y[i:i + chunk]).double()
                         for i in range(0, len(x), chunk)])
    model.train(was_training)
    return out


def position_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Validation loss (nats) at each position of the window, averaged over windows: ``(T,)`` float64, no gradient.
    Its mean is the validation loss; position ``t`` predicts character ``t + 1`` from ``t + 1`` characters."""
    return window_losses(model, x, y, chunk).mean(0)


def bigram_losses(corpus: tasks.CharCorpus, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The add-one bigram model's loss (nats) of every next character of the windows ``(x, y)``, ``(W, T)`` float64
    — ``−log p(y_t | x_t)`` with the counts of the training text. Its mean over windows (``.mean(0)``) is the bigram's
    per-position curve on the same windows: the content of the text makes some positions harder than others, and a
    model's loss minus this curve removes that common part."""
    bi = tasks.ngram_log_probs(corpus.train, corpus.vocab_size, 2)
    return -bi[x.cpu(), y.cpu()]


def _band(T: int, context: int, device: torch.device) -> torch.Tensor:
    """``(T, T)`` bool: key ``j`` is visible from position ``t`` when ``t − context < j ≤ t``."""
    i = torch.arange(T, device=device)
    return (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - context)


def _local_attention(mix: CausalSelfAttention, E: torch.Tensor, context: int) -> torch.Tensor:
    q, k, v = mix.heads(E)  # (B, H, T, k)
    B, T = E.shape[:2]
    band = _band(T, context, E.device)
    s = q @ k.transpose(-2, -1)  # (B, H, T, T)
    if mix.attention == "linear":
        w = s.masked_fill(~band, 0.0)
        if mix.average:  # the mean over the visible keys, min(t, context) of them
            w = w / band.sum(-1, keepdim=True).to(w.dtype)
    else:
        w = torch.softmax((s / mix.key_size**0.5).masked_fill(~band, float("-inf")), dim=-1)
    update = mix.W_O((w @ v).transpose(1, 2).reshape(B, T, -1))
    return E + update if mix.residual else update


def _local_mesa(mix: MesaLayer, E: torch.Tensor, context: int) -> torch.Tensor:
    if mix.normalize is not None:
        raise ValueError("local_context supports the mesa layer without normalize")
    B, T, _ = E.shape
    w = min(context, T)
    q = mix._heads(mix.W_Q, E, mix.key_size).double()  # (B, H, T, dk)
    k = mix._heads(mix.W_K, E, mix.key_size).double()
    v = mix._heads(mix.W_V, E, mix.value_size).double()
    # The w visible keys and values of every position, zero-padded before the start: (B, H, T, w, dk), (B, H, T, w, dv)
    window = lambda a: F.pad(a, (0, 0, w - 1, 0)).unfold(2, w, 1).transpose(-1, -2)
    K, V = window(k), window(v)
    # The ridge solution in its dual form, Vᵀ (K Kᵀ + λI)⁻¹ K q_t = (Σ v kᵀ)(Σ k kᵀ + λI)⁻¹ q_t over the visible
    # keys: a w × w solve per position (a padded zero key adds nothing).
    eye = torch.eye(w, dtype=torch.float64, device=E.device)
    a = torch.linalg.solve(K @ K.mT + mix.lam.double()[:, None, None, None] * eye, K @ q[..., None])  # (B,H,T,w,1)
    out = (V.mT @ a)[..., 0]  # (B, H, T, dv)
    update = mix.P(out.to(E.dtype).transpose(1, 2).reshape(B, T, mix.n_heads * mix.value_size))
    return E + update if mix.residual else update


@contextmanager
def local_context(model: GPT, context: int) -> Iterator[GPT]:
    """Within the ``with`` block, every mixer of ``model`` sees only the last ``context`` positions (itself
    included): softmax attention renormalised over them, averaged linear attention averaged over them, the mesa
    layer's regression fitted on them (an explicit solve per position). An evaluation device — the trained weights are
    untouched, and the mixers' own behaviour is restored on exit. With ``L`` layers a position can still draw on the
    last ``L·(context − 1) + 1`` characters; ``context ≥ T`` reproduces the model's outputs."""
    if not isinstance(context, int) or context < 1:
        raise ValueError(f"context must be a positive int, got {context!r}")
    mixes = [block.mix for block in model.blocks]
    for mix in mixes:
        if not isinstance(mix, (CausalSelfAttention, MesaLayer)):
            raise TypeError(f"local_context supports CausalSelfAttention and MesaLayer mixers, got "
                            f"{type(mix).__name__}")
    local = lambda mix: (lambda E: (_local_mesa if isinstance(mix, MesaLayer) else _local_attention)(mix, E, context))
    try:
        for mix in mixes:
            mix.forward = local(mix)
        yield model
    finally:
        for mix in mixes:
            del mix.forward  # back to the class's forward


class Baselines(NamedTuple):
    """Validation losses (nats/char) of the counting models fitted on the training text with add-one smoothing:
    ``unigram`` (``≈`` the entropy of the character distribution) and ``bigram`` (the previous character only)."""

    unigram: float
    bigram: float


def ngram_baselines(corpus: tasks.CharCorpus, y: torch.Tensor, x: torch.Tensor) -> Baselines:
    """:class:`Baselines` on the windows ``(x, y)`` (targets ``y``, previous characters ``x``)."""
    uni = tasks.ngram_log_probs(corpus.train, corpus.vocab_size, 1)
    bi = tasks.ngram_log_probs(corpus.train, corpus.vocab_size, 2)
    return Baselines(float(-uni[y].mean()), float(-bi[x, y].mean()))


def sample_text(model: GPT, corpus: tasks.CharCorpus, prompt: str, n_chars: int, *, seed: int = 0,
                temperature: float = 0.8) -> str:
    """``prompt`` continued by ``n_chars`` characters sampled at ``temperature`` from a generator seeded ``seed``."""
    idx = corpus.encode(prompt)[None].to(model.tok_emb.weight.device)  # (1, len(prompt))
    out = model.generate(idx, n_chars, temperature=temperature, generator=runtime.generator(seed))
    return corpus.decode(out[0].cpu())


# ---------------------------------------------------------------------------------------- claim values (M20–M22)
EARLY, LATE = (2, 8), 16
"""The parts of the window the context effect (M22) compares: positions 2–8 (the first few characters of context)
and the last 16 positions (1-based; position ``t`` has ``t`` characters of context)."""


class LanguageComparison(NamedTuple):
    """M20–M22: per mixer (keys :data:`MIXERS`) the validation loss of each seed (nats/char) and the parameter
    count; the counting baselines; the bigram's per-position loss on the same windows (:func:`bigram_losses`); per
    mixer and seed the mean *excess* over that per-position bigram at positions :data:`EARLY` and over the last
    :data:`LATE` positions of the window."""

    seeds: tuple[int, ...]
    val_loss: dict[str, tuple[float, ...]]
    params: dict[str, int]
    baselines: Baselines
    bigram_curve: tuple[float, ...]
    early: dict[str, tuple[float, ...]]
    late: dict[str, tuple[float, ...]]

    def mean(self, kind: str) -> float:
        return sum(self.val_loss[kind]) / len(self.val_loss[kind])

    def spread(self, kind: str) -> float:
        """Largest minus smallest validation loss over the seeds."""
        return max(self.val_loss[kind]) - min(self.val_loss[kind])

    def rise(self, kind: str) -> tuple[float, ...]:
        """Per seed: the excess over the per-position bigram in the last :data:`LATE` positions minus that at
        positions :data:`EARLY` (positive: the model loses part of its early advantage over the bigram as the
        window fills)."""
        return tuple(late - early for early, late in zip(self.early[kind], self.late[kind]))


def language_comparison(curves: dict[str, list[torch.Tensor]], params: dict[str, int], baselines: Baselines,
                        seeds: tuple[int, ...], bigram_curve: torch.Tensor) -> LanguageComparison:
    """:class:`LanguageComparison` from per-position validation losses ``curves[kind][i]`` ``(T,)`` of seed
    ``seeds[i]`` (:func:`position_losses`), the parameter counts, the baselines and the bigram's per-position loss
    ``bigram_curve (T,)`` on the same windows (``bigram_losses(corpus, x, y).mean(0)``)."""
    if set(curves) != set(MIXERS) or any(len(curves[k]) != len(seeds) for k in MIXERS):
        raise ValueError(f"curves must hold one (T,) curve per seed {seeds} for each of {list(MIXERS)}")
    bigram_curve = torch.as_tensor(bigram_curve, dtype=torch.float64).cpu()
    if any(c.shape != bigram_curve.shape for k in MIXERS for c in curves[k]) or bigram_curve.ndim != 1:
        raise ValueError(f"bigram_curve {tuple(bigram_curve.shape)} and every curve must have the shape (T,)")
    if len(bigram_curve) < max(EARLY[1], LATE):
        raise ValueError(f"the window ({len(bigram_curve)}) must be at least {max(EARLY[1], LATE)} positions long")
    stat = lambda f: {k: tuple(float(f(c.double().cpu())) for c in curves[k]) for k in MIXERS}
    excess = lambda c: c - bigram_curve
    return LanguageComparison(tuple(seeds), stat(lambda c: c.mean()), {k: int(params[k]) for k in MIXERS},
                              baselines, tuple(bigram_curve.tolist()),
                              stat(lambda c: excess(c)[EARLY[0] - 1:EARLY[1]].mean()),
                              stat(lambda c: excess(c)[-LATE:].mean()))
