"""The explorers build, draw and redraw without a browser (their figures are checked by eye in the book)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import ipywidgets as W  # noqa: E402
import pytest  # noqa: E402

from icl_course import tasks, widgets  # noqa: E402


@pytest.mark.parametrize("make", [
    lambda b: widgets.step_size_explorer(b, 6.06, eta_trained=6.0),
    lambda b: widgets.gamma_explorer(b, 19.0, 0.2, n_layers=3),
])
def test_explorer_builds_and_redraws(make):
    batch = tasks.regression_eval_set(64, 10, 10, seed=0)
    box = make(batch)
    assert isinstance(box, W.VBox)
    slider, image = box.children
    assert isinstance(slider, W.FloatSlider) and isinstance(image, W.Image)
    first = bytes(image.value)
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    slider.value = slider.min  # differs from the initial value: triggers a redraw through the observer
    second = bytes(image.value)
    assert second[:8] == first[:8] and second != first


def test_prompt_explorer_redraws_on_either_slider():
    calls = []

    def render(k, draw):
        calls.append((k, draw))
        return f"<pre>k={k} draw={draw}</pre>"

    box = widgets.prompt_explorer(render, k_max=8, n_draws=3, k=2)
    (k_slider, d_slider), html = box.children[0].children, box.children[1]
    assert isinstance(html, W.HTML) and html.value == "<pre>k=2 draw=0</pre>"
    k_slider.value = 5
    d_slider.value = 2
    assert html.value == "<pre>k=5 draw=2</pre>" and calls == [(2, 0), (5, 0), (5, 2)]
    with pytest.raises(ValueError, match="k_max"):
        widgets.prompt_explorer(render, k_max=0, n_draws=3)
