"""Part II claims (Dai et al. 2022), one module per chapter; importing this package registers them in chapter order.
The value types and functions the notebooks call live in :mod:`icl_course.meta_optimizer`."""

# The import order is the registration order: the chapters' order in the book.
# isort: off
from .dual_form import *  # noqa: F401,F403
from .toy_finetuning import *  # noqa: F401,F403
from .real_lm import *  # noqa: F401,F403
from .momentum import *  # noqa: F401,F403
from .critiques import *  # noqa: F401,F403
# isort: on
