"""Unit and property tests for :mod:`icl_course.models`: linear self-attention layers and their stacks."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from icl_course import runtime
from icl_course.models import OFFICIAL_INIT_SCALE, LinearSelfAttention, LSAStack
from tests.helpers import F64, SEED, rel

NAMES = ("W_Q", "W_K", "W_V", "P")




def random_mats(D, seed, dtype=F64, scale=0.5):
    g = runtime.generator(seed)
    return {n: scale * torch.randn(D, D, generator=g, dtype=dtype) for n in NAMES}


def random_tokens(B, T, D, seed, dtype=F64):
    return torch.randn(B, T, D, generator=runtime.generator(seed), dtype=dtype)


def formula(E, m, include_query=False, attention="linear"):
    """E_out = E + A (E_c W_Vᵀ) Pᵀ with A = (E W_Qᵀ)(E_c W_Kᵀ)ᵀ (softmax over keys, unscaled, for "softmax")."""
    E_c = E if include_query else E[:, :-1]
    A = (E @ m["W_Q"].T) @ (E_c @ m["W_K"].T).transpose(1, 2)
    if attention == "softmax":
        A = torch.softmax(A, dim=-1)
    return E + A @ (E_c @ m["W_V"].T) @ m["P"].T


@given(B=st.integers(1, 4), N=st.integers(1, 12), D=st.integers(2, 9), seed=SEED, include_query=st.booleans())
def test_from_matrices_forward_equals_formula(B, N, D, seed, include_query):
    m = random_mats(D, seed)
    layer = LinearSelfAttention.from_matrices(*(m[n] for n in NAMES), include_query=include_query)
    E = random_tokens(B, N + 1, D, seed + 1)
    with torch.no_grad():
        out = layer(E)
        last = layer(E, query_only=True)
    ref = formula(E, m, include_query)
    assert out.shape == E.shape and out.dtype == F64
    assert rel(out, ref) < 1e-12
    assert last.shape == (B, 1, D)
    assert rel(last, out[:, -1:]) < 1e-12
    # include_query matters (the two formulas differ), so the flag is really used
    other = formula(E, m, not include_query)
    assert rel(out, other) > 1e-8


@given(B=st.integers(1, 4), N=st.integers(1, 12), D=st.integers(2, 9), seed=SEED, include_query=st.booleans())
def test_softmax_layer_and_query_only(B, N, D, seed, include_query):
    m = random_mats(D, seed)
    layer = LinearSelfAttention.from_matrices(*(m[n] for n in NAMES), include_query=include_query, attention="softmax")
    E = random_tokens(B, N + 1, D, seed + 1)
    with torch.no_grad():
        out, last = layer(E), layer(E, query_only=True)
    assert rel(out, formula(E, m, include_query, "softmax")) < 1e-12
    assert last.shape == (B, 1, D)
    assert rel(last, out[:, -1:]) < 1e-12


def test_matrices_roundtrip_and_no_aliasing():
    m = random_mats(4, 0)
    layer = LinearSelfAttention.from_matrices(*(m[n] for n in NAMES))
    got = layer.matrices()
    for n in NAMES:
        assert torch.equal(got[n], m[n])
    m["W_Q"].zero_()  # the layer holds copies
    assert not torch.equal(layer.matrices()["W_Q"], m["W_Q"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_follows_matrices(dtype):
    m = random_mats(5, 0, dtype)
    layer = LinearSelfAttention.from_matrices(*(m[n] for n in NAMES))
    for p in layer.parameters():
        assert p.dtype == dtype
    E = random_tokens(2, 4, 5, 1, dtype)
    with torch.no_grad():
        assert layer(E).dtype == dtype
        assert layer(E, query_only=True).dtype == dtype


def test_from_matrices_rejects_bad_input():
    m = random_mats(4, 0)
    for n in NAMES:
        bad = dict(m)
        bad[n] = torch.zeros(4, 5, dtype=F64)
        with pytest.raises(ValueError, match=rf"\b{n}\b"):
            LinearSelfAttention.from_matrices(*(bad[k] for k in NAMES))
        bad[n] = torch.zeros(4, dtype=F64)
        with pytest.raises(ValueError, match=rf"\b{n}\b"):
            LinearSelfAttention.from_matrices(*(bad[k] for k in NAMES))
        bad[n] = m[n].float()
        with pytest.raises(TypeError, match=rf"\b{n}\b"):
            LinearSelfAttention.from_matrices(*(bad[k] for k in NAMES))
        bad[n] = m[n].numpy()
        with pytest.raises(TypeError, match=rf"\b{n}\b"):
            LinearSelfAttention.from_matrices(*(bad[k] for k in NAMES))
    with pytest.raises(ValueError, match="attention"):
        LinearSelfAttention.from_matrices(*(m[k] for k in NAMES), attention="relu")


def test_init_std_and_truncation():
    D = 200
    layer = LinearSelfAttention(D, generator=runtime.generator(0), dtype=F64)
    w = torch.cat([layer.matrices()[n].flatten() for n in NAMES])  # 160,000 entries
    std = math.sqrt(OFFICIAL_INIT_SCALE / D)
    sigma_raw = std / 0.87962566103423978  # std of the normal before truncation at ±2σ
    assert float(w.std()) == pytest.approx(std, rel=0.02)
    assert abs(float(w.mean())) < 4 * std / math.sqrt(w.numel())
    assert float(w.abs().max()) <= 2 * sigma_raw
    assert float(w.abs().max()) > 1.95 * sigma_raw  # truncated at 2σ_raw, not earlier
    # per-matrix: every matrix is initialised (none left at nn.Linear's default uniform init)
    for n in NAMES:
        assert float(layer.matrices()[n].std()) == pytest.approx(std, rel=0.05)


def test_init_is_seeded():
    a = LinearSelfAttention(6, generator=runtime.generator(3))
    b = LinearSelfAttention(6, generator=runtime.generator(3))
    c = LinearSelfAttention(6, generator=runtime.generator(4))
    for n in NAMES:
        assert torch.equal(a.matrices()[n], b.matrices()[n])
        assert not torch.equal(a.matrices()[n], c.matrices()[n])


def test_init_scale_zero_gives_identity_map():
    layer = LinearSelfAttention(4, init_scale=0.0)
    E = random_tokens(2, 5, 4, 0, torch.float32)
    with torch.no_grad():
        assert torch.equal(layer(E), E)


def _two_layers(D=4):
    return (LinearSelfAttention.from_matrices(*(random_mats(D, 1)[n] for n in NAMES)),
            LinearSelfAttention.from_matrices(*(random_mats(D, 2)[n] for n in NAMES)))


def test_stack_applies_layers_in_order():
    L1, L2 = _two_layers()
    E = random_tokens(3, 6, 4, 0)
    stack = LSAStack([L1, L2])
    with torch.no_grad():
        out = stack(E)
        ref = L2(L1(E))
        assert rel(out, ref) < 1e-14
        assert rel(out, L1(L2(E))) > 1e-6  # the order matters for these layers
        assert rel(stack(E, query_only=True), out[:, -1:]) < 1e-12
    assert stack.n_layers == 2 and stack.layer(0) is L1 and stack.layer(1) is L2


def test_shared_stack_and_depth_override():
    L1, _ = _two_layers()
    E = random_tokens(2, 5, 4, 0)
    stack = LSAStack([L1], shared=True, n_layers=3)
    assert stack.n_layers == 3
    assert all(stack.layer(i) is L1 for i in range(5))
    with torch.no_grad():
        assert rel(stack(E), L1(L1(L1(E)))) < 1e-13
        five = E
        for _ in range(5):
            five = L1(five)
        assert rel(stack(E, n_layers=5), five) < 1e-12
        assert rel(stack(E, n_layers=5, query_only=True), five[:, -1:]) < 1e-12
        assert rel(stack(E, n_layers=1), L1(E)) < 1e-14
    assert len(list(stack.parameters())) == 4  # one set of weights


def test_stack_new():
    s = LSAStack.new(5, 3, generator=runtime.generator(0), dtype=F64)
    assert len(s.layers) == 3 and s.n_layers == 3
    assert not torch.equal(s.layer(0).matrices()["W_Q"], s.layer(1).matrices()["W_Q"])
    sh = LSAStack.new(5, 4, shared=True, generator=runtime.generator(0))
    assert len(sh.layers) == 1 and sh.n_layers == 4 and sh.shared


def test_stack_bad_input():
    L1, L2 = _two_layers()
    stack = LSAStack([L1, L2], n_context=5)
    with torch.no_grad():
        stack(random_tokens(2, 6, 4, 0))  # 5 context tokens + query is fine
        with pytest.raises(ValueError, match="n_context"):
            stack(random_tokens(2, 5, 4, 0))
        with pytest.raises(ValueError, match="n_context"):
            stack(random_tokens(2, 7, 4, 0))
        with pytest.raises(ValueError, match=r"\bE\b"):
            stack(random_tokens(2, 6, 4, 0)[0])
        with pytest.raises(ValueError, match="n_layers"):
            stack(random_tokens(2, 6, 4, 0), n_layers=3)
    with pytest.raises(ValueError, match="n_context"):
        LSAStack([L1], n_context=0)
    with pytest.raises(ValueError, match="shared"):
        LSAStack([L1, L2], shared=True)
    with pytest.raises(TypeError, match="layers"):
        LSAStack([])


def test_layer_forward_bad_input():
    L1, _ = _two_layers()
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"\bE\b"):
            L1(random_tokens(1, 5, 4, 0)[0])  # unbatched
        with pytest.raises(ValueError, match=r"\bE\b"):
            L1(random_tokens(2, 5, 3, 0))  # wrong width
        with pytest.raises(ValueError, match=r"\bE\b"):
            L1(random_tokens(2, 1, 4, 0))  # no context token
        with pytest.raises(TypeError, match=r"\bE\b"):
            L1(random_tokens(2, 5, 4, 0).numpy())


def test_shared_stack_rejects_zero_layers():
    with pytest.raises(ValueError, match="n_layers"):
        LSAStack.new(4, 0, shared=True)


def test_unshared_stack_rejects_contradictory_n_layers():
    L1, L2 = _two_layers()
    with pytest.raises(ValueError, match="n_layers"):
        LSAStack([L1, L2], n_layers=5)


def test_unshared_stack_new_rejects_zero_layers():
    with pytest.raises(ValueError, match="n_layers"):
        LSAStack.new(4, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("attention", ["linear", "softmax"])
def test_layer_on_cuda_matches_cpu(attention):
    m = random_mats(5, 0)
    cpu = LinearSelfAttention.from_matrices(*(m[n] for n in NAMES), attention=attention)
    gpu = LinearSelfAttention.from_matrices(*(m[n].cuda() for n in NAMES), attention=attention)
    assert all(p.device.type == "cuda" for p in gpu.parameters())
    E = random_tokens(3, 6, 5, 1)
    with torch.no_grad():
        out = gpu(E.cuda())
        assert out.device.type == "cuda" and out.dtype == F64
        assert rel(out.cpu(), cpu(E)) < 1e-12
        assert rel(gpu(E.cuda(), query_only=True).cpu(), cpu(E)[:, -1:]) < 1e-12
    g = LinearSelfAttention(200, generator=runtime.generator(0, "cuda"), device="cuda", dtype=F64)
    w = torch.cat([g.matrices()[n].flatten() for n in NAMES])
    assert w.device.type == "cuda"
    assert float(w.std()) == pytest.approx(math.sqrt(OFFICIAL_INIT_SCALE / 200), rel=0.02)
