"""Tests for :mod:`icl_course.meta_optimizer.momentum`: the EMA of the values (matrix = loop = a hand-computed
case), MoAttn (η = 0 is the softmax mixer, same initial weights, causality, the term added before ``W_O``), the
dual form of momentum GD, validation, "would be caught" tests (the current value, the (1 − η) factor, the direction
of the decay), the recall task, and a slow smoke test of the experiment."""

import dataclasses
import math

import pytest
import torch

from icl_course import runtime
from icl_course.attention import softmax_attention
from icl_course.gpt import GPT, GPTConfig, attention_mixer
from icl_course.meta_optimizer import momentum as mo

F64 = torch.float64


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-300))


def rand(*shape, seed=0, dtype=F64):
    return torch.randn(*shape, generator=runtime.generator(seed), dtype=dtype)


def naive_ema(v, eta):
    """The definition itself: a double loop over ``t`` and ``i < t``."""
    out = torch.zeros_like(v)
    for t in range(v.shape[-2]):
        for i in range(t):
            out[..., t, :] += eta ** (t - i) * v[..., i, :]
    return out


# ------------------------------------------------------------------------------------------- the EMA
def test_decay_matrix_hand_computed():
    D = mo.momentum_decay_matrix(4, 0.5, dtype=F64)
    expected = torch.tensor([[0, 0, 0, 0], [0.5, 0, 0, 0], [0.25, 0.5, 0, 0], [0.125, 0.25, 0.5, 0]], dtype=F64)
    assert torch.equal(D, expected)


@pytest.mark.parametrize("eta", [0.0, 0.3, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (2, 3, 17, 4)])
def test_ema_matrix_equals_loop_equals_definition(eta, shape):
    v = rand(*shape, seed=len(shape))
    fast, loop, ref = mo.value_momentum(v, eta), mo.value_momentum_loop(v, eta), naive_ema(v, eta)
    assert rel(fast, ref) < 1e-10 or float(ref.norm()) == 0.0
    assert rel(loop, ref) < 1e-10 or float(ref.norm()) == 0.0
    assert torch.equal(fast[..., 0, :], torch.zeros_like(v[..., 0, :]))


def test_ema_hand_computed_case():
    v = torch.tensor([[1.0], [2.0], [4.0]], dtype=F64)
    # m_1 = 0, m_2 = η v_1 = 0.5, m_3 = η² v_1 + η v_2 = 0.25 + 1 = 1.25
    assert torch.equal(mo.value_momentum(v, 0.5), torch.tensor([[0.0], [0.5], [1.25]], dtype=F64))


def test_ema_would_catch_the_classic_slips():
    """A version that includes v_t, normalises by (1 − η) or decays the wrong way differs from the definition."""
    v, eta = rand(6, 2, seed=3), 0.5
    ref = naive_ema(v, eta)
    D = mo.momentum_decay_matrix(6, eta, dtype=F64)
    assert rel((D + torch.eye(6, dtype=F64)) @ v, ref) > 0.1
    assert rel((1 - eta) * (D @ v), ref) > 0.1
    assert rel(D.T @ v, ref) > 0.1


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_ema_preserves_dtype_and_device(dtype):
    v = rand(2, 5, 3, dtype=dtype)
    assert mo.value_momentum(v, 0.5).dtype == dtype and mo.value_momentum_loop(v, 0.5).dtype == dtype


@pytest.mark.parametrize("bad, err", [(1.0, ValueError), (-0.1, ValueError), (True, ValueError), ("0.5", ValueError)])
def test_bad_eta(bad, err):
    with pytest.raises(err, match="eta"):
        mo.value_momentum(rand(3, 2), bad)


def test_bad_values():
    with pytest.raises(ValueError, match=r"\(\.\.\., T, d\)"):
        mo.value_momentum(rand(3), 0.5)
    with pytest.raises(TypeError, match="torch.Tensor"):
        mo.value_momentum([[1.0]], 0.5)
    with pytest.raises(ValueError, match="floating"):
        mo.value_momentum(torch.ones(3, 2, dtype=torch.int64), 0.5)


