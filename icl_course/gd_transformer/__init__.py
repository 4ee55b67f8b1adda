"""Part III — "Transformers learn in-context by gradient descent" (von Oswald et al. 2022).

One module per chapter notebook (``book/part3_<module>.ipynb``), what only these chapters share in ``_common``,
and the agreement with the official implementation in ``golden``. Every public name is re-exported here, so
``from icl_course import gd_transformer as gt`` and ``gt.constructed_lsa`` read the same whichever module holds it.

- :mod:`.one_layer_one_step` — Proposition 1, the learned step size, interpolation, out of distribution.
- :mod:`.fixed_tasks` — the same chapter's layer trained on a fixed, finite set of tasks.
- :mod:`.deeper_gdpp` — GD++ and deeper/recurrent models.
- :mod:`.preconditioned` — anisotropic inputs and the optimal preconditioner.
- :mod:`.nonlinear_features` — Proposition 2: GD on learned features (sine tasks).
- :mod:`.standard_tokens` — Proposition 3: a softmax copy layer, then GD.
- :mod:`.golden` — step-for-step agreement with the official JAX code.
"""

from __future__ import annotations

from .. import _deprecation, query, tasks, train
from ..query import icl_loss, predict, readout
from ..tasks import make_tokens
from ..train import TrainedRun
from ._common import (
    ONE_LAYER,
    PAPER,
    ParallelHeads,
    RegressionSettings,
    compare_with_gd,
    constructed_lsa,
    gd_predict,
    pool_stream,
    train_lsa,
    weight_products,
)
from .deeper_gdpp import (
    RECURRENT_AFTER_ESCAPE,
    GDScalars,
    compare_with_gdpp,
    constructed_gdpp,
    depth_sweep,
    effective_gamma,
    fit_gd_scalars,
    gd_vs_gdpp,
    implicit_inverse,
    neumann_inverse,
    newton_inverse,
    polynomial_degree,
    polynomial_predict,
    spectra,
    train_recurrent,
)
from .fixed_tasks import FIXED_TASK_BATCH, FIXED_TASK_SIZES, FIXED_TASK_STEPS, fixed_task_sweep, prediction_rank
from .golden import golden_agreement, load_golden
from .nonlinear_features import (
    EMBEDDINGS,
    SINE,
    FeatureGD,
    JointEmbedding,
    JointFeatureGD,
    JointFeatureLSA,
    SineSettings,
    compare_sine_models,
    effective_kernel,
    feature_gd_as_lsa,
    initial_function,
    joint_gd_as_lsa,
    joint_proposition2_errors,
    kernel_explained,
    least_squares_sine,
    new_feature_model,
    oracle_feature_loss,
    oracle_sine,
    proposition2_errors,
    sine_prior_mean,
    target_sensitivities,
    train_sine,
)
from .one_layer_one_step import (
    ONE_LAYER_STEPS,
    OTHER_DISTRIBUTIONS,
    damped_rollout,
    effective_lr_over_n,
    gauge_matched_constructed,
    interpolate_layers,
    interpolation_losses,
    ood_log_ratios,
    ood_sweep,
    optimal_lr_monte_carlo,
    other_distributions_sweep,
    product_layer,
    proposition1_errors,
    rollout_losses,
    sample_other_inputs,
    softmax_heads_capacity,
)
from .preconditioned import (
    ANISOTROPIC_AFTER_ESCAPE,
    anisotropic_setting,
    effective_preconditioner,
    margin_over_gd,
    preconditioner_losses,
    preconditioner_monte_carlo,
    preconditioner_stationarity,
    train_anisotropic,
)
from .standard_tokens import (
    COPY_DIRECTIONS,
    STANDARD,
    CausalSelfAttention,
    StandardSettings,
    constructed_copy_gd,
    constructed_label_copy_gd,
    copy_attention,
    copy_gd_errors,
    copy_layer,
    copy_readout,
    copy_scores,
    new_standard_model,
    train_standard_tokens,
    with_gd_step,
)

__all__ = [
    # shared by the chapters (and the fixed names of the design)
    "make_tokens", "readout", "predict", "icl_loss", "constructed_lsa", "gd_predict", "weight_products",
    "train_lsa", "compare_with_gd", "TrainedRun", "RegressionSettings", "ONE_LAYER", "PAPER", "ParallelHeads",
    "pool_stream",
    # one layer, one step
    "ONE_LAYER_STEPS", "effective_lr_over_n", "product_layer", "gauge_matched_constructed", "interpolate_layers",
    "ood_sweep", "ood_log_ratios", "interpolation_losses", "proposition1_errors", "optimal_lr_monte_carlo",
    "softmax_heads_capacity",
    "OTHER_DISTRIBUTIONS", "sample_other_inputs", "other_distributions_sweep", "damped_rollout", "rollout_losses",
    "FIXED_TASK_SIZES", "FIXED_TASK_STEPS", "FIXED_TASK_BATCH", "fixed_task_sweep", "prediction_rank",
    # golden
    "load_golden", "golden_agreement",
    # deeper layers: GD++
    "constructed_gdpp", "effective_gamma", "GDScalars", "fit_gd_scalars", "spectra", "RECURRENT_AFTER_ESCAPE",
    "train_recurrent", "depth_sweep", "gd_vs_gdpp", "compare_with_gdpp",
    "implicit_inverse", "neumann_inverse", "newton_inverse", "polynomial_predict", "polynomial_degree",
    # anisotropic inputs
    "effective_preconditioner", "preconditioner_monte_carlo", "preconditioner_stationarity", "anisotropic_setting",
    "preconditioner_losses", "margin_over_gd",
    "ANISOTROPIC_AFTER_ESCAPE", "train_anisotropic",
    # non-linear features
    "SineSettings", "SINE", "FeatureGD", "feature_gd_as_lsa", "proposition2_errors", "new_feature_model",
    "train_sine", "oracle_feature_loss", "effective_kernel", "kernel_explained",
    "JointEmbedding", "JointFeatureLSA", "JointFeatureGD", "joint_gd_as_lsa", "joint_proposition2_errors",
    "initial_function", "EMBEDDINGS", "target_sensitivities", "oracle_sine", "compare_sine_models",
    "sine_prior_mean", "least_squares_sine",
    # standard tokens
    "StandardSettings", "STANDARD", "constructed_copy_gd", "copy_gd_errors", "new_standard_model",
    "train_standard_tokens", "copy_attention", "copy_scores",
    "COPY_DIRECTIONS", "copy_layer", "constructed_label_copy_gd", "CausalSelfAttention", "with_gd_step",
    "copy_readout",
]

__getattr__ = _deprecation.module_getattr(__name__, {
    "effective_lr": ("gd_transformer.effective_lr_over_n (it returns η_eff / N)", effective_lr_over_n),
    "lsa_predict": ("icl_course.query.predict (any query-token model)", query.predict),
    "eval_batch": ("icl_course.tasks.regression_eval_set (a fixed evaluation set)", tasks.regression_eval_set),
    "token_stream": ("icl_course.tasks.regression_stream", tasks.regression_stream),
    "sine_eval": ("icl_course.tasks.sine_eval_set (a fixed evaluation set)", tasks.sine_eval_set),
    "sine_stream": ("icl_course.tasks.sine_stream", tasks.sine_stream),
    "TrainedLSA": ("icl_course.train.TrainedRun", train.TrainedRun),
})
