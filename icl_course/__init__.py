"""icl_course — companion package of the course "In-context learning as gradient descent".

Foundation: :mod:`runtime`, :mod:`tasks`, :mod:`solvers`, :mod:`attention`, :mod:`models`, :mod:`train`,
:mod:`metrics`. Chapters: :mod:`gd_transformer` (Part III). Presentation: :mod:`plots`, :mod:`widgets`,
:mod:`exercises`, :mod:`reproduce` and the command line (``python -m icl_course``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("icl-course")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0.1.0"
