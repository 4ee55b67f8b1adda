"""The course's one plotting style: a colour-blind-safe palette (Okabe–Ito) and a few figure helpers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import torch

__all__ = ["PALETTE", "use_style", "training_curves", "heatmaps", "ood_panels", "line_panel"]

PALETTE = {
    "tf": "#0072B2",  # blue: trained transformer
    "gd": "#D55E00",  # vermillion: gradient descent
    "constructed": "#009E73",  # bluish green: hand-built layer
    "alt": "#E69F00",  # orange
    "softmax": "#CC79A7",  # reddish purple
    "include_query": "#56B4E9",  # sky blue
    "grey": "#999999",
    "black": "#000000",
}
"""Okabe & Ito (2008) colours, readable with every common colour-vision deficiency."""


def use_style() -> None:
    """Apply the course style to matplotlib (called by the chapters' set-up cell)."""
    mpl.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 110, "figure.figsize": (7.5, 3.4), "figure.constrained_layout.use": True,
        "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 9, "legend.frameon": False,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
        "axes.prop_cycle": mpl.cycler(color=list(PALETTE.values())), "image.cmap": "RdBu_r",
    })


_LINESTYLES, _MARKERS = ("-", "--", ":", "-."), ("o", "s", "^", "D")


def _color(i: int, name: str, colors: Mapping[str, str] | None) -> str:
    """An explicit colour for ``name`` (a palette key or a hex code), else the palette in order."""
    if colors and name in colors:
        return PALETTE.get(colors[name], colors[name])
    return list(PALETTE.values())[i % len(PALETTE)]


def training_curves(ax, curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
                    references: Mapping[str, float] | None = None, *, colors: Mapping[str, str] | None = None,
                    log: bool = False, ylabel: str = "loss"):
    """Curves ``label -> (steps, values)`` and dashed reference lines ``label -> value``.

    ``colors`` maps a label to a :data:`PALETTE` key (default: the palette in order; references in grey tones
    after the first, which is GD's colour).
    """
    for i, (name, (steps, values)) in enumerate(curves.items()):
        ax.plot(steps, values, label=name, color=_color(i, name, colors), ls=_LINESTYLES[i % 4])
    for j, (name, value) in enumerate((references or {}).items()):
        color = _color(0, name, colors) if colors and name in colors else (PALETTE["gd"], PALETTE["grey"],
                                                                              PALETTE["black"])[j % 3]
        ax.axhline(value, ls="--", lw=1.2, color=color, label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend()
    return ax


def heatmaps(fig, matrices: Mapping[str, torch.Tensor | np.ndarray], *, ncols: int | None = None, symmetric=True):
    """One heat map per named matrix on a shared, symmetric colour scale per matrix; returns the axes."""
    names = list(matrices)
    ncols = ncols or len(names)
    axes = fig.subplots(int(np.ceil(len(names) / ncols)), ncols, squeeze=False).ravel()
    for ax, name in zip(axes, names):
        m = np.asarray(matrices[name].detach().cpu() if isinstance(matrices[name], torch.Tensor) else matrices[name])
        vmax = float(np.abs(m).max()) or 1.0
        im = ax.imshow(m, cmap="RdBu_r", vmin=-vmax if symmetric else None, vmax=vmax)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        fig.colorbar(im, ax=ax, shrink=0.8)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    return axes


def line_panel(ax, x: Sequence[float], series: Mapping[str, Sequence[float]], *, xlabel: str, ylabel: str,
               colors: Mapping[str, str] | None = None, log: bool = False, markers: bool = True):
    """Several labelled series against one x axis; line styles and markers differ so overlapping lines stay visible."""
    for i, (name, ys) in enumerate(series.items()):
        ax.plot(x, ys, ls=_LINESTYLES[i % 4], marker=_MARKERS[i % 4] if markers else None, ms=7 - 1.5 * (i % 4),
                label=name, color=_color(i, name, colors))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend()
    return ax


def ood_panels(fig, rows: Sequence[dict], names: Mapping[str, str]):
    """Loss vs scale for input range and teacher scale (rows of ``gd_transformer.ood_sweep``).

    ``names`` maps each GD step-size key of the rows to its legend label.
    """
    axes = fig.subplots(1, 2)
    for ax, kind, label in zip(axes, ("input_range", "teacher_scale"), ("input range r", "teacher scale α")):
        sel = [r for r in rows if r["kind"] == kind]
        series = {"trained transformer": [r["loss_tf"] for r in sel]}
        series.update({label_: [r[f"loss_gd[{key}]"] for r in sel] for key, label_ in names.items()})
        line_panel(ax, [r["scale"] for r in sel], series, xlabel=label, ylabel="loss", log=True)
    return axes
