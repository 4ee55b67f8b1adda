"""The runtimes the chapters and the README state agree with the runtimes measured (the kernel CPU time recorded
when each notebook was last executed, converted to the 2-core reference machine): a stated "about a minute" must
lie within a factor 1.35 of the measurement, an "under 20 seconds" must hold."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from icl_course.notebooks import execution_window, reference_seconds, run_calibrations

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "book").glob("part*.ipynb"))
WORDS = {"a few seconds": 5, "half a minute": 30, "a minute": 60, "a minute and a half": 90, "two minutes": 120,
         "two and a half minutes": 150, "three minutes": 180}


def stated_seconds(text: str) -> tuple[str, float]:
    """``("about" | "under" | "over", seconds)`` from a phrase such as "about a minute and a half of CPU time"."""
    text = " ".join(text.split()).lower()
    m = re.match(r"(about|under|a little over|over|≈)?\s*(.*?)(?: of cpu time|$)", text)
    kind = {"about": "about", "≈": "about", "under": "under", "a little over": "over", "over": "over", None: "about"}
    amount = m[2].strip()
    if (n := re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|seconds|min|minutes)", amount)) is not None:
        return kind[m[1]], float(n[1]) * (60 if n[2].startswith("min") else 1)
    if amount in WORDS:
        return kind[m[1]], WORDS[amount]
    raise ValueError(f"cannot read a runtime from {text!r}")


def _run_calibrations() -> dict[Path, float]:
    books = {p: json.loads(p.read_text(encoding="utf-8")) for p in NOTEBOOKS}
    return run_calibrations({p: (nb["metadata"]["icl_course"]["calibration_samples"], execution_window(nb))
                             for p, nb in books.items()})


RUN_CALIBRATION = _run_calibrations()


def measured(path: Path) -> float:
    """The notebook's recorded kernel CPU in reference seconds, by the calibration of the run that executed it."""
    meta = json.loads(path.read_text(encoding="utf-8"))["metadata"]["icl_course"]
    return reference_seconds(meta["cpu_seconds"], RUN_CALIBRATION[path])


def agrees(kind: str, stated: float, actual: float) -> bool:
    if kind == "under":
        return actual <= stated
    if kind == "over":
        return stated <= actual <= 1.35 * stated
    return stated / 1.35 <= actual <= 1.35 * stated


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_states_its_measured_runtime(path):
    first = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])
    phrase = re.search(r"\*\*Runtime:\*\*\s*(.*?)(?:[;:.(]|$)", first, re.S)
    assert phrase, f"{path.name}: the opening states no **Runtime:**"
    kind, seconds = stated_seconds(phrase[1])
    actual = measured(path)
    assert agrees(kind, seconds, actual), (f"{path.name} says {phrase[1].strip()!r} ({kind} {seconds:.0f} s) but "
                                           f"measured {actual:.0f} s on the reference machine")


def test_readme_table_states_the_measured_runtimes():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"\[`book/(part\w+)\.ipynb`\].*?\|\s*(≈[^(|]*?)\s*\(budget", readme)
    assert {name for name, _ in rows} == {p.stem for p in NOTEBOOKS}
    for name, phrase in rows:
        kind, seconds = stated_seconds(phrase)
        actual = measured(ROOT / "book" / f"{name}.ipynb")
        assert agrees(kind, seconds, actual), f"README: {name} {phrase!r} but measured {actual:.0f} s"


def test_the_phrases_can_fail():
    assert stated_seconds("about a minute and a half of CPU time") == ("about", 90)
    assert stated_seconds("≈ 45 s") == ("about", 45)
    assert not agrees("about", 45, 88) and agrees("about", 90, 88) and not agrees("under", 60, 64)
