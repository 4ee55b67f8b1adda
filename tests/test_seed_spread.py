"""The five-seed table of the Reproducibility page (``scripts/seed_spread.py``): its rendering, and that the page
shows exactly what the committed results say."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "seed_spread.py"
spec = importlib.util.spec_from_file_location("seed_spread", SCRIPT)
seed_spread = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seed_spread)


def _result(seed, scale):
    claims = {
        "E2c": 1.0 + scale, "E2d": {"model_cos": 0.99}, "E3": {"at_eta_star": 0.01 * scale}, "E3b": 0.01,
        "E13": {"largest_gap": 0.03, "at_075": 0.03},
        "E14": {"ratio_largest": 1.03, "cos_largest": 0.99, "ratio_control": 1.004, "memorised_over_gd": 0.01,
                "monotone": 1.0, "peak_loss": 4.0, "peak_tasks": 128.0},
        "E5": [{"gd": 0.15, "gdpp": 0.11}, {"gd": 0.13, "gdpp": 0.09 * scale}],
        "E6": {"loss_tf": 0.08, "loss_gd3": 0.13, "loss_gdpp3": 0.08 / (1 + scale), "escape": 250.0 * seed,
               "cos_gd3": 0.96, "cos_gdpp3": 0.99},
        "E7": [0.08, 0.07, 0.06, 0.05, 0.05, 0.04], "E10": {"max_z": 2.0}, "E11": {"loss_tf": 0.27, "loss_star": 0.27,
                                                                                "loss_gd_best": 0.29, "margin": 0.02,
                                                                                "margin_se": 0.002},
        "E8": {"loss_tf": 0.0024, "loss_gd": 0.0027, "loss_oracle": 0.0023},
        "E8u": {"loss_tf": 0.005, "loss_gd": 0.003, "loss_oracle": 0.0023},
        "E12b": {"loss_tf": 0.21, "loss_gd": 0.2, "copy": 0.7, "escape": 1000.0, "model_cos": 0.99},
    }
    return {"seed": seed, "claims": {k: {"status": "PASS", "value": v, "shown": ""} for k, v in claims.items()},
            "extra": {"escape step, anisotropic": 100.0 * seed, "copy direction, standard tokens": "x reads y"}}


def test_render_gives_min_median_max_and_every_seed():
    text = seed_spread.render([_result(2, 0.03), _result(0, 0.01), _result(1, 0.02)])
    assert text.startswith(seed_spread.START) and text.endswith(seed_spread.END)
    assert "| E2c | PASS | PASS | PASS |" in text
    assert "| E2c  L_TF / L_GD-1 | 1.010 | 1.020 | 1.030 | 1.010, 1.020, 1.030 |" in text  # sorted by seed
    assert "| escape step, anisotropic | 0 | 100 | 200 | 0, 100, 200 |" in text
    assert "| copy direction, standard tokens | | | | x reads y, x reads y, x reads y |" in text


def test_page_shows_the_committed_results():
    results = seed_spread.load()
    if not results:
        pytest.skip("no results committed yet")
    page = seed_spread.PAGE.read_text(encoding="utf-8")
    assert seed_spread.render(results) in page, "run: python scripts/seed_spread.py page"
    assert sorted(r["seed"] for r in results) == [0, 1, 2, 3, 4]
