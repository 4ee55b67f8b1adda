"""Part IV claims (von Oswald et al. 2023), one module per chapter; importing this package registers them in
chapter order. The value types and ``m*_value`` functions the notebooks call are re-exported here."""

# The import order is the registration order: the chapters' order in the book.
# isort: off
from .causal_gd import *  # noqa: F401,F403  (registers M1–M3, M8, M8b)
from .causal_gd import __all__ as _causal_gd_all
from .mesa_layer import *  # noqa: F401,F403  (registers M4a, M4, M5, M9)
from .deeper import *  # noqa: F401,F403  (registers M11, M10, M7)
from .deeper import __all__ as _deeper_all
from .mesa_dataset import *  # noqa: F401,F403  (registers M12, M13, M18)
from .mesa_dataset import __all__ as _mesa_dataset_all
from .prompting import *  # noqa: F401,F403  (registers M6, M23, M24)
from .variants import *  # noqa: F401,F403  (registers M25–M27)
from .family import *  # noqa: F401,F403  (registers M14–M17)
from .language import *  # noqa: F401,F403  (registers M20–M22)
# isort: on

__all__ = list(_causal_gd_all) + list(_deeper_all) + list(_mesa_dataset_all)
