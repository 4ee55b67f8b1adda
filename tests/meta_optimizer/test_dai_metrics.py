"""Tests for :mod:`icl_course.meta_optimizer._dai_metrics`: hand-computed Rec2FTP, SimAOU, SimAM, Kendall τ and paired
statistics; "would be caught" tests for normalising before the differences, the U(0, 1) baseline, the head/example
averaging order and the relaxation's small-logit limit; and every error message."""

import math

import pytest
import torch

from icl_course import meta_optimizer as mo
from icl_course import runtime
from icl_course.meta_optimizer import (
    kendall_tau,
    paired_difference,
    rec2ftp,
    simam,
    simaou,
    softmax_vs_linear,
    uniform_update,
    zero_mean_update,
)

F64 = torch.float64
T, F = True, False


def b(*xs):
    return torch.tensor(xs, dtype=torch.bool)


def t(*rows):
    return torch.tensor(rows, dtype=F64)


# ------------------------------------------------------------------------------------------------ Rec2FTP
def test_rec2ftp_hand_computed():
    # examples 0, 1 and 3 are ZSL-wrong & FT-right; ICL is right on 0 and 3 -> 2/3
    zsl, ft, icl = b(F, F, T, F, F), b(T, T, T, T, F), b(T, F, F, T, T)
    assert rec2ftp(zsl=zsl, icl=icl, ft=ft) == pytest.approx(200 / 3)
    assert rec2ftp(zsl=b(F, F, F, T), ft=b(T, T, F, T), icl=b(T, F, T, T)) == 50.0


def test_rec2ftp_ignores_examples_outside_the_denominator():
    """ICL fixing an example FT did not fix (or that ZSL already had) must not count: caught if the numerator drops
    the FT or ZSL condition."""
    zsl, ft = b(F, F, T), b(T, F, T)
    assert rec2ftp(zsl=zsl, icl=b(F, T, T), ft=ft) == 0.0
    assert rec2ftp(zsl=zsl, icl=b(T, T, T), ft=ft) == 100.0


def test_rec2ftp_errors():
    with pytest.raises(ValueError, match="undefined"):
        rec2ftp(zsl=b(T, F), icl=b(T, T), ft=b(T, F))
    with pytest.raises(ValueError, match="same shape"):
        rec2ftp(zsl=b(F, F), icl=b(T, T, T), ft=b(T, T))
    with pytest.raises(ValueError, match="boolean"):
        rec2ftp(zsl=torch.tensor([0, 1]), icl=b(T, T), ft=b(T, T))
    with pytest.raises(ValueError, match=r"\(n_ex,\)"):
        rec2ftp(zsl=b(F, F)[None], icl=b(T, T)[None], ft=b(T, T)[None])
    with pytest.raises(TypeError, match="zsl"):
        rec2ftp(zsl=[F, F], icl=b(T, T), ft=b(T, T))


# ------------------------------------------------------------------------------------------------ SimAOU
def test_simaou_hand_computed():
    # ĥ_zsl = (1, 0), ĥ_icl = (0, 1), ĥ_ft = (1, 1)/√2: updates (−1, 1) and (1/√2 − 1, 1/√2)
    r = 1 / math.sqrt(2)
    expect = ((1 - r) + r) / (math.sqrt(2) * math.sqrt((r - 1) ** 2 + r ** 2))
    got = simaou(zsl=t([3.0, 0.0]), icl=t([0.0, 5.0]), ft=t([2.0, 2.0]))
    assert got.shape == () and got.dtype == F64
    assert float(got) == pytest.approx(expect, rel=1e-12)


def test_simaou_normalises_before_differences():
    """Scaling a model's outputs must not change SimAOU (caught if the rows are not L2-normalised first)."""
    g = runtime.generator(0)
    z, i, f = (torch.randn(7, 3, 5, generator=g, dtype=F64) for _ in range(3))
    ref = simaou(zsl=z, icl=i, ft=f)
    assert ref.shape == (3,)
    assert torch.allclose(simaou(zsl=2 * z, icl=0.5 * i, ft=9 * f), ref, rtol=1e-12)
    # the unnormalised version differs: the test above would catch dropping the normalisation
    raw = torch.nn.functional.cosine_similarity(i - z, f - z, dim=-1).mean(0)
    assert not torch.allclose(raw, ref, atol=1e-3)


def test_simaou_layers_and_per_example():
    g = runtime.generator(1)
    z, i, f = (torch.randn(6, 4, 3, generator=g, dtype=F64) for _ in range(3))
    per = simaou(zsl=z, icl=i, ft=f, per_example=True)
    assert per.shape == (6, 4)
    assert torch.allclose(per.mean(0), simaou(zsl=z, icl=i, ft=f))
    for layer in range(4):  # per layer = the 2-D version on that layer
        assert torch.allclose(per[:, layer], simaou(zsl=z[:, layer], icl=i[:, layer], ft=f[:, layer], per_example=True))


