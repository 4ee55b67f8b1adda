"""Causal multi-head self-attention and its stack (:mod:`icl_course.causal`)."""

from __future__ import annotations

import pytest
import torch

from icl_course.attention import linear_attention, softmax_attention
from icl_course.causal import CausalSelfAttention, CausalStack
from tests.helpers import F64, rel


def _layer(attention="linear", H=2, k=3, D=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return CausalSelfAttention(D, H, k, attention=attention, init_std=0.5, generator=gen, dtype=F64)


def _reference(layer, E):
    """Head by head, with the reference attention functions: e_t + W_O concat_h attn_h."""
    m, k, outs = layer.matrices(), layer.key_size, []
    for h in range(layer.n_heads):
        rows = slice(h * k, (h + 1) * k)
        q, kk, v = (E @ m[n][rows].T for n in ("W_Q", "W_K", "W_V"))
        fn = linear_attention if layer.attention == "linear" else softmax_attention
        outs.append(fn(q, kk, v, causal=True))
    return E + torch.cat(outs, -1) @ m["W_O"].T


@pytest.mark.parametrize("attention", ["linear", "softmax"])
def test_forward_matches_head_by_head_reference(attention):
    layer = _layer(attention)
    E = torch.randn(4, 7, 5, dtype=F64, generator=torch.Generator().manual_seed(1))
    assert rel(layer(E), _reference(layer, E)) < 1e-12


def test_causality_position_t_sees_itself_and_nothing_later():
    layer = _layer()
    E = torch.randn(2, 6, 5, dtype=F64, generator=torch.Generator().manual_seed(2))
    E2 = E.clone()
    E2[:, 4:] += 1.0  # change the future
    assert torch.allclose(layer(E)[:, :4], layer(E2)[:, :4])
    E3 = E.clone()
    E3[:, 3] += 1.0  # change the present
    assert not torch.allclose(layer(E)[:, 3], layer(E3)[:, 3]), "token t must attend to itself (j ≤ t)"


def test_scores_are_causal_and_softmax_rows_sum_to_one():
    E = torch.randn(2, 6, 5, dtype=F64, generator=torch.Generator().manual_seed(3))
    s = _layer().scores(E)
    assert s.shape == (2, 2, 6, 6) and torch.equal(s.triu(1), torch.zeros_like(s))
    p = _layer("softmax").scores(E)
    assert torch.allclose(p.sum(-1), torch.ones(2, 2, 6, dtype=F64))


def test_from_matrices_round_trip_and_checks():
    layer = _layer()
    m = layer.matrices()
    again = CausalSelfAttention.from_matrices(m["W_Q"], m["W_K"], m["W_V"], m["W_O"], n_heads=2)
    E = torch.randn(3, 4, 5, dtype=F64, generator=torch.Generator().manual_seed(4))
    assert torch.equal(again(E), layer(E))
    with pytest.raises(ValueError, match="split into n_heads"):
        CausalSelfAttention.from_matrices(m["W_Q"], m["W_K"], m["W_V"], m["W_O"], n_heads=4)
    with pytest.raises(ValueError, match="W_O must have shape"):
        CausalSelfAttention.from_matrices(m["W_Q"], m["W_K"], m["W_V"], m["W_O"].T, n_heads=2)
    with pytest.raises(TypeError, match="dtype and device"):
        CausalSelfAttention.from_matrices(m["W_Q"], m["W_K"].float(), m["W_V"], m["W_O"], n_heads=2)


def test_bad_input_names_the_argument():
    layer = _layer()
    with pytest.raises(ValueError, match=r"E must have shape \(B, T, D=5\)"):
        layer(torch.zeros(2, 3, 4, dtype=F64))
    with pytest.raises(ValueError, match=r"E must have shape"):
        layer(torch.zeros(3, 5, dtype=F64))
    with pytest.raises(ValueError, match="attention must be"):
        CausalSelfAttention(5, attention="cosine")


def test_stack_masks_inputs_and_clips_activations():
    layer = _layer()
    E = torch.randn(2, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(5)) * 3
    masked = CausalStack([layer], masked_dims=2)
    E0 = torch.cat([torch.zeros_like(E[..., :2]), E[..., 2:]], -1)
    assert torch.equal(masked(E), layer(E0)), "the mask zeroes the residual stream too"
    clipped = CausalStack([layer], clip=1.5)
    assert float(clipped(E).abs().max()) <= 1.5 and torch.equal(clipped(E), layer(E).clamp(-1.5, 1.5))
    deep = CausalStack([layer, _layer(seed=1)])
    assert torch.equal(deep(E, n_layers=1), layer(E))
    with pytest.raises(TypeError, match="non-empty list"):
        CausalStack([])


def test_init_is_seeded_with_the_official_std():
    a = CausalSelfAttention(40, 2, 20, generator=torch.Generator().manual_seed(0))
    b = CausalSelfAttention(40, 2, 20, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.W_Q.weight, b.W_Q.weight)
    assert abs(float(a.W_Q.weight.std()) / 2e-4 - 1) < 0.1
