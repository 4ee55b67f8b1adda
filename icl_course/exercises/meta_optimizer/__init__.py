"""Exercises of Part II, one module per chapter; every checker is re-exported here, so a chapter notebook's
``from icl_course.exercises.meta_optimizer import check_dual_form`` works whichever module holds it."""

from __future__ import annotations

# isort: off
from .dual_form import *  # noqa: F401,F403
from .dual_form import __all__ as _dual_form_all
from .toy_finetuning import *  # noqa: F401,F403
from .toy_finetuning import __all__ as _toy_all
from .real_lm import *  # noqa: F401,F403
from .real_lm import __all__ as _real_lm_all
from .momentum import *  # noqa: F401,F403
from .momentum import __all__ as _momentum_all
from .critiques import *  # noqa: F401,F403
from .critiques import __all__ as _critiques_all
# isort: on

__all__ = [*_dual_form_all, *_toy_all, *_real_lm_all, *_momentum_all, *_critiques_all]
