"""Runtime settings shared by every part: seeding, threads, device and the cache folder.

This is the only module that holds global state. Every chapter notebook starts with
``runtime.setup(seed=0)``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import torch

__all__ = ["setup", "seed_everything", "generator", "device", "cache_dir", "DEFAULT_THREADS", "Scales", "SCALES"]

DEFAULT_THREADS = 1
_STATE: dict[str, object] = {"device": torch.device("cpu"), "seed": None}


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    _STATE["seed"] = seed


def setup(seed: int = 0, threads: int | None = DEFAULT_THREADS, device: str | None = None) -> torch.device:
    """Prepare a session: seed everything, set the thread count and choose the device.

    Parameters
    ----------
    seed : int
        Seed for Python, NumPy and PyTorch.
    threads : int or None
        Intra-op threads for PyTorch. The course's models are tiny: on a 2-core laptop one thread is up to
        10x faster than the default. ``None`` leaves PyTorch's setting alone.
    device : str or None
        ``"cpu"`` (default), ``"cuda"`` or ``"auto"`` (CUDA when available).

    Returns
    -------
    torch.device
        The device that experiments will use.
    """
    seed_everything(seed)
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        torch.set_num_threads(threads)
    if device is None or device == "cpu":
        dev = torch.device("cpu")
    elif device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' was asked for but torch.cuda.is_available() is False")
    _STATE["device"] = dev
    return dev


def device() -> torch.device:
    """The device chosen by the last :func:`setup` call (CPU by default)."""
    return _STATE["device"]  # type: ignore[return-value]


def generator(seed: int, device: str | torch.device | None = None) -> torch.Generator:
    """A fresh, seeded ``torch.Generator`` — the one way the course draws reproducible data."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    g = torch.Generator(device=device if device is not None else "cpu")
    g.manual_seed(seed)
    return g


def cache_dir() -> Path:
    """The course cache folder (converted LM weights, trained-result cache); created on first use.

    ``$ICL_COURSE_CACHE`` wins; otherwise ``.cache/`` at the repository root when the package runs from a
    checkout, else ``~/.cache/icl_course``.
    """
    env = os.environ.get("ICL_COURSE_CACHE")
    if env:
        path = Path(env)
    else:
        repo = Path(__file__).resolve().parent.parent
        path = repo / ".cache" if (repo / "pyproject.toml").exists() else Path.home() / ".cache" / "icl_course"
    path.mkdir(parents=True, exist_ok=True)
    return path


SCALES = ("cpu", "paper")
"""The two sizes of every experiment that has a paper-scale setting: the book's CPU size and the official one."""

S = TypeVar("S")


@dataclass(frozen=True)
class Scales(Generic[S]):
    """An experiment's settings at the two scales: ``cpu`` (what the book runs) and ``paper`` (the official sizes,
    meant for a GPU). ``pick(scale)`` returns one and names the choices when ``scale`` is unknown."""

    cpu: S
    paper: S

    def pick(self, scale: str) -> S:
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")
        return getattr(self, scale)
