"""Part IV — "Uncovering mesa-optimization algorithms in Transformers" (von Oswald et al. 2023).

One module per chapter notebook (``book/part4_<module>.ipynb``), what only these chapters share in ``_common``.
Every public name is re-exported here, so ``from icl_course import mesa`` and ``mesa.mesa_attention`` read the same
whichever module holds it.

- :mod:`.causal_gd` — the mesa objective of a sequence, one GD step on it, the causal linear-attention layer that
  takes it, a trained layer and the algorithm read off its weights.
- :mod:`.mesa_layer` — the mesa layer: the objective solved exactly (Sherman–Morrison or a parallel solve).
- :mod:`.mesa_dataset` — raw tokens: a softmax layer copies the previous state, building the pairs it then descends on.
- :mod:`.deeper` — deeper linear stacks: multi-step preconditioned GD, RevAlg-d and the path to it, linear probes.
- :mod:`.family` — one family of fast-weight layers: linear attention, the delta rule (DeltaNet), the gated delta
  rule, the mesa layer and its conjugate-gradient solve (MesaNet); a trained DeltaNet-style layer.
"""

from __future__ import annotations

from ._common import (
    DYNAMICS,
    DynamicsSettings,
    block_diagonal_energy,
    block_means,
    curve_gap,
    dynamics_eval_set,
    dynamics_stream,
    head_products,
    model_predictions,
    per_step_loss,
    probe_r2,
    readout_next,
    revalg_model,
    sequence_loss,
    structured_layer,
    train_sequence_model,
)
from .causal_gd import (
    FAMILY_NAMES,
    GD_FEATURE,
    ONE_LAYER,
    FittedGD,
    OneLayerSettings,
    baseline_curves,
    clipped_gd_line_search,
    condition_numbers,
    constructed_causal_lsa,
    construction_error,
    effective_coefficients,
    family_features,
    family_parities,
    family_predict,
    fit_family,
    fit_gd_with_init,
    gd_alignment,
    gd_lr_line_search,
    gd_step_variants,
    new_causal_lsa,
    train_causal_lsa,
)
from .deeper import (
    DEEPER,
    DeeperSettings,
    DeepVsRevAlg,
    DepthVsSteps,
    FittedSteps,
    ProbeScores,
    constructed_gd2_model,
    deep_vs_revalg,
    depth_vs_steps,
    fit_gd_steps,
    gd_query_probe,
    gd_steps_predict,
    gd_steps_query,
    inlier_sequences,
    interpolated_model,
    interpolation_path,
    layer_activations,
    new_deep_model,
    preconditioned_input,
    probe_scores,
    product_structure,
    train_deep,
)
from .family import (
    CG_STEPS,
    FAMILY_LAM,
    GATE_ALPHAS,
    GATE_BETAS,
    CGConditioning,
    CGSweep,
    DeltaLayer,
    DeltaVsLinear,
    FamilyExactness,
    FamilyFit,
    FamilyOrdering,
    causal_cg_ridge_predict,
    causal_gated_delta_predict,
    cg_conditioning,
    cg_path,
    cg_sweep,
    constructed_delta_layer,
    delta_attention,
    delta_beta_line_search,
    delta_vs_linear,
    family_curves,
    family_exactness,
    family_ordering,
    gated_delta_grid,
    new_delta_model,
    normalized_beta,
    switching_dynamics,
    train_delta_layer,
)
from .mesa_dataset import (
    RAW,
    CopyEvidence,
    RawSettings,
    RawVsConstructed,
    constructed_copy_model,
    copy_construction_error,
    copy_evidence,
    copy_probe,
    new_raw_model,
    positional_codes,
    previous_token_weight,
    raw_predictions,
    raw_stream,
    raw_tokens,
    raw_vs_constructed,
    train_raw_model,
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
    float32_drift,
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
    "GD_FEATURE", "family_parities", "fit_family", "family_predict", "effective_coefficients", "gd_alignment",
    "block_diagonal_energy", "gd_step_variants", "condition_numbers",
    # the mesa layer
    "mesa_attention", "sherman_morrison_update", "sherman_morrison_downdate", "downdate_drift", "MesaLayer",
    "constructed_mesa_layer", "constructed_mesa_error", "MesaExactness", "mesa_exactness", "DriftLesson",
    "drift_lesson", "float32_drift", "MesaSettings", "MESA", "DepthSettings", "DEPTH", "new_mesa_model",
    "new_attention_model", "train_mesa", "train_depth_comparison", "effective_ridge", "MesaVsRidge", "MesaVsDepth",
    "mesa_vs_ridge", "mesa_vs_depth",
    # deeper layers: preconditioned multi-step GD
    "DeeperSettings", "DEEPER", "new_deep_model", "train_deep", "gd_steps_predict", "gd_steps_query", "fit_gd_steps",
    "constructed_gd2_model", "gd_query_probe", "FittedSteps", "interpolated_model", "interpolation_path",
    "product_structure", "layer_activations", "preconditioned_input", "probe_r2", "inlier_sequences", "ProbeScores",
    "probe_scores", "DeepVsRevAlg", "deep_vs_revalg", "DepthVsSteps", "depth_vs_steps",
    # building the training set: a softmax layer copies the previous token
    "positional_codes", "raw_tokens", "RawSettings", "RAW", "new_raw_model", "raw_stream", "raw_predictions",
    "train_raw_model", "constructed_copy_model", "copy_construction_error", "previous_token_weight", "copy_probe",
    "CopyEvidence", "copy_evidence", "RawVsConstructed", "raw_vs_constructed",
    # one family: linear attention, the delta rule, the mesa layer
    "delta_attention", "causal_gated_delta_predict", "causal_cg_ridge_predict", "cg_path", "normalized_beta",
    "DeltaLayer", "constructed_delta_layer", "new_delta_model", "train_delta_layer", "FAMILY_LAM", "CG_STEPS",
    "GATE_ALPHAS", "GATE_BETAS", "delta_beta_line_search", "gated_delta_grid", "FamilyFit", "family_curves",
    "CGSweep", "cg_sweep",
    "FamilyExactness", "family_exactness", "FamilyOrdering", "family_ordering", "CGConditioning", "cg_conditioning",
    "DeltaVsLinear", "delta_vs_linear", "switching_dynamics",
]
