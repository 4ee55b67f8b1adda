"""Tests of :mod:`icl_course.gpt`'s regression model: shapes, causality, seeding and clear errors."""

import pytest
import torch

from icl_course import runtime
from icl_course.gpt import GPT, GPTConfig, RegressionGPT

CONFIG = GPTConfig(vocab_size=1, block_size=16, n_layer=2, n_head=2, d_model=16)


def model(seed=0, dtype=torch.float32):
    return RegressionGPT(CONFIG, 5, 2, generator=runtime.generator(seed), dtype=dtype)


def test_shapes_and_dtype():
    m = model(dtype=torch.float64)
    out = m(torch.randn(3, 10, 5, dtype=torch.float64))
    assert out.shape == (3, 10, 2) and out.dtype == torch.float64
    assert m.num_params() == sum(p.numel() for p in m.parameters())


def test_outputs_are_causal():
    """Changing token t changes no output before t, and does change output t."""
    m = model(dtype=torch.float64)
    with torch.no_grad():
        m.read_out.weight.normal_(generator=runtime.generator(3))  # a non-trivial read-out
    z = torch.randn(2, 12, 5, dtype=torch.float64, generator=runtime.generator(1))
    z2 = z.clone()
    z2[:, 7] += 1.0
    a, b = m(z), m(z2)
    assert torch.equal(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7], b[:, 7])


def test_init_is_seeded_like_gpt():
    a, b, c = model(0), model(0), model(1)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
    assert not torch.equal(a.read_in.weight, c.read_in.weight)
    assert torch.all(a.read_in.bias == 0) and torch.all(a.blocks[0].ln1.weight == 1)
    assert abs(float(a.read_in.weight.detach().std()) - CONFIG.init_std) < 0.01
    assert isinstance(GPT(GPTConfig(vocab_size=3)), GPT)


def test_bad_input_is_named():
    m = model()
    with pytest.raises(ValueError, match="in_dim=5"):
        m(torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match="block_size=16"):
        m(torch.randn(2, 17, 5))
    with pytest.raises(ValueError, match="tokens"):
        m(torch.randn(4, 5))
    with pytest.raises(TypeError, match="config"):
        RegressionGPT({"d_model": 16}, 5)
    with pytest.raises(ValueError, match="in_dim"):
        RegressionGPT(CONFIG, 0)
