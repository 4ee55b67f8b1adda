"""Exercises of Part IV, chapter "Causal linear attention is one GD step".

Each reference solution below is the exact code the chapter shows in its solution block (a test keeps them
identical); each stub is what the student edition shows instead.
"""

from __future__ import annotations

import torch

from ... import solvers, tasks
from ...causal import CausalSelfAttention, CausalStack
from .. import exercise
from ._common import PART, _expect, _states


# ---------------------------------------------------------------- 1. the constructed tokens
@exercise(part=PART, name="build_tokens", title="Build the constructed tokens from the raw sequence",
          difficulty="★☆☆", minutes=10,
          hint="Token t is (0, s_t, s_t, s_{t−1}) with s_0 = 0: shift the sequence down by one position for the last "
               "slot, and put the zero slot first (that is where the prediction will be written).",
          stub='''def build_tokens(states):
    """states (B, T, D) = s_1 … s_T -> tokens (B, T, 4D), token t = (0, s_t, s_t, s_{t-1}) with s_0 = 0."""
    # YOUR CODE HERE
    raise NotImplementedError("build_tokens")
''')
def check_build_tokens(fn) -> None:
    s = _states(10)
    got = _expect(fn(s), (s.shape[0], s.shape[1], 4 * s.shape[2]), "build_tokens(states)")
    ref = tasks.mesa_tokens(s)
    D = s.shape[2]
    assert torch.equal(got[..., :D], ref[..., :D]), "the first slot must be zeros: the prediction is written there"
    assert torch.equal(got[:, 0, 3 * D:], ref[:, 0, 3 * D:]), "the first token's last slot is s_0 = 0"
    assert torch.allclose(got[..., 3 * D:], ref[..., 3 * D:]), (
        "the last slot must hold the previous state s_{t−1}: shift by one position, not the next state")
    assert torch.allclose(got, ref), "slots 2 and 3 must both hold the current state s_t"


# ---------------------------------------------------------------- 2. one GD step on the mesa objective
@exercise(part=PART, name="gd_on_sequence", title="One GD step on the mesa objective at every position",
          difficulty="★★☆", minutes=20,
          hint="L_t(W) = ½ Σ_{j≤t} ‖s_j − W s_{j−1}‖² (no 1/t). From W = 0 one step gives "
               "W_t = η Σ_{j≤t} s_j s_{j−1}ᵀ, and the prediction is W_t s_t.",
          stub='''def gd_on_sequence(states, lr):
    """states (B, T, D) -> predictions (B, T, D): one GD step with step size lr from W = 0 on
    L_t(W) = 1/2 sum_{j <= t} ||s_j - W s_{j-1}||^2 (s_0 = 0), applied to s_t, at every position t."""
    # YOUR CODE HERE
    raise NotImplementedError("gd_on_sequence")
''')
def check_gd_on_sequence(fn) -> None:
    s = _states(11)
    got = _expect(fn(s, 0.05), tuple(s.shape), "gd_on_sequence(states, lr)")
    ref = solvers.causal_gd_predict(s, 0.05)
    if torch.allclose(got, ref, rtol=1e-9, atol=1e-12):
        return
    t = torch.arange(1, s.shape[1] + 1, dtype=s.dtype)[None, :, None]
    assert not torch.allclose(got, ref / t, rtol=1e-6), "the sum is not normalised: drop the 1/t"
    prev = torch.cat([torch.zeros_like(s[:, :1]), s[:, :-1]], dim=1)
    strict = 0.05 * (s @ prev.transpose(1, 2)).tril(-1) @ s
    assert not torch.allclose(got, strict, rtol=1e-6), (
        "the newest pair (s_{t−1}, s_t) is visible at position t: sum over j ≤ t, not j < t")
    assert not torch.allclose(got, -ref, rtol=1e-6), "check the sign: a descent step moves against the gradient"
    raise AssertionError(f"predictions differ from one GD step (max abs error {float((got - ref).abs().max()):.3g})")


