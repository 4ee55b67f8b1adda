"""Part III: agreement with the official implementation (golden data of the official JAX code, step for step).

References
----------
von Oswald et al. (2022), official code ``transformers_learn_icl_by_gd`` (notebook ``constructed_token_setup``);
the golden files and how they were made: ``icl_course/data/VONOSWALD2022_GOLDEN.md``.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import data, metrics, train
from ..models import LinearSelfAttention, LSAStack
from ..query import icl_loss, predict, readout
from ._common import PAPER, constructed_lsa

__all__ = ["load_golden", "golden_agreement"]

_NAMES = {"train": "vonoswald2022_train", "trained": "vonoswald2022_trained"}


def load_golden(name: str) -> dict[str, np.ndarray]:
    """The golden data of the one-layer experiment: ``"train"`` (40 official training steps) or ``"trained"``
    (an officially trained layer and GD on fixed tasks); :func:`icl_course.data.load_golden` does the loading."""
    if name not in _NAMES:
        raise ValueError(f"name must be one of {sorted(_NAMES)}, got {name!r}")
    return data.load_golden(_NAMES[name])


def golden_agreement() -> dict[str, float]:
    """Largest relative errors of this package against the official implementation's golden data.

    Re-runs the official 40-step training (same initial weights, same batches, Adam + exact clip) through
    :func:`train.fit` and compares per-step losses, predictions and weights, then checks the official trained
    model's and GD's predictions through :meth:`LinearSelfAttention.from_matrices` and :func:`constructed_lsa`.
    Relative errors use norms over the compared arrays (per step for trajectories).
    """
    g = load_golden("train")
    names = ("W_Q", "W_K", "W_V", "P")
    model = LSAStack([LinearSelfAttention.from_matrices(*(torch.from_numpy(g[n]) for n in names))])
    steps = len(g["loss"])
    batches = [(torch.from_numpy(g["tokens"][t]), torch.from_numpy(g["targets"][t])[:, None]) for t in range(steps)]
    preds, weights = [], {n: [] for n in names}

    def record(step, model, batch, loss):
        with torch.no_grad():
            preds.append(predict(model, batch[0], PAPER.dx)[:, 0].numpy())
        for n, m in model.layer(0).matrices().items():
            weights[n].append(m.numpy().copy())

    hist = train.fit(model, icl_loss, batches, steps, lr=float(g["lr"]), betas=(float(g["b1"]), float(g["b2"])),
                     eps=float(g["eps"]), clip=float(g["clip_global_norm"]), on_step=record, progress=False)
    rel = metrics.relative_error
    out = {"loss": rel(np.array(hist.loss)[:, None], g["loss"][:, None], dim=1),  # per step
           "preds": rel(np.stack(preds), g["preds"], dim=1)}
    for n in names:
        out[f"{n}_traj"] = rel(np.stack(weights[n]).reshape(steps, -1), g[f"{n}_traj"].reshape(steps, -1), dim=1)
        out[f"{n}_final"] = rel(model.layer(0).matrices()[n].numpy(), g[f"{n}_final"])
    t = load_golden("trained")
    trained = LinearSelfAttention.from_matrices(*(torch.from_numpy(t[n]) for n in names))
    tokens = torch.from_numpy(t["tokens"])
    with torch.no_grad():
        out["trained_preds"] = rel(readout(trained(tokens), PAPER.dx)[:, 0].numpy(), t["preds"])
        gd_model = constructed_lsa(PAPER.dx, PAPER.dy, PAPER.n_context, float(t["gd_lr"]))
        out["gd_preds"] = rel(readout(gd_model(tokens), PAPER.dx)[:, 0].numpy(), t["gd_preds"])
    return out