# ------------------------------------------------------------------------------------------- MoAttn
def test_momentum_attention_is_softmax_plus_ema():
    q, k, v = rand(2, 7, 4, seed=1), rand(2, 7, 4, seed=2), rand(2, 7, 3, seed=3)
    out = mo.momentum_attention(q, k, v, 0.7)
    assert rel(out, softmax_attention(q, k, v, causal=True) + naive_ema(v, 0.7)) < 1e-12
    assert rel(mo.momentum_attention(q, k, v, 0.0), softmax_attention(q, k, v, causal=True)) == 0.0


def test_moattn_is_causal():
    layer = mo.MoAttn(8, 2, 4, eta=0.5, dtype=F64)
    E = rand(1, 6, 8, seed=4)
    E2 = E.clone()
    E2[:, 4:] += 1.0  # change the future of position 3
    assert torch.equal(layer(E)[:, :4], layer(E2)[:, :4])


def test_moattn_adds_the_projected_ema_before_w_o():
    layer = mo.MoAttn(8, 2, 4, eta=0.6, dtype=F64)
    plain = mo.MoAttn(8, 2, 4, eta=0.0, dtype=F64)
    plain.load_state_dict(layer.state_dict())
    E = rand(3, 5, 8, seed=5)
    _, _, v = layer.heads(E)  # (B, H, T, k)
    ema = naive_ema(v, 0.6).transpose(1, 2).reshape(3, 5, 8)  # concat heads
    assert rel(layer(E) - plain(E), layer.W_O(ema)) < 1e-12


def test_same_shapes_and_same_initial_weights_as_the_softmax_mixer():
    cfg = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, d_model=16)
    a = GPT(cfg, attention_mixer(cfg, "softmax"), generator=runtime.generator(7))
    b = GPT(cfg, mo.momentum_mixer(cfg, 0.5), generator=runtime.generator(7))
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[n], sb[n]) for n in sa)
    idx = torch.randint(0, 13, (2, 8), generator=runtime.generator(0))
    assert not torch.allclose(a(idx), b(idx))  # η = 0.5 changes the function


def test_exactness_values_are_tiny():
    ex = mo.momentum_exactness(seed=1)
    assert ex.ema_vs_loop < 1e-10 and ex.dual_vs_primal < 1e-10 and ex.eta0_vs_softmax < 1e-10


# ------------------------------------------------------------------------------------------- dual form
def test_momentum_coefficients_hand_computed():
    c = mo.momentum_coefficients(3, 0.5)
    assert torch.allclose(c, torch.tensor([1.75, 1.5, 1.0], dtype=F64), rtol=0, atol=1e-15)
    assert torch.equal(mo.momentum_coefficients(4, 0.0), torch.ones(4, dtype=F64))


@pytest.mark.parametrize("eta", [0.0, 0.5, 0.9])
def test_momentum_dual_equals_primal(eta):
    W0, x, e, q = rand(3, 2, 4, seed=1), rand(3, 9, 4, seed=2), rand(3, 9, 2, seed=3), rand(3, 4, seed=4)
    primal = (mo.momentum_update(W0, x, e, 0.2, eta) @ q[:, :, None])[..., 0]
    assert rel(mo.momentum_dual(W0, x, e, q, 0.2, eta), primal) < 1e-10


def test_momentum_dual_would_catch_velocity_weights():
    """Weighting e_i by η^{N−i} (the last velocity alone) is not the accumulated update."""
    W0, x, e, q = rand(1, 2, 3, seed=1), rand(1, 6, 3, seed=2), rand(1, 6, 2, seed=3), rand(1, 3, seed=4)
    primal = (mo.momentum_update(W0, x, e, 0.1, 0.8) @ q[:, :, None])[..., 0]
    w = 0.8 ** torch.arange(5, -1, -1, dtype=F64)
    wrong = (W0 @ q[:, :, None])[..., 0] + 0.1 * ((w * (x @ q[:, :, None])[..., 0])[:, None] @ e)[:, 0]
    assert rel(wrong, primal) > 1e-3


