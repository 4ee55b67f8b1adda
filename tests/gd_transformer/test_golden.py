"""The course's code against the official implementation (golden data in tests/data, see GOLDEN_README.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from icl_course import gd_transformer as gt
from icl_course import train
from icl_course.models import LinearSelfAttention, LSAStack

TOL = 1e-5
NAMES = ("W_Q", "W_K", "W_V", "P")


@pytest.fixture(scope="module")
def agreement() -> dict[str, float]:
    return gt.golden_agreement()


@pytest.mark.parametrize("key", ["loss", "preds", *(f"{n}_traj" for n in NAMES), *(f"{n}_final" for n in NAMES),
                                 "trained_preds", "gd_preds"])
def test_matches_official_implementation(agreement, key):
    assert agreement[key] <= TOL, f"{key}: relative error {agreement[key]:.2e} > {TOL}"


def _rerun(golden, steps: int, *, transpose=False, torch_clip=False) -> dict[str, np.ndarray]:
    mats = [torch.from_numpy(golden[n].T.copy() if transpose else golden[n]) for n in NAMES]
    model = LSAStack([LinearSelfAttention.from_matrices(*mats)])
    batches = [(torch.from_numpy(golden["tokens"][t]), torch.from_numpy(golden["targets"][t])[:, None])
               for t in range(steps)]
    if torch_clip:  # PyTorch's clip adds 1e-6 to the norm — the golden data can tell
        original = train.clip_global_norm_
        train.clip_global_norm_ = lambda params, c: float(torch.nn.utils.clip_grad_norm_(params, c))
    try:
        train.fit(model, gt.icl_loss, batches, steps, clip=1e-3, progress=False)
    finally:
        if torch_clip:
            train.clip_global_norm_ = original
    return {n: m.numpy() for n, m in model.layer(0).matrices().items()}


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def golden_train():
    return gt.load_golden("train")


def test_a_transposed_layout_would_be_caught(golden_train):
    g = golden_train
    final = _rerun(g, 40, transpose=True)
    assert max(_rel(final[n], g[f"{n}_final"]) for n in NAMES) > 100 * TOL


def test_pytorchs_clip_epsilon_would_be_caught(golden_train):
    g = golden_train
    final = _rerun(g, 40, torch_clip=True)
    assert max(_rel(final[n], g[f"{n}_final"]) for n in NAMES) > TOL


def test_a_flipped_readout_sign_would_be_caught():
    t = gt.load_golden("trained")
    layer = LinearSelfAttention.from_matrices(*(torch.from_numpy(t[n]) for n in NAMES))
    with torch.no_grad():
        flipped = -gt.readout(layer(torch.from_numpy(t["tokens"])), 10)[:, 0].numpy()
    assert _rel(flipped, t["preds"]) > 1.0


def test_official_step_size_and_losses():
    t = gt.load_golden("trained")
    assert float(t["gd_P"]) == pytest.approx(float(t["gd_lr"]) / 10, rel=1e-12)
    # the official grid's 6.001 sits next to the closed-form optimum 200/33
    assert abs(float(t["gd_lr"]) - 200 / 33) < 0.1
    layer = LinearSelfAttention.from_matrices(*(torch.from_numpy(t[n]) for n in NAMES))
    with torch.no_grad():
        pred = gt.readout(layer(torch.from_numpy(t["tokens"])), 10)
    loss = float(0.5 * ((pred[:, 0] - torch.from_numpy(t["targets"])) ** 2).mean())
    assert loss == pytest.approx(float(t["eval_loss"]), rel=TOL)


def test_load_golden_rejects_unknown_names():
    with pytest.raises(ValueError, match="name"):
        gt.load_golden("nope")
