"""ipywidgets explorers: live in Jupyter and Colab; the static book shows their saved state."""

from __future__ import annotations

import io

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch

from . import metrics, plots, solvers
from .tasks import RegressionBatch

__all__ = ["step_size_explorer", "gamma_explorer", "prompt_explorer"]


def _explorer(slider: W.FloatSlider, render) -> W.Widget:
    """A slider above an image of ``render(value)``'s figure, redrawn on every change.

    The figure is sent as a PNG ``Image`` widget rather than through an ``Output`` widget: its state is plain
    data (saved in the notebook for the static book) and headless execution never has to mimic a frontend.
    """
    image = W.Image(format="png")

    def draw(value: float) -> None:
        fig = render(value)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        image.value = buf.getvalue()

    slider.observe(lambda change: draw(change["new"]), names="value")
    draw(slider.value)
    return W.VBox([slider, image])


def step_size_explorer(batch: RegressionBatch, eta_star: float, eta_trained: float | None = None,
                       eta_max: float = 14.0) -> W.Widget:
    """A slider for the GD step size η: population loss curve, eval-set loss, and predictions vs targets.

    Shows why η* is optimal and where the trained transformer's η_eff sits on the same curve.
    """
    dx, n = batch.dx, batch.x.shape[1]
    grid = np.linspace(0.0, eta_max, 141)
    curve = [solvers.gd_one_step_loss(e, dx, n) for e in grid]

    def render(eta: float):
        with torch.no_grad():
            pred = solvers.predict(solvers.gd(batch.x, batch.y, eta), batch.x_query)
        loss = float(metrics.half_squared_error(pred, batch.y_query))
        fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
        a.plot(grid, curve, color=plots.PALETTE["gd"], label="population L(η)")
        a.axvline(eta_star, ls="--", color=plots.PALETTE["grey"], label=f"η* = {eta_star:.3f}")
        if eta_trained is not None:
            a.axvline(eta_trained, ls=":", color=plots.PALETTE["tf"], label=f"trained η_eff = {eta_trained:.3f}")
        a.plot([eta], [loss], "o", color=plots.PALETTE["black"], label=f"eval tasks: {loss:.4f}")
        a.set(xlabel="step size η", ylabel="loss after one GD step", ylim=(0, 1.2 * max(curve[0], loss)))
        a.legend()
        m = min(500, pred.shape[0])
        b.scatter(batch.y_query[:m, 0], pred[:m, 0], s=6, alpha=0.5, color=plots.PALETTE["gd"])
        lim = float(batch.y_query[:m].abs().max())
        b.plot([-lim, lim], [-lim, lim], color=plots.PALETTE["grey"], lw=1)
        b.set(xlabel="target y_q", ylabel="GD prediction", title=f"η = {eta:.2f}")
        return fig

    return _explorer(W.FloatSlider(value=round(eta_star, 2), min=0.0, max=eta_max, step=0.1, description="η",
                                   continuous_update=False), render)


def gamma_explorer(batch: RegressionBatch, lr: float, gamma: float, n_layers: int = 3,
                   gamma_max: float = 0.4) -> W.Widget:
    """A slider for GD++'s curvature correction γ: the eigenvalue map and the K-step loss at a fixed η."""
    lam = torch.linalg.eigvalsh(batch.x.transpose(1, 2) @ batch.x)  # (B, dx)
    grid = np.linspace(0.0, float(lam.max()), 200)

    def render(g: float):
        with torch.no_grad():
            pred = solvers.gd_plus_plus(batch.x, batch.y, batch.x_query, lr, g, n_layers)
        loss = float(metrics.half_squared_error(pred, batch.y_query))
        fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
        a.plot(grid, grid, color=plots.PALETTE["grey"], lw=1, label="identity")
        a.plot(grid, grid * (1 - g * grid) ** 2, color=plots.PALETTE["gd"], label="λ(1 − γλ)²")
        a.set(xlabel="eigenvalue λ of XᵀX", ylabel="after one correction", title=f"γ = {g:.3f}")
        a.legend()
        b.hist(lam.flatten().numpy(), bins=40, alpha=0.5, color=plots.PALETTE["tf"], label="before")
        mapped = (lam * (1 - g * lam) ** 2).flatten().numpy()
        b.hist(mapped, bins=40, alpha=0.5, color=plots.PALETTE["gd"], label="after one layer")
        b.set(xlabel="eigenvalue", ylabel="count", title=f"GD++-{n_layers} loss at η = {lr:.2f}: {loss:.4f}")
        b.legend()
        return fig

    return _explorer(W.FloatSlider(value=round(gamma, 3), min=0.0, max=gamma_max, step=0.005, description="γ",
                                   continuous_update=False, readout_format=".3f"), render)


def prompt_explorer(render, *, k_max: int, n_draws: int, k: int = 4) -> W.Widget:
    """Two sliders — the number of demonstrations ``k`` (0 … ``k_max``) and which draw of them (0 … ``n_draws - 1``)
    — above the HTML that ``render(k, draw)`` returns (e.g. the prompt and the model's prediction), recomputed on
    every change. The HTML is plain widget state, so the static book shows the saved view."""
    k_max, n_draws = int(k_max), int(n_draws)
    if k_max < 1 or n_draws < 1 or not 0 <= k <= k_max:
        raise ValueError(f"need k_max >= 1, n_draws >= 1 and 0 <= k <= k_max, got {k_max}, {n_draws}, {k}")
    k_slider = W.IntSlider(value=k, min=0, max=k_max, description="k")
    d_slider = W.IntSlider(value=0, min=0, max=n_draws - 1, description="draw")
    html = W.HTML()

    def draw(_=None) -> None:
        html.value = render(k_slider.value, d_slider.value)

    k_slider.observe(draw, names="value")
    d_slider.observe(draw, names="value")
    draw()
    return W.VBox([W.HBox([k_slider, d_slider]), html])
