"""Golden data of the official implementations, shipped with the package (numbers only, no official code).

Each file is documented in the ``*_GOLDEN.md`` beside it: how it was made, every array's shape, meaning and layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["GOLDEN", "load_golden", "golden_path"]

FOLDER = Path(__file__).resolve().parent

GOLDEN = {
    "vonoswald2022_train": "vonoswald2022_train_seed0.npz",
    "vonoswald2022_trained": "vonoswald2022_trained_seed0.npz",
    "vonoswald2023": "vonoswald2023_golden.npz",
}
"""Name → file. ``vonoswald2022_*``: von Oswald et al. (2022), see ``VONOSWALD2022_GOLDEN.md``; ``vonoswald2023``:
von Oswald et al. (2023), see ``VONOSWALD2023_GOLDEN.md``."""


def golden_path(name: str) -> Path:
    """The file of a golden data set (see :data:`GOLDEN` for the names)."""
    if name not in GOLDEN:
        raise ValueError(f"name must be one of {sorted(GOLDEN)}, got {name!r}")
    path = FOLDER / GOLDEN[name]
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the golden data ship with the package; reinstall it")
    return path


def load_golden(name: str) -> dict[str, np.ndarray]:
    """Every array of a golden data set, loaded eagerly (no pickles)."""
    with np.load(golden_path(name), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