# ---------------------------------------------------------------- 3. the layer that takes the step
@exercise(part=PART, name="causal_gd_weights",
          title="Weights that make causal attention one GD step",
          difficulty="★☆☆", minutes=10,
          hint="Token t is (0, s_t, s_t, s_{t−1}). The score of key j must be s_{j−1}·s_t and the value s_j; the "
               "output goes into the first slot, scaled by η. Each matrix reads or writes one D-block.",
          stub='''def causal_gd_weights(dim, lr):
    """Return (W_Q, W_K, W_V, W_O), float64, shapes (D, 4D), (D, 4D), (D, 4D), (4D, D) in (out, in) layout,
    such that one causal linear-attention head on tokens (0, s_t, s_t, s_{t-1}) writes one GD step's
    prediction of s_{t+1} into the first slot."""
    # YOUR CODE HERE
    raise NotImplementedError("causal_gd_weights")
''')
def check_causal_gd_weights(fn) -> None:
    s, D, lr = _states(12), 4, 0.07
    mats = fn(D, lr)
    assert isinstance(mats, (tuple, list)) and len(mats) == 4, "return the four matrices (W_Q, W_K, W_V, W_O)"
    shapes = ((D, 4 * D),) * 3 + ((4 * D, D),)
    mats = [_expect(m, sh, n).to(torch.float64) for m, sh, n in zip(mats, shapes, ("W_Q", "W_K", "W_V", "W_O"))]
    model = CausalStack([CausalSelfAttention.from_matrices(*mats)])
    with torch.no_grad():
        out = model(tasks.mesa_tokens(s))
    ref = solvers.causal_gd_predict(s, lr)
    assert torch.allclose(out[..., D:], tasks.mesa_tokens(s)[..., D:]), (
        "only the first slot may change: W_O must write into rows 0..D−1 only")
    got = out[..., :D]
    assert not torch.allclose(got, -ref, rtol=1e-6), "the prediction has the wrong sign"
    prev_as_value = lr * (s @ torch.cat([torch.zeros_like(s[:, :1]), s[:, :-1]], 1).transpose(1, 2)).tril() @ \
        torch.cat([torch.zeros_like(s[:, :1]), s[:, :-1]], 1)
    assert not torch.allclose(got, prev_as_value, rtol=1e-6), "the values must be the targets s_j, not the inputs"
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12), (
        f"the layer's prediction differs from one GD step (max abs error {float((got - ref).abs().max()):.3g}); "
        "check which slot the queries and keys read")


# ---------------------------------------------------------------- 4. read η off a layer
@exercise(part=PART, name="read_sequence_step_size", title="Read the step size off a layer's weights", difficulty="★☆☆",
          minutes=10,
          hint="Only the products W_Kᵀ W_Q and W_O W_V are identifiable. η is the (key s_{j−1}, query s_t) block "
               "of the first times the (zero slot, value s_j) block of the second — take the mean of each block's "
               "diagonal. Other blocks belong to other terms; on the masked tokens (0, 0, s_t, s_{t−1}) slot 1 is "
               "zero.",
          stub='''def read_sequence_step_size(W_Q, W_K, W_V, W_O, dim):
    """The coefficient eta of the GD term (key s_{j-1} . query s_t, value s_j, written into the zero slot) of a
    one-head causal layer, from its weights ((k, 4D), (k, 4D), (k, 4D), (4D, k) in (out, in) layout) on the masked
    tokens (0, 0, s_t, s_{t-1}). The layer may also compute other terms."""
    # YOUR CODE HERE
    raise NotImplementedError("read_sequence_step_size")
''')
def check_read_sequence_step_size(fn) -> None:
    gen = torch.Generator().manual_seed(13)
    D = 4
    slot = lambda i: torch.eye(D, 4 * D, dtype=torch.float64).roll(i * D, dims=1)  # (D, 4D): reads slot i
    for lr, (q_prev, k_cur, v_prev) in ((0.03, (0.0, 0.0, 0.0)), (0.11, (0.0, 0.0, 0.0)), (0.05, (0.4, 0.7, -0.6)),
                                        (0.02, (-0.3, 0.5, 0.9))):
        # the GD head, plus distractors: queries also read s_{t−1}, keys s_j, values s_{j−1} (other terms of the eight)
        base = {"W_Q": slot(2) + q_prev * slot(3), "W_K": slot(3) + k_cur * slot(2),
                "W_V": slot(2) + v_prev * slot(3), "W_O": lr * slot(0).T}
        A = torch.randn(D, D, generator=gen, dtype=torch.float64) + 3 * torch.eye(D, dtype=torch.float64)
        c = 2.5
        W_Q, W_K = torch.linalg.inv(A).T @ base["W_Q"] * c, A @ base["W_K"]  # same W_Kᵀ W_Q up to c
        W_V, W_O = base["W_V"], base["W_O"] / c
        got = fn(W_Q, W_K, W_V, W_O, D)
        assert isinstance(got, (float, int)) or (isinstance(got, torch.Tensor) and got.numel() == 1), \
            "return one number"
        distractors = " (this layer also has other score and value blocks)" if k_cur else ""
        assert abs(float(got) - lr) < 1e-9, (
            f"read {float(got):.4g} for a layer whose GD term has η = {lr}{distractors}: read only the block of "
            "W_Kᵀ W_Q for key s_{j−1} and query s_t and the block of W_O W_V from value s_j into the zero slot — "
            "the products, not the factors (they were rescaled and rotated here)")
