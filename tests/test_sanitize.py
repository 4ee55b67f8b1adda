"""The nbval sanitizer rules (``tests/nbval_sanitize.cfg``), applied in file order by nbval's own parser: each rule
masks the run-dependent text it is for and leaves results alone."""

import re
from pathlib import Path

import pytest
from nbval.plugin import get_sanitize_patterns

CFG = Path(__file__).resolve().parent / "nbval_sanitize.cfg"


def sanitize(text: str) -> str:
    for regex, replace in get_sanitize_patterns(CFG.read_text(encoding="utf-8")):
        text = re.sub(regex, replace, text)
    return text


def test_three_rules_are_read():
    assert len(get_sanitize_patterns(CFG.read_text(encoding="utf-8"))) == 3


@pytest.mark.parametrize("text, masked", [
    ("<Figure size 660x352 with 1 Axes>", "<Figure>"),  # a width ending in 0 is not eaten by the address rule
    ("<Figure size 880x352.5 with 2 Axes>", "<Figure>"),
    ("<icl_course.models.LSAStack object at 0x7f3a9c2b10d0>", "<icl_course.models.LSAStack object at 0xADDRESS>"),
    ("trained 3000 steps in 41 s; eval loss 0.2013", "trained 3000 steps in TIME; eval loss 0.2013"),
    ("stopped after 1200 steps (12.5 s); escape at 700", "stopped after 1200 steps (TIME); escape at 700"),
    ("6 reviews, 1,234 tokens in all, 35 s (120 ms each)", "6 reviews, 1,234 tokens in all, TIME (TIME each)"),
])
def test_run_dependent_text_is_masked(text, masked):
    assert sanitize(text) == masked


@pytest.mark.parametrize("text", [
    "a 10x10 grid", "an 0x10 offset",  # short hexadecimal-looking numbers are results, not addresses
    "loss 0.2017 s", "2.0 s.d. above the mean", "(2.0 s.d.)", "K = 3 steps", "the 5s and 10s",
    "E2c: PASS", "L_TF/L_GD = 1.0020", "max rel. error 1.8e-16",
])
def test_results_are_left_alone(text):
    assert sanitize(text) == text
