"""The registry of every claim the book makes, runnable from the command line.

``python -m icl_course reproduce [--quick] [--seed N] [--only ID] [--json]`` measures each registered claim
and prints one row: id, chapter, claim, reference value and its source, our value, tolerance, status.
Notebooks call :func:`evaluate` on the values they already computed, so nothing trains twice.

Statuses: ``PASS``; ``FAIL``; ``KNOWN_GAP`` — a claim we measured and did not reach, registered with the
measured value and the reason. A gap never fails the run unless it grows past its registered value; exact
identities cannot be gaps; a closed gap is simply ``PASS``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from . import __version__

__all__ = ["Claim", "KnownGap", "Context", "Row", "REGISTRY", "register", "evaluate", "run", "format_table",
           "verdicts", "main"]


@dataclass(frozen=True)
class KnownGap:
    """A measured miss: ``value`` is the registered badness score (see :attr:`Claim.score`) and why."""

    value: float
    reason: str


@dataclass(frozen=True, kw_only=True)
class Claim:
    """One claim of the book with its reference, tolerance, measurement and judgement (fields by keyword only).

    ``measure(ctx)`` returns the value; ``judge(value, ctx)`` says whether the target is reached;
    ``score(value)`` is a badness (larger is worse) used to tell whether a known gap grew. ``reference`` names the
    real source of the reference value: the paper and its figure or appendix, the official code, or a closed form.
    """

    id: str
    chapter: str
    claim: str
    reference: str
    tolerance: str
    measure: Callable[[Context], Any]
    judge: Callable[[Any, Context], bool]
    show: Callable[[Any], str]
    score: Callable[[Any], float] | None = None
    exact: bool = False
    gap: KnownGap | None = None

    @property
    def part(self) -> str:
        """The part whose claims module registered this claim (``icl_course.claims.<part>``, or a module of the
        package ``icl_course.claims.<part>``)."""
        return self.measure.__module__.split(".claims.", 1)[1].split(".")[0]


@dataclass
class Context:
    """What a measurement may depend on: the seed, quick mode, the scale and device of the experiments that have a
    paper-scale setting (``scale="paper"``, meant for ``device="cuda"``), and a cache shared by one run's claims."""

    seed: int = 0
    quick: bool = False
    scale: str = "cpu"
    device: str | None = None
    cache: dict = field(default_factory=dict)

    @property
    def eval_size(self) -> int:
        """Evaluation tasks per set: 10,000 (the paper's), or 2,000 with ``--quick``."""
        return 2_000 if self.quick else 10_000

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        """Compute ``make()`` once per run (e.g. one trained model for several claims)."""
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


@dataclass
class Row:
    """One line of the reproduction table (the ``--json`` object)."""

    id: str
    chapter: str
    claim: str
    reference: str
    value: str
    tolerance: str
    status: str
    passed: bool
    reason: str
    seed: int
    quick: bool
    seconds: float
    torch: str
    version: str


REGISTRY: dict[str, Claim] = {}


def register(claim: Claim) -> Claim:
    """Add a claim; exact identities cannot carry a known gap."""
    if claim.id in REGISTRY:
        raise ValueError(f"claim id {claim.id!r} is registered twice")
    if claim.exact and claim.gap is not None:
        raise ValueError(f"claim {claim.id} is an exact identity and cannot be a KNOWN_GAP")
    if claim.gap is not None and claim.score is None:
        raise ValueError(f"claim {claim.id} has a known gap but no score to tell whether it grew")
    REGISTRY[claim.id] = claim
    return claim


def _judge(claim: Claim, value: Any, ctx: Context) -> tuple[str, str]:
    if claim.judge(value, ctx):
        return "PASS", ""
    if claim.gap is not None:
        score = claim.score(value)  # type: ignore[misc]
        if score <= claim.gap.value * (1 + 1e-9) + 1e-12:
            return "KNOWN_GAP", f"{claim.gap.reason} (registered {claim.gap.value:.4g}, now {score:.4g})"
        return "FAIL", f"known gap grew: registered {claim.gap.value:.4g}, now {score:.4g}"
    return "FAIL", f"outside tolerance: {claim.tolerance}"


