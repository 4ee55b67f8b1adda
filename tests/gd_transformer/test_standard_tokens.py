"""Part III, chapter "Standard tokens: copy, then descend": the layout, Proposition 3, training (no long runs)."""

from __future__ import annotations

import pytest
import torch

from icl_course import gd_transformer as gt
from icl_course import runtime, tasks
from icl_course.models import LSAStack, StandardTokenLSA
from tests.helpers import F64


def test_standard_tokens_layout():
    b = tasks.sample_linear_regression(3, 4, 2, 1, generator=runtime.generator(11), dtype=F64)
    S = tasks.standard_tokens(b.x, b.y, b.x_query)
    assert S.shape == (3, 9, 2 + 1 + 9)
    assert torch.equal(S[:, 0:8:2, :2], b.x) and torch.equal(S[:, 1:8:2, 2:3], b.y)
    assert torch.equal(S[:, -1, :2], b.x_query)
    assert float(S[:, 0:8:2, 2].abs().max()) == 0 and float(S[:, 1:8:2, :2].abs().max()) == 0
    assert torch.equal(S[0, :, 3:], torch.eye(9, dtype=F64))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_copy_then_gd_is_one_gd_step(seed):
    assert gt.copy_gd_errors([40.0], seed=seed)[40.0] < 1e-12


def test_copy_error_falls_with_the_softmax_sharpness():
    errs = gt.copy_gd_errors([5.0, 10.0, 20.0, 30.0])
    values = list(errs.values())
    assert all(b < a / 10 for a, b in zip(values, values[1:])) and values[0] > 1e-2


def test_constructed_copy_layer_reads_the_previous_token():
    model = gt.constructed_copy_gd(3, 1, 5, 0.5, dtype=F64)
    b = tasks.sample_linear_regression(8, 5, 3, generator=runtime.generator(12), dtype=F64)
    scores = gt.copy_scores(gt.copy_attention(model, b))
    assert scores["y_reads_x"] == pytest.approx(1.0, abs=1e-12)
    # only the first token has no predecessor: it attends uniformly (1/2N) to all 2N keys
    assert scores["x_reads_y"] == pytest.approx(0.1 / 5, abs=1e-12)
    assert scores["uniform"] == pytest.approx(0.1)


def test_standard_token_model_checks_its_inputs():
    with pytest.raises(ValueError, match="dx \\+ dy \\+ 2N \\+ 1 = 32"):
        StandardTokenLSA(LSAStack.new(11), 10, 1, 10)
    model = gt.new_standard_model()
    with pytest.raises(ValueError, match="n_context=10"):
        model(torch.zeros(2, 5, 11))
    with pytest.raises(ValueError, match="2N\\+1, 2N"):
        gt.copy_scores(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="scale"):
        gt.train_standard_tokens(scale="huge")


def test_train_standard_tokens_runs():
    run = gt.train_standard_tokens(seed=0, max_steps=60, eval_size=300)
    assert run.history.steps == 60 and run.escape is None and len(run.history.eval_loss) == 3
