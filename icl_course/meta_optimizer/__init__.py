"""Part II — "Why can GPT learn in-context? Language models secretly perform gradient descent as meta-optimizers"
(Dai et al. 2022), and what its critiques found.

One module per chapter notebook (``book/part2_<module>.ipynb``); what several chapters share lives in private
modules (``_dai_metrics``: the paper's similarity metrics and their baselines; ``_lm_protocol``: the ICL-versus-
fine-tuning protocol on the real LM). Every public name is re-exported here,
so ``from icl_course import meta_optimizer`` and ``meta_optimizer.icl_weight_update`` read the same whichever module
holds it.

- :mod:`.dual_form` — a linear layer trained by GD is its initial weights plus linear attention over the training
  inputs (keys) and error signals (values); ICL with linear attention as the zero-shot weights plus ΔW_ICL.
- :mod:`.toy_finetuning` — a small transformer trained from scratch on in-context classification: ICL against
  fine-tuning of its key and value projections, with Dai et al.'s metrics and the baselines that decide their meaning.
- :mod:`.real_lm` — the same protocol on a real pretrained LM (SmolLM2-135M-Instruct) on movie-review polarity with
  remapped labels.
- :mod:`.momentum` — momentum attention (Dai et al. §5) against plain attention, trained identically.
- :mod:`.critiques` — the relaxation's cost on the real LM's layers, an untrained copy of the LM (Deutch et al.
  2023), shuffled demonstrations (Shen et al. 2023), and what the evidence supports.
"""

from __future__ import annotations

# isort: off
from ._dai_metrics import *  # noqa: F401,F403
from ._dai_metrics import __all__ as _metrics_all
from ._lm_protocol import *  # noqa: F401,F403
from ._lm_protocol import __all__ as _protocol_all
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

__all__ = [*_metrics_all, *_protocol_all, *_dual_form_all, *_toy_all, *_real_lm_all, *_momentum_all, *_critiques_all]
