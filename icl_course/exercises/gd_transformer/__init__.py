"""Exercises of Part III, one module per chapter; every checker is re-exported here, so a chapter notebook's
``from icl_course.exercises.gd_transformer import check_gd_step`` works whichever module holds it."""

from __future__ import annotations

from .deeper_gdpp import check_curvature_correction, check_gdpp_predict, check_gdpp_weights, check_read_gamma
from .nonlinear_features import check_feature_gd_layer, check_kernel_routes, check_sine_gd_predict
from .one_layer_one_step import (
    check_gd_step,
    check_implicit_model,
    check_optimal_step_size,
    check_proposition1_weights,
    check_read_step_size,
)
from .preconditioned import check_optimal_preconditioner, check_preconditioned_step, check_preconditioner_from_weights
from .standard_tokens import check_input_copy_weights, check_pair_attention, check_to_standard_tokens

__all__ = [
    "check_gd_step", "check_proposition1_weights", "check_optimal_step_size", "check_read_step_size",
    "check_implicit_model", "check_gdpp_weights", "check_curvature_correction", "check_read_gamma",
    "check_gdpp_predict", "check_preconditioned_step", "check_optimal_preconditioner",
    "check_preconditioner_from_weights", "check_sine_gd_predict", "check_kernel_routes", "check_feature_gd_layer",
    "check_to_standard_tokens", "check_input_copy_weights", "check_pair_attention",
]
