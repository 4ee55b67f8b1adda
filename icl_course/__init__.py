"""icl_course — companion package of the course "In-context learning as gradient descent".

Foundation: :mod:`runtime`, :mod:`tasks`, :mod:`solvers`, :mod:`attention`, :mod:`models`, :mod:`train`,
:mod:`metrics`. Chapters: :mod:`gd_transformer` (Part III). Presentation: :mod:`plots`, :mod:`widgets`,
:mod:`exercises`, :mod:`reproduce` and the command line (``python -m icl_course``).
"""

from importlib.metadata import PackageNotFoundError, version


def _checkout_version() -> str:
    """The version in ``pyproject.toml`` beside the package (a checkout that is not installed), else "unknown"."""
    import re
    from pathlib import Path

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    found = re.search(r'(?m)^version\s*=\s*"([^"]+)"', pyproject.read_text()) if pyproject.exists() else None
    return found[1] if found else "unknown"


try:  # one version everywhere: pyproject.toml's, through the installed metadata
    __version__ = version("icl-course")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = _checkout_version()
