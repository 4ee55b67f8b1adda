"""Exercises of Part IV, one module per chapter; every checker is re-exported here, so a chapter notebook's
``from icl_course.exercises.mesa import check_build_tokens`` works whichever module holds it."""

from __future__ import annotations

from .causal_gd import check_build_tokens, check_causal_gd_weights, check_gd_on_sequence, check_read_sequence_step_size
from .deeper import (
    check_gd_steps_next_state,
    check_neumann_weights,
    check_preconditioned_query,
    check_structured_blocks,
)
from .family import check_cg_solve, check_delta_memory, check_delta_step, check_gated_delta_step
from .language import (
    check_bigram_loss,
    check_next_char_windows,
    check_unigram_loss,
    check_window_position_losses,
)
from .mesa_dataset import check_copy_attention, check_gd_on_copied, check_shift_rotation, check_uniform_copy
from .mesa_layer import (
    check_mesa_output_at,
    check_ridge_from_official,
    check_ridge_next_state,
    check_sherman_morrison_step,
)
from .prompting import (
    check_interleave_prompt,
    check_prompted_ridge,
    check_spurious_limit_loss,
    check_task_pair_gd,
)
from .variants import check_contracting_w, check_history_ridge_mesa, check_history_stack, check_zero_loss

__all__ = ["check_build_tokens", "check_gd_on_sequence", "check_causal_gd_weights", "check_read_sequence_step_size",
           "check_sherman_morrison_step", "check_mesa_output_at", "check_ridge_next_state", "check_ridge_from_official",
           "check_gd_steps_next_state", "check_neumann_weights", "check_structured_blocks",
           "check_preconditioned_query", "check_delta_step", "check_delta_memory", "check_cg_solve",
           "check_gated_delta_step",
           "check_shift_rotation", "check_copy_attention", "check_gd_on_copied", "check_uniform_copy",
           "check_interleave_prompt", "check_task_pair_gd", "check_spurious_limit_loss", "check_prompted_ridge",
           "check_history_stack", "check_contracting_w", "check_history_ridge_mesa", "check_zero_loss",
           "check_next_char_windows", "check_unigram_loss", "check_bigram_loss", "check_window_position_losses"]
