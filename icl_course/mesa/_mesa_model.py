"""The one-mesa-layer model and its training recipe, shared by the chapters that train it ("The mesa layer" and
"Few-shot learning by prompting"); :mod:`.mesa_layer` re-exports it.

References
----------
von Oswald et al. (2023) (a single mesa layer trained on the constructed tokens); official ``configs/config.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import runtime, train
from ..causal import CausalStack
from ._common import DYNAMICS, train_sequence_model
from ._mesa_attention import MesaLayer

__all__ = ["MesaSettings", "MESA", "new_mesa_model", "train_mesa"]


@dataclass(frozen=True)
class MesaSettings:
    """The one-mesa-layer experiment: ``n_heads`` heads with queries, keys and values of size ``key_size`` on the full
    tokens ``(0, s_t, s_t, s_{t−1})``; weights ``N(0, init_std²)``, ridge ``lam_init`` (the official ``lambdas = 1``,
    i.e. ridge 1); Adam (AdamW with ``weight_decay``) at ``lr`` after an element-wise gradient clip at ``clip``;
    ``activation_clip`` as in ``OneLayerSettings`` (off: it is a non-linearity); the training curve is tracked on
    ``eval_size`` sequences."""

    n_heads: int = 1
    key_size: int = 10
    lam_init: float = 1.0
    masked: bool = False
    batch_size: int = 32
    steps: int = 3000
    lr: float = 1e-3
    clip: float = 1.0
    init_std: float = 2e-4
    activation_clip: float | None = None
    weight_decay: float = 0.0
    warmup: int = 0
    eval_size: int = 500
    method: str = "recurrent"


MESA = runtime.Scales(
    cpu=MesaSettings(),
    paper=MesaSettings(batch_size=256, steps=20_000, lr=4e-4, weight_decay=0.05, warmup=1000, eval_size=10_000),
)
"""``cpu``: chapter 1's optimiser (Adam at 1e-3, element-wise clip 1) for 3,000 steps of 32 sequences — the CPU time
of chapter 1's 1,500 steps of 128 (about 45 CPU-seconds), spent on more updates: the layer's ridge shrinks only as
fast as Adam grows the key weights, so the number of updates is what counts. Measured (2,000 sequences): 3,000 × 32
ends 2.8–2.9 % above ridge (j ≤ t) on seeds 0, 1 and 2, with the largest loss for t ≥ 15 at 0.0081, 0.0081 and
0.0083; 1,500 × 128 ends 4.7–5.2 % above it with 0.017 at t = 15 (seeds 0, 1). Claim M4's bound (0.01 for t ≥ 15) is
a property of this budget, set after seeing seeds 0 and 1: it sits about 20 % above the worst seed, some eight times
the seed-to-seed spread (0.0002), and a budget that leaves the ridge larger misses it. ``paper``: the official
optimiser (AdamW, weight decay 0.05, batch 256, warm-up and cosine decay over 20,000 steps) at the learning rate its
config suggests for the mesa layer (``configs/config.py``: "for mesa 4e-4"), meant for a GPU."""


def new_mesa_model(settings: MesaSettings = MESA.cpu, *, seed: int = 0, dim: int = DYNAMICS.dim) -> CausalStack:
    """A freshly initialised one-mesa-layer model on tokens of width ``4·dim``."""
    layer = MesaLayer(4 * dim, settings.n_heads, settings.key_size, settings.key_size, lam_init=settings.lam_init,
                      method=settings.method, init_std=settings.init_std, generator=runtime.generator(seed))
    return CausalStack([layer], masked_dims=2 * dim if settings.masked else 0, clip=settings.activation_clip)


def _train(model: nn.Module, cfg: MesaSettings, *, seed: int, steps: int | None, eval_size: int | None,
           device: str | torch.device | None, progress: bool | None, desc: str) -> train.TrainedRun:
    n = steps or cfg.steps
    schedule = train.warmup_cosine(cfg.warmup, n, 1e-5 / cfg.lr) if cfg.warmup else None
    return train_sequence_model(model, seed=seed, steps=n, batch_size=cfg.batch_size, lr=cfg.lr, clip=cfg.clip,
                                masked=cfg.masked, eval_size=eval_size or cfg.eval_size,
                                weight_decay=cfg.weight_decay, lr_schedule=schedule, device=device,
                                progress=progress, desc=desc)


def train_mesa(*, seed: int = 0, scale: str = "cpu", steps: int | None = None, eval_size: int | None = None,
               device: str | torch.device | None = None, progress: bool | None = None) -> train.TrainedRun:
    """Train one mesa layer with :data:`MESA`'s settings (weights ``seed``, stream ``seed + 1``, evaluation set
    ``seed + 2``). About 47 CPU-seconds on one thread for the ``cpu`` scale.

    References
    ----------
    von Oswald et al. (2023) (a single mesa layer trained on the constructed tokens); Part IV, "The mesa
    layer" (claim M4).
    """
    cfg = MESA.pick(scale)
    return _train(new_mesa_model(cfg, seed=seed), cfg, seed=seed, steps=steps, eval_size=eval_size, device=device,
                  progress=progress, desc=f"mesa layer seed {seed}")