def evaluate(claim_id: str, value: Any, *, seed: int = 0, quick: bool = False, seconds: float = 0.0) -> Row:
    """Judge a value a notebook already computed against the registered claim."""
    _load_claims()
    if claim_id not in REGISTRY:
        raise KeyError(f"unknown claim id {claim_id!r}; registered: {sorted(REGISTRY)}")
    claim, ctx = REGISTRY[claim_id], Context(seed=seed, quick=quick)
    status, reason = _judge(claim, value, ctx)
    return Row(claim.id, claim.chapter, claim.claim, claim.reference, claim.show(value), claim.tolerance, status,
               status == "PASS", reason, seed, quick, round(seconds, 2), torch.__version__.split("+")[0],
               __version__)


def run(ids: list[str] | None = None, *, seed: int = 0, quick: bool = False, scale: str = "cpu",
        device: str | None = None, parts: list[str] | None = None) -> list[Row]:
    """Measure and judge the registered claims (all, or ``ids``, or those of ``parts``) in registration order.

    ``scale="paper"`` runs the experiments that have a paper-scale setting at the official sizes (see
    ``gd_transformer.SINE`` and ``STANDARD``) on ``device``; the others are unchanged.
    """
    from .parts import PARTS
    from .runtime import SCALES

    _load_claims()
    unknown = sorted(set(ids or []) - set(REGISTRY))
    if unknown:
        raise KeyError(f"unknown claim ids {unknown}; registered: {sorted(REGISTRY)}")
    unknown_parts = sorted(set(parts or []) - {p.name for p in PARTS})
    if unknown_parts:
        raise KeyError(f"unknown parts {unknown_parts}; parts: {[p.name for p in PARTS]}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")
    ctx, rows = Context(seed=seed, quick=quick, scale=scale, device=device), []
    for claim in REGISTRY.values():
        if (ids and claim.id not in ids) or (parts and claim.part not in parts):
            continue
        start = time.perf_counter()
        value = claim.measure(ctx)
        rows.append(evaluate(claim.id, value, seed=seed, quick=quick, seconds=time.perf_counter() - start))
    return rows


def format_table(rows: list[Row], columns: tuple[str, ...] = ("id", "claim", "reference", "value", "tolerance",
                                                               "status")) -> str:
    """A plain-text table of rows (known-gap reasons listed under it)."""
    cells = [[str(getattr(r, c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()
    out = [line(columns), line(["-" * w for w in widths])] + [line(row) for row in cells]
    out += [f"{r.id}: {r.status}: {r.reason}" for r in rows if r.reason]
    return "\n".join(out)


def verdicts(rows: list[Row]) -> str:
    """Only the verdicts, one per line (``E2c: PASS``) — the strictly compared output of a notebook."""
    return "\n".join(f"{r.id}: {r.status}" for r in rows)


def _load_claims() -> None:
    """Import every part's claims module (each registers its claims once; a part may have none yet)."""
    import importlib
    import importlib.util

    from .parts import PARTS

    for part in PARTS:
        if importlib.util.find_spec(f"{__package__}.claims.{part.name}") is not None:
            importlib.import_module(f"{__package__}.claims.{part.name}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python -m icl_course reproduce …``."""
    import argparse

    from .parts import PARTS

    p = argparse.ArgumentParser(prog="python -m icl_course reproduce", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller evaluation sets, tolerances widened to match")
    p.add_argument("--seed", type=int, default=0, help="seed of every trained model and data set (default 0)")
    p.add_argument("--only", action="append", metavar="ID", help="run only this claim id (repeatable)")
    p.add_argument("--part", action="append", choices=[part.name for part in PARTS],
                   help="run only this part's claims (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of the table")
    p.add_argument("--scale", choices=("cpu", "paper"), default="cpu",
                   help="'paper': official sizes for the experiments that have them (meant for a GPU)")
    p.add_argument("--device", default="cpu", help="'cpu' (default), 'cuda' or 'auto'")
    args = p.parse_args(argv)
    from . import runtime

    dev = runtime.setup(seed=args.seed, device=args.device)
    device = None if dev.type == "cpu" else str(dev)
    rows = run(args.only, seed=args.seed, quick=args.quick, scale=args.scale, device=device, parts=args.part)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=1, ensure_ascii=False))
    else:
        print(format_table(rows, ("id", "chapter", "claim", "reference", "value", "tolerance", "status", "seconds")))
        n_fail = sum(r.status == "FAIL" for r in rows)
        n_gap = sum(r.status == "KNOWN_GAP" for r in rows)
        print(f"\n{sum(r.passed for r in rows)} passed, {n_fail} failed, {n_gap} known gaps "
              f"(seed {args.seed}{', quick' if args.quick else ''}, scale {args.scale}, device {dev})")
    return 1 if any(r.status == "FAIL" for r in rows) else 0
