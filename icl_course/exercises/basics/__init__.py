"""Exercises of Part I, one module per chapter; every checker is re-exported here, so a chapter notebook's
``from icl_course.exercises.basics import check_<name>`` works whichever module holds it."""

from __future__ import annotations

# isort: off
from .few_shot_lm import *  # noqa: F401,F403
from .few_shot_lm import __all__ as _few_shot_all
from .regression_lab import *  # noqa: F401,F403
from .regression_lab import __all__ as _lab_all
from .regression_gpt import *  # noqa: F401,F403
from .regression_gpt import __all__ as _gpt_all
# isort: on

__all__ = [*_few_shot_all, *_lab_all, *_gpt_all]
