"""The one list of the course's parts: the claims registry, the exercise registry, the student edition, the
staleness hash and the command line all read :data:`PARTS`.

A part is one chapter subpackage ``icl_course/<name>/`` with one module per notebook ``book/part<N>_<module>.ipynb``,
its claims in ``icl_course/claims/<name>.py`` (or a package of that name with one module per chapter) and its
exercises in ``icl_course/exercises/<name>``. Adding a part means adding one line here.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

__all__ = ["Part", "PARTS", "FOUNDATION", "part_of_notebook", "part_named"]


class Part(NamedTuple):
    """One part of the course."""

    number: int
    name: str
    title: str

    @property
    def prefix(self) -> str:
        """The file-name prefix of the part's notebooks, e.g. ``part3_``."""
        return f"part{self.number}_"


PARTS: tuple[Part, ...] = (
    Part(1, "basics", "ICL basics"),
    Part(2, "meta_optimizer", "The meta-optimizer view"),
    Part(3, "gd_transformer", "The GD construction"),
    Part(4, "mesa", "Mesa-optimization"),
)

FOUNDATION = ("_checks", "_deprecation", "runtime", "tasks", "solvers", "attention", "models", "gpt", "causal", "train",
              "metrics", "query", "lm", "parts", "data")
"""The foundation modules (they know no chapter); everything else outside :data:`PARTS` is presentation."""


def part_named(name: str) -> Part:
    """The part whose subpackage is ``name``."""
    for part in PARTS:
        if part.name == name:
            return part
    raise ValueError(f"name must be one of {[p.name for p in PARTS]}, got {name!r}")


def part_of_notebook(path: str | Path) -> Part:
    """The part a chapter notebook belongs to, from its ``part<N>_`` file-name prefix."""
    stem = Path(path).name
    for part in PARTS:
        if stem.startswith(part.prefix):
            return part
    raise ValueError(f"{stem}: a chapter notebook's name must start with one of {[p.prefix for p in PARTS]}")
