"""Part IV — "Uncovering mesa-optimization algorithms in Transformers" (von Oswald et al. 2023).

One module per chapter notebook (``book/part4_<module>.ipynb``), what only these chapters share in ``_common``.
Every public name is re-exported here, so ``from icl_course import mesa`` and ``mesa.mesa_attention`` read the same
whichever module holds it.

- :mod:`.causal_gd` — the mesa objective of a sequence, one GD step on it, the causal linear-attention layer that
  takes it, a trained layer and the algorithm read off its weights.
- :mod:`.mesa_layer` — the mesa layer: the objective solved exactly (Sherman–Morrison or a parallel solve).
"""

from __future__ import annotations

from ._common import (
    DYNAMICS,
    DynamicsSettings,
    curve_gap,
    dynamics_eval_set,
    dynamics_stream,
    model_predictions,
    per_step_loss,
    readout_next,
    sequence_loss,
    train_sequence_model,
)
from .causal_gd import (
    FAMILY_NAMES,
    GD_FEATURE,
    ONE_LAYER,
    FittedGD,
    OneLayerSettings,
    baseline_curves,
    block_diagonal_energy,
    block_means,
    clipped_gd_line_search,
    condition_numbers,
    constructed_causal_lsa,
    construction_error,
    effective_coefficients,
    family_features,
    family_predict,
    fit_family,
    fit_gd_with_init,
    gd_alignment,
    gd_lr_line_search,
    gd_step_variants,
    head_products,
    new_causal_lsa,
    revalg_model,
    structured_layer,
    train_causal_lsa,
)
from .mesa_layer import (
    DEPTH,
    MESA,
    DepthSettings,
    DriftLesson,
    MesaExactness,
    MesaLayer,
    MesaSettings,
    MesaVsDepth,
    MesaVsRidge,
    constructed_mesa_error,
    constructed_mesa_layer,
    downdate_drift,
    drift_lesson,
    effective_ridge,
    mesa_attention,
    mesa_exactness,
    mesa_vs_depth,
    mesa_vs_ridge,
    new_attention_model,
    new_mesa_model,
    sherman_morrison_downdate,
    sherman_morrison_update,
    train_depth_comparison,
    train_mesa,
)

__all__ = [
    # shared by the chapters
    "DynamicsSettings", "DYNAMICS", "readout_next", "per_step_loss", "sequence_loss", "dynamics_stream",
    "dynamics_eval_set", "model_predictions", "train_sequence_model", "curve_gap",
    # causal linear attention is one GD step
    "OneLayerSettings", "ONE_LAYER", "gd_lr_line_search", "clipped_gd_line_search", "constructed_causal_lsa",
    "construction_error", "new_causal_lsa", "train_causal_lsa", "head_products", "block_means", "structured_layer",
    "revalg_model", "FittedGD", "fit_gd_with_init", "baseline_curves", "family_features", "FAMILY_NAMES",
    "GD_FEATURE", "fit_family", "family_predict", "effective_coefficients", "gd_alignment", "block_diagonal_energy",
    "gd_step_variants", "condition_numbers",
    # the mesa layer
    "mesa_attention", "sherman_morrison_update", "sherman_morrison_downdate", "downdate_drift", "MesaLayer",
    "constructed_mesa_layer", "constructed_mesa_error", "MesaExactness", "mesa_exactness", "DriftLesson",
    "drift_lesson", "MesaSettings", "MESA", "DepthSettings", "DEPTH", "new_mesa_model", "new_attention_model",
    "train_mesa", "train_depth_comparison", "effective_ridge", "MesaVsRidge", "MesaVsDepth", "mesa_vs_ridge",
    "mesa_vs_depth",
]
