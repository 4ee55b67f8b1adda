"""Part I claims, one module per chapter; importing this package registers them in chapter order.
The value types and functions the notebooks call live in :mod:`icl_course.basics`."""

# The import order is the registration order: the chapters' order in the book.
# isort: off
from .few_shot_lm import *  # noqa: F401,F403
from .regression_lab import *  # noqa: F401,F403
from .regression_gpt import *  # noqa: F401,F403
# isort: on