def test_momentum_update_validation():
    with pytest.raises(ValueError, match="W0"):
        mo.momentum_update(rand(2, 3), rand(1, 4, 3), rand(1, 4, 2), 0.1, 0.5)
    with pytest.raises(ValueError, match="matching"):
        mo.momentum_update(rand(1, 2, 3), rand(1, 4, 3), rand(1, 5, 2), 0.1, 0.5)
    with pytest.raises(ValueError, match="q must have shape"):
        mo.momentum_dual(rand(1, 2, 3), rand(1, 4, 3), rand(1, 4, 2), rand(1, 4), 0.1, 0.5)


# ------------------------------------------------------------------------------------------- the task
def test_recall_batch_targets_are_the_bound_values():
    s = mo.RECALL.cpu
    x, y = mo.recall_batch(s, 50, runtime.generator(0))
    assert x.shape == (50, s.n_pairs + 1) and y.shape == (50,)
    K, V = s.n_keys, s.n_values
    pairs, query = x[:, :-1] - K - V, x[:, -1]
    keys, vals = pairs // V, pairs % V
    assert bool((query < K).all()) and bool(((y >= K) & (y < K + V)).all())
    for b in range(50):
        assert len(set(keys[b].tolist())) == s.n_pairs  # distinct keys
        j = keys[b].tolist().index(int(query[b]))
        assert int(y[b]) == K + int(vals[b, j])
    assert int(x.max()) < s.vocab_size


def test_settings_validation():
    with pytest.raises(ValueError, match="n_pairs"):
        mo.RecallSettings(n_pairs=9, n_keys=8)
    with pytest.raises(ValueError, match="eta"):
        mo.RecallSettings(eta=1.0)
    with pytest.raises(ValueError, match="kind"):
        mo.new_recall_model("linear")


def test_sign_test_hand_computed():
    t = mo.sign_test([-3, -1, 0, 2, -5, -4])  # 4 lower, 1 higher, 1 tie: p = 2 (1 + 5) / 32
    assert t == mo.SignTest(4, 1, 1, 0.375)
    assert mo.sign_test([-1.0] * 9).p == pytest.approx(2 / 512)
    assert mo.sign_test([0, 0]).p == 1.0 and mo.sign_test([1, -1]).p == 1.0
    with pytest.raises(TypeError, match="diffs"):
        mo.sign_test(torch.tensor([1.0]))


def test_then_must_leave_room():
    with pytest.raises(ValueError, match="then"):
        mo.RecallSettings(steps=100, then=100)


def _comparison(escape, acc):
    n = len(escape["softmax"])
    z = {k: [[0]] * n for k in mo.MIXERS}
    return mo.MomentumComparison(tuple(range(n)), z, z, escape, {k: [0.0] * n for k in mo.MIXERS}, acc, 1000, 1.0,
                                 math.log(8))


def test_comparison_fields():
    c = _comparison({"softmax": [300, None, 500], "momentum": [400, 700, 500]},
                    {"softmax": [1.0, 0.4, 0.95], "momentum": [0.99, 0.97, 1.0]})
    assert c.escape_steps("softmax") == [300, 1000, 500]
    assert c.diff() == [100, -300, 0]
    assert c.sign_test() == mo.SignTest(1, 1, 1, 1.0)
    assert c.not_escaped("softmax") == 1 and c.not_escaped("momentum") == 0
    assert c.solved("softmax") == 2 and c.solved("momentum") == 3
    assert c.converged()  # the unsolved softmax run never escaped: reported, not a failure
    # an escaped run below 0.9 accuracy fails the judge (mutant: converged() = all runs below chance loss passed)
    assert not c._replace(final_acc={"softmax": [1.0, 0.4, 0.85], "momentum": [0.99, 0.97, 1.0]}).converged()


@pytest.mark.slow
def test_momentum_comparison_smoke():
    s = dataclasses.replace(mo.RECALL.cpu, steps=40, then=20, eval_every=20, seeds=2, eval_size=64)
    c = mo.momentum_comparison(s, progress=False)
    assert c.seeds == (0, 1) and c.steps["softmax"][0] == [0, 20, 39] and c.cap == 20
    assert all(len(c.curves[k]) == 2 and len(c.curves[k][0]) == 3 for k in mo.MIXERS)
    assert c.escape == {k: [None, None] for k in mo.MIXERS}  # 40 updates: still on the plateau
    assert c.curves["softmax"][0][0] == pytest.approx(c.curves["momentum"][0][0], rel=0.5)
