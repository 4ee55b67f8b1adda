"""Bad input to Part III's functions gets a clear error naming the argument (audit of the test suite, §4)."""

import pytest
import torch

from icl_course import gd_transformer as gt
from tests.helpers import F64, batch

DX, N = 10, 10


@pytest.fixture(scope="module")
def layer():
    return gt.constructed_lsa(DX, 1, N, 1.0, dtype=F64).layer(0)


@pytest.mark.parametrize("fn", [gt.effective_lr_over_n, gt.effective_gamma,
                                lambda layer, dx: gt.effective_preconditioner(layer, dx, N),
                                lambda layer, dx: gt.gauge_matched_constructed(layer, dx, 0.5)])
@pytest.mark.parametrize("dx, error", [(11, ValueError), (20, ValueError), (0, ValueError), (-1, ValueError),
                                       (2.5, TypeError)])
def test_a_dx_that_does_not_split_the_tokens_is_refused(fn, layer, dx, error):
    with pytest.raises(error, match="dx"):
        fn(layer, dx)


def test_effective_preconditioner_needs_a_positive_context_length(layer):
    with pytest.raises(ValueError, match="n_context"):
        gt.effective_preconditioner(layer, DX, 0)


@pytest.mark.parametrize("lr, error, match", [([0.1, -5.0], ValueError, r"lr\[1\]"), ("ab", TypeError, "str"),
                                              ([0.1, float("nan")], ValueError, r"lr\[1\]")])
def test_per_layer_step_sizes_are_checked_one_by_one(lr, error, match):
    with pytest.raises(error, match=match):
        gt.constructed_lsa(DX, 1, N, lr, n_layers=2)


def test_an_escape_threshold_without_steps_after_it_is_refused():
    with pytest.raises(ValueError, match="after_escape"):
        gt.train_lsa(steps=1, escape_loss=0.3)


def test_gd_scalars_check_tokens_and_depth():
    model = gt.GDScalars(DX, 2)
    tokens = batch(3, N, DX, 1, seed=0).tokens().float()
    with pytest.raises(ValueError, match="n_layers"):
        model(tokens, n_layers=0)
    with pytest.raises(ValueError, match="E must have shape"):
        model(tokens[..., :DX])  # no y-slot
    with pytest.raises(ValueError, match="E must"):
        model(tokens[0])
    assert model(tokens).shape == (3, 1, DX + 1)


def test_ood_log_ratios_of_no_rows_is_refused():
    with pytest.raises(ValueError, match="rows"):
        gt.ood_log_ratios([])


def test_kernel_share_of_constant_predictions_is_refused():
    sine = gt.tasks.sine_eval_set(4, seed=0)
    model = gt.new_feature_model("lsa", seed=0)
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    with pytest.raises(ValueError, match="same on every task"):
        gt.kernel_explained(model, sine)
