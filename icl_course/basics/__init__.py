"""Part I — ICL basics: what in-context learning is, shown on a real language model, and a small transformer
trained from scratch that learns noisy linear regression in context about as well as the Bayes-optimal estimator.

One module per chapter notebook (``book/part1_<module>.ipynb``). Every public name is re-exported here, so
``from icl_course import basics`` and ``basics.<name>`` read the same whichever module holds it.

- :mod:`.few_shot_lm` — zero-, one- and few-shot prompting of SmolLM2-135M-Instruct, offline: tasks where
  demonstrations measurably help, movie-review polarity with natural labels, contextual calibration and label
  sensitivity.
- :mod:`.regression_lab` — the in-context linear-regression task family and the learners every later part compares
  transformers with: least squares, ridge (Bayes-optimal), K-step GD and its optimal step size, averaging, k-NN.
- :mod:`.regression_gpt` — Garg et al.'s experiment on a CPU budget: a GPT-style transformer trained from scratch on
  noisy linear regression, against ridge, least squares, one GD step, 3-NN and averaging.
"""

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