def test_simaou_ft_update_replaces_the_update():
    zsl, icl = t([1.0, 0.0]), t([0.0, 1.0])  # ICL update (−1, 1)
    assert float(simaou(zsl=zsl, icl=icl, ft_update=t([-2.0, 2.0]))) == pytest.approx(1.0)
    assert float(simaou(zsl=zsl, icl=icl, ft_update=t([1.0, 1.0]))) == pytest.approx(0.0, abs=1e-15)
    # with ft given, ft_update must equal the normalised FT update
    ft = t([4.0, 3.0])
    u = ft / 5 - zsl
    assert torch.allclose(simaou(zsl=zsl, icl=icl, ft=ft), simaou(zsl=zsl, icl=icl, ft_update=u))


def test_uniform_baseline_is_not_zero_mean():
    """Dai's U(0, 1) baseline gives a clearly positive cosine with an all-positive update, a zero-mean one does not."""
    like = torch.zeros(2000, 64, dtype=F64)
    u, n = uniform_update(like, runtime.generator(0)), zero_mean_update(like, runtime.generator(0))
    assert u.shape == n.shape == like.shape and u.dtype == n.dtype == F64
    assert float(u.min()) >= 0 and float(u.max()) <= 1
    zsl = torch.zeros_like(like)
    zsl[:, 0] = 1.0  # ĥ_ICL − ĥ_ZSL = 1/8 − e_0: positive in 63 of 64 entries
    icl = torch.ones_like(like)
    assert float(simaou(zsl=zsl, icl=icl, ft_update=u)) > 0.3
    assert abs(float(simaou(zsl=zsl, icl=icl, ft_update=n))) < 4 / math.sqrt(64 * 2000)


