"""The claim registry: statuses, known gaps, the JSON interface, the generated page and the command line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from icl_course import reproduce
from icl_course.reproduce import Claim, Context, KnownGap
from icl_course.reproduce_page import render

BOOK = Path(__file__).resolve().parent.parent / "book"

def _claim(gap=None, exact=False, cid="T1"):
    return Claim(id=cid, chapter="test", claim="a value below 1", reference="1", tolerance="< 1",
                 measure=lambda ctx: 0.5,
                 judge=lambda v, ctx: v < 1, show=str, score=lambda v: v, exact=exact, gap=gap)


@pytest.fixture
def registry(monkeypatch):
    reproduce._load_claims()
    monkeypatch.setattr(reproduce, "REGISTRY", dict(reproduce.REGISTRY))
    return reproduce.REGISTRY


def test_statuses(registry):
    reproduce.register(_claim(cid="T-pass"))
    reproduce.register(_claim(gap=KnownGap(1.5, "a measured miss"), cid="T-gap"))
    reproduce.register(_claim(cid="T-fail"))
    assert reproduce.evaluate("T-pass", 0.5).status == "PASS"
    gap = reproduce.evaluate("T-gap", 1.2)
    assert gap.status == "KNOWN_GAP" and not gap.passed and "a measured miss" in gap.reason
    grown = reproduce.evaluate("T-gap", 1.6)
    assert grown.status == "FAIL" and "grew" in grown.reason
    assert reproduce.evaluate("T-gap", 0.9).status == "PASS"  # a closed gap is a pass
    assert reproduce.evaluate("T-fail", 2.0).status == "FAIL"


def test_exact_identities_cannot_be_gaps(registry):
    with pytest.raises(ValueError, match="exact"):
        reproduce.register(_claim(gap=KnownGap(1.0, "no"), exact=True, cid="T-exact"))


def test_duplicate_ids_and_unknown_ids_raise(registry):
    with pytest.raises(ValueError, match="twice"):
        reproduce.register(_claim(cid="E1"))
    with pytest.raises(KeyError, match="unknown"):
        reproduce.evaluate("nope", 0.0)
    with pytest.raises(KeyError, match="unknown"):
        reproduce.run(["nope"])


def test_context_caches_shared_results():
    ctx, calls = Context(), []
    for _ in range(3):
        ctx.shared("x", lambda: calls.append(1) or 7)
    assert calls == [1] and ctx.eval_size == 10_000 and Context(quick=True).eval_size == 2_000


def test_part3_ids_match_targets():
    reproduce._load_claims()
    assert {"E1", "E2a", "E2b", "E2c", "E2d", "E3", "E4", "E5", "E6", "E7", "E8", "E8a", "E8u", "E9", "E10", "E11",
            "E12a", "E12b"} <= set(reproduce.REGISTRY)


def test_run_rejects_an_unknown_scale():
    with pytest.raises(ValueError, match="scale"):
        reproduce.run(["E1"], scale="huge")


def test_cheap_claims_run_and_pass():
    rows = reproduce.run(["E1", "E2a", "E9"], seed=3, quick=True)
    assert [r.status for r in rows] == ["PASS"] * 3
    table = reproduce.format_table(rows)
    assert "E9" in table and reproduce.verdicts(rows).splitlines() == ["E1: PASS", "E2a: PASS", "E9: PASS"]


def test_e2b_tolerance_widens_with_the_standard_error():
    from icl_course.claims.gd_transformer import e2b_tolerance

    assert e2b_tolerance(10_000) == pytest.approx(0.012)
    assert e2b_tolerance(2_500) == pytest.approx(0.024)


def test_reproducibility_page_is_current():
    committed = (BOOK / "reproducibility.md").read_text(encoding="utf-8")
    assert committed == render(BOOK), "run `python -m icl_course reproduce-page` and commit book/reproducibility.md"


def test_claim_fields_go_by_keyword():
    with pytest.raises(TypeError):
        Claim("T9", "test", "c", "1", "< 1", lambda ctx: 0.5, lambda v, ctx: True, str)  # type: ignore[misc]


def test_every_claim_knows_its_part_and_cites_a_real_source():
    from icl_course.parts import PARTS

    reproduce._load_claims()
    names = {p.name for p in PARTS}
    for claim in reproduce.REGISTRY.values():
        assert claim.part in names, (claim.id, claim.part)
        for text in (claim.reference, claim.claim, claim.tolerance):
            assert "TARGETS" not in text and "DESIGN" not in text, f"{claim.id}: the book must stand on its own"


def test_run_selects_claims_by_part(registry):
    rows = reproduce.run(["E1", "E8a"], parts=["gd_transformer"])
    assert [r.id for r in rows] == ["E1", "E8a"]
    with pytest.raises(KeyError, match="unknown parts"):
        reproduce.run(["E1"], parts=["no_such_part"])


def test_rows_carry_the_package_version(registry):
    """``reproduce --json`` names the package version beside torch's (one version everywhere)."""
    from icl_course import __version__

    reproduce.register(_claim(cid="T-pass"))
    row = reproduce.evaluate("T-pass", 0.5)
    assert row.version == __version__ and "version" in dataclasses.asdict(row)
