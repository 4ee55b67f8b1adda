"""Unit and property tests for :mod:`icl_course.attention`: reference linear and softmax attention."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from icl_course import runtime
from icl_course.attention import causal_mask, linear_attention, softmax_attention
from tests.helpers import F64, SEED, rel


def qkv(lead, Tq, Tk, dk, dv, seed, dtype=F64):
    g = runtime.generator(seed)
    q = torch.randn(*lead, Tq, dk, generator=g, dtype=dtype)
    k = torch.randn(*lead, Tk, dk, generator=g, dtype=dtype)
    v = torch.randn(*lead, Tk, dv, generator=g, dtype=dtype)
    return q, k, v


LEAD = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)
T_ = st.integers(1, 7)
D_ = st.integers(1, 5)


@given(lead=LEAD, Tq=T_, Tk=T_, dk=D_, dv=D_, seed=SEED)
def test_linear_attention_is_the_double_sum(lead, Tq, Tk, dk, dv, seed):
    q, k, v = qkv(lead, Tq, Tk, dk, dv, seed)
    out = linear_attention(q, k, v)
    assert out.shape == (*lead, Tq, dv)
    qf, kf, vf = q.reshape(-1, Tq, dk), k.reshape(-1, Tk, dk), v.reshape(-1, Tk, dv)
    ref = torch.zeros(qf.shape[0], Tq, dv, dtype=F64)
    for b in range(qf.shape[0]):
        for i in range(Tq):
            for j in range(Tk):
                ref[b, i] += torch.dot(kf[b, j], qf[b, i]) * vf[b, j]
    assert rel(out.reshape(-1, Tq, dv), ref) < 1e-12


@given(lead=LEAD, T=T_, dk=D_, dv=D_, seed=SEED)
def test_linear_attention_causal(lead, T, dk, dv, seed):
    q, k, v = qkv(lead, T, T, dk, dv, seed)
    out = linear_attention(q, k, v, causal=True)
    for i in range(T):
        # row i sees exactly keys j ≤ i
        ref = linear_attention(q[..., i:i + 1, :], k[..., :i + 1, :], v[..., :i + 1, :])[..., 0, :]
        assert rel(out[..., i, :], ref) < 1e-12
    if T > 1:
        # a future key changes non-causal but not causal output at row 0
        v2 = v.clone()
        v2[..., -1, :] += 1.0
        assert torch.equal(linear_attention(q, k, v2, causal=True)[..., 0, :], out[..., 0, :])
        assert not torch.equal(linear_attention(q, k, v2)[..., 0, :], linear_attention(q, k, v)[..., 0, :])


def test_causal_mask():
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            assert bool(m[i, j]) == (j <= i)


@given(lead=LEAD, Tq=T_, Tk=T_, dk=D_, dv=D_, seed=SEED, scale=st.one_of(st.none(), st.floats(0.1, 2.0)))
def test_softmax_attention_manual(lead, Tq, Tk, dk, dv, seed, scale):
    q, k, v = qkv(lead, Tq, Tk, dk, dv, seed)
    out = softmax_attention(q, k, v, scale=scale)
    s = 1 / math.sqrt(dk) if scale is None else scale
    qf, kf, vf = q.reshape(-1, Tq, dk), k.reshape(-1, Tk, dk), v.reshape(-1, Tk, dv)
    ref = torch.zeros(qf.shape[0], Tq, dv, dtype=F64)
    for b in range(qf.shape[0]):
        for i in range(Tq):
            logits = [s * float(torch.dot(kf[b, j], qf[b, i])) for j in range(Tk)]
            mx = max(logits)
            w = [math.exp(a - mx) for a in logits]
            z = sum(w)
            for j in range(Tk):
                ref[b, i] += (w[j] / z) * vf[b, j]
    assert out.shape == (*lead, Tq, dv)
    assert rel(out.reshape(-1, Tq, dv), ref) < 1e-12


@given(T=T_, dk=D_, dv=D_, seed=SEED)
def test_softmax_attention_causal(T, dk, dv, seed):
    q, k, v = qkv((2,), T, T, dk, dv, seed)
    out = softmax_attention(q, k, v, causal=True)
    for i in range(T):
        ref = softmax_attention(q[:, i:i + 1], k[:, :i + 1], v[:, :i + 1])[:, 0]
        assert rel(out[:, i], ref) < 1e-12
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("fn", [linear_attention, softmax_attention])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_preserved(fn, dtype):
    q, k, v = qkv((2,), 3, 4, 5, 2, 0, dtype)
    assert fn(q, k, v).dtype == dtype
    q, k, v = qkv((2,), 4, 4, 5, 2, 0, dtype)
    assert fn(q, k, v, causal=True).dtype == dtype


@pytest.mark.parametrize("fn", [linear_attention, softmax_attention])
def test_bad_shapes_raise(fn):
    q, k, v = qkv((2,), 3, 4, 5, 2, 0)
    with pytest.raises(ValueError, match="Tq == Tk"):
        fn(q, k, v, causal=True)
    with pytest.raises(ValueError, match="dk"):
        fn(q[..., :4], k, v)
    with pytest.raises(ValueError, match="Tk"):
        fn(q, k, v[..., :3, :])
    with pytest.raises(ValueError, match="leading dims"):
        fn(q, k[None], v[None])
    with pytest.raises(ValueError, match="leading dims"):
        fn(torch.cat([q, q]), k, v)
    with pytest.raises(ValueError, match=r"\bq\b"):
        fn(q[0, 0], k, v)
    with pytest.raises(TypeError, match=r"\bk\b"):
        fn(q, k.numpy(), v)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("fn", [linear_attention, softmax_attention])
def test_cuda_matches_cpu(fn):
    q, k, v = qkv((2,), 5, 5, 3, 2, 0)
    out = fn(q.cuda(), k.cuda(), v.cuda(), causal=True)
    assert out.device.type == "cuda"
    assert rel(out.cpu(), fn(q, k, v, causal=True)) < 1e-12