def test_simaou_errors():
    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="exactly one"):
        simaou(zsl=x, icl=x)
    with pytest.raises(ValueError, match="exactly one"):
        simaou(zsl=x, icl=x, ft=x, ft_update=x)
    with pytest.raises(ValueError, match="same shape"):
        simaou(zsl=x, icl=torch.zeros(3, 5), ft=x)
    with pytest.raises(ValueError, match="ft_update"):
        simaou(zsl=x, icl=x, ft_update=torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\(n_ex, d\)"):
        simaou(zsl=torch.zeros(4), icl=torch.zeros(4), ft=torch.zeros(4))
    with pytest.raises(TypeError, match="floating"):
        simaou(zsl=torch.zeros(3, 4, dtype=torch.long), icl=x, ft=x)


# ------------------------------------------------------------------------------------------------ SimAM
def test_simam_hand_computed_and_averaging_order():
    # example 0: head 0 cos 1, head 1 cos 0 -> 0.5; example 1: head 0 cos −1, head 1 cos 1/√2·... -> see below
    icl = t([[1.0, 0.0], [1.0, 0.0]], [[1.0, 2.0], [3.0, 4.0]])  # (n_ex=2, n_heads=2, T=2)
    other = t([[2.0, 0.0], [0.0, 1.0]], [[-1.0, -2.0], [4.0, 3.0]])
    per = simam(icl=icl, other=other, per_example=True)
    assert torch.allclose(per, t(0.5, (-1.0 + 24 / 25) / 2))
    assert float(simam(icl=icl, other=other)) == pytest.approx(float(per.mean()))
    layered = simam(icl=torch.stack([icl, other], 1), other=torch.stack([other, other], 1))  # (2, 2 layers, 2, 2)
    assert layered.shape == (2,)
    assert torch.allclose(layered, t(float(per.mean()), 1.0))


def test_simam_is_per_head_not_flattened():
    """Flattening heads into one vector would weight heads by their logits' norm: caught here."""
    icl = t([[100.0, 0.0], [0.0, 1.0]])[None]  # (1, 2 heads, 2)
    other = t([[100.0, 0.0], [1.0, 0.0]])[None]
    assert float(simam(icl=icl, other=other)) == pytest.approx(0.5)


def test_simam_errors():
    with pytest.raises(ValueError, match="n_heads"):
        simam(icl=torch.zeros(3, 4), other=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="same shape"):
        simam(icl=torch.zeros(3, 2, 4), other=torch.zeros(3, 2, 5))


# ------------------------------------------------------------------------------------------------ statistics
def test_kendall_tau_hand_computed():
    assert kendall_tau(t(1.0, 2.0, 3.0, 4.0), t(1.0, 3.0, 2.0, 4.0)) == pytest.approx(4 / 6)  # one swap: (5−1)/6
    assert kendall_tau(t(1.0, 2.0, 3.0), t(3.0, 2.0, 1.0)) == pytest.approx(-1.0)
    # τ-b with a tie in b: pairs (1,2)+ (1,3)+ (2,3) tie -> C−D = 2, untied 3 and 2 -> 2/√6
    assert kendall_tau(t(1.0, 2.0, 3.0), t(1.0, 2.0, 2.0)) == pytest.approx(2 / math.sqrt(6))
    with pytest.raises(ValueError, match="constant"):
        kendall_tau(t(1.0, 1.0), t(1.0, 2.0))
    with pytest.raises(ValueError, match="at least 2"):
        kendall_tau(t(1.0), t(1.0))


def test_paired_difference_hand_computed():
    r = paired_difference(t(1.0, 2.0, 3.0), t(0.0, 0.0, 4.0))
    assert r.n == 3 and r.mean == pytest.approx(2 / 3) and r.frac_positive == pytest.approx(2 / 3)
    assert r.std == pytest.approx(math.sqrt(7 / 3)) and r.sem == pytest.approx(math.sqrt(7 / 9))
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference(t(1.0), t(0.0))
    with pytest.raises(ValueError, match="same shape"):
        paired_difference(t(1.0, 2.0), t(0.0, 1.0, 2.0))


# ------------------------------------------------------------------------------------------------ relaxation
def _qkv(lead=(2, 3), dk=4, dv=5, Td=6, Tt=7, seed=0, centred=False):
    g = runtime.generator(seed)
    q = torch.randn(*lead, dk, generator=g, dtype=F64)
    kd, kt = (torch.randn(*lead, n, dk, generator=g, dtype=F64) for n in (Td, Tt))
    vd, vt = (torch.randn(*lead, n, dv, generator=g, dtype=F64) for n in (Td, Tt))
    if centred:
        vd, vt = vd - vd.mean(-2, keepdim=True), vt - vt.mean(-2, keepdim=True)
    return q, kd, vd, kt, vt


def _cos(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


def test_softmax_vs_linear_hand_computed():
    # one head, dk = dv = 1: demo (k=1, v=1), text (k=0, v=2); q = 1, scale = log 3
    # softmax over [demo; text]: logits (log 3, 0) -> weights (3/4, 1/4) -> out 3/4 + 2/4 = 5/4 > 0; linear: 1·1 + 0
    # change: 5/4 − 2 = −3/4 vs ΔW q = 1 -> update_cos = −1; output_cos = +1
    r = softmax_vs_linear(t([1.0]), t([[1.0]]), t([[1.0]]), t([[0.0]]), t([[2.0]]), scale=math.log(3))
    assert r.output_cos.shape == (1,) and r.update_cos.shape == (1,)
    assert float(r.output_cos) == pytest.approx(1.0) and float(r.update_cos) == pytest.approx(-1.0)


def test_softmax_vs_linear_small_logit_limit():
    """scale → 0 with centred values: output_cos → 1, update_cos → cos(ΔW q − (Td/Tt) W_zsl q, ΔW q)."""
    Td, Tt = 6, 7
    q, kd, vd, kt, vt = _qkv(Td=Td, Tt=Tt, centred=True)
    dwq = ((kd @ q[..., None]).transpose(-1, -2) @ vd)[..., 0, :]  # (2, 3, dv)
    wzq = ((kt @ q[..., None]).transpose(-1, -2) @ vt)[..., 0, :]
    r = softmax_vs_linear(q, kd, vd, kt, vt, scale=1e-7)
    assert r.output_cos.shape == (2, 3)
    assert torch.allclose(r.output_cos, torch.ones(2, 3, dtype=F64), atol=1e-6)
    limit = _cos(dwq - (Td / Tt) * wzq, dwq)
    assert torch.allclose(r.update_cos, limit, atol=1e-6)
    assert not torch.allclose(limit, torch.ones_like(limit), atol=1e-2)  # the relaxation is not free even here


def test_softmax_vs_linear_scale_free_linear_side_and_large_scale():
    q, kd, vd, kt, vt = _qkv(seed=2)
    big = softmax_vs_linear(q, kd, vd, kt, vt, scale=1e3)
    # at large scale softmax picks the argmax token: the output is that token's value
    s = torch.cat([kd, kt], -2) @ q[..., None]
    v = torch.cat([vd, vt], -2)
    top = torch.gather(v, -2, s.argmax(-2, keepdim=True).expand(*s.shape[:-2], 1, v.shape[-1]))[..., 0, :]
    lin = (s.transpose(-1, -2) @ v)[..., 0, :]
    assert torch.allclose(big.output_cos, _cos(top, lin), atol=1e-8)


def test_softmax_vs_linear_errors():
    q, kd, vd, kt, vt = _qkv()
    with pytest.raises(ValueError, match="scale"):
        softmax_vs_linear(q, kd, vd, kt, vt, scale=0.0)
    with pytest.raises(ValueError, match="k_demo"):
        softmax_vs_linear(q, kd[:1], vd, kt, vt, scale=1.0)
    with pytest.raises(ValueError, match="dk"):
        softmax_vs_linear(q, kd[..., :3], vd, kt, vt, scale=1.0)
    with pytest.raises(ValueError, match="values must match"):
        softmax_vs_linear(q, kd, vd[..., :2, :], kt, vt, scale=1.0)
    with pytest.raises(ValueError, match="v_text"):
        softmax_vs_linear(q, kd, vd, kt, vt[0], scale=1.0)


def test_all_names_exported():
    for name in mo._dai_metrics.__all__:
        assert getattr(mo, name) is getattr(mo._dai_metrics, name)
