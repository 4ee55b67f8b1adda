"""Exercises of Part III, chapter "Standard tokens: copy, then descend".

Each reference solution below is the exact code the chapter shows in its solution block (a test keeps them
identical); each stub is what the student edition shows instead.
"""

from __future__ import annotations

import torch

from ... import gd_transformer as gt
from ... import runtime, solvers, tasks
from ...models import LinearSelfAttention, LSAStack
from .. import exercise
from ._common import PART, _batch, _expect


# ---------------------------------------------------------------- 15. the standard token layout
@exercise(part=PART, name="to_standard_tokens", title="Inputs and targets in separate tokens", difficulty="★☆☆",
          minutes=10,
          hint="Token 2i is (x_{i+1}, 0, e_{2i}), token 2i+1 is (0, y_{i+1}, e_{2i+1}), the last is (x_q, 0, e_{2N}).",
          stub='''def to_standard_tokens(x, y, x_query):
    """The sequence x_1, y_1, …, x_N, y_N, x_q as (B, 2N+1, dx+dy+2N+1) tokens with one-hot positions."""
    # YOUR CODE HERE
    raise NotImplementedError("to_standard_tokens")
''')
def check_to_standard_tokens(fn) -> None:
    b = _batch(20, 3, 5, 2, 2)
    got = _expect(fn(b.x, b.y, b.x_query), (3, 11, 15), "to_standard_tokens(x, y, x_query)")
    ref = tasks.standard_tokens(b.x, b.y, b.x_query)
    assert torch.allclose(got, ref), "the layout differs: check the order x_1, y_1, …, x_N, y_N, x_q and the slots"


# ---------------------------------------------------------------- 16. the copy layer, the other way round
@exercise(part=PART, name="input_copy_weights", title="A copy layer that moves each input to its label",
          difficulty="★★☆", minutes=25,
          hint="Through the one-hot positions, give each token its one high score on the key just before it, and "
               "let the value carry only what a target token lacks. Token 0 has no predecessor: whatever it picks "
               "up must land where the GD layer cannot see it. The query reads too: it must come out as it came in.",
          stub='''def input_copy_weights(dx, dy, n_context, beta):
    """(W_Q, W_K, W_V, P), float64 (D, D), D = dx + dy + 2N + 1, of a softmax layer on standard tokens after which
    every target token holds (x_i, y_i) — the reverse of Proposition 3's copy, and the one a causal mask allows."""
    # YOUR CODE HERE
    raise NotImplementedError("input_copy_weights")
''')
def check_input_copy_weights(fn) -> None:
    from ...models import StandardTokenLSA

    for seed, (B, N, dx, dy), lr in ((21, (6, 5, 3, 1), 0.8), (22, (4, 7, 2, 2), 1.3)):
        b = _batch(seed, B, N, dx, dy)
        mats = fn(dx, dy, N, 40.0)
        assert isinstance(mats, (tuple, list)) and len(mats) == 4, "return the four matrices (W_Q, W_K, W_V, P)"
        D, p0 = dx + dy + 2 * N + 1, dx + dy
        mats = [_expect(m, (D, D), name).to(torch.float64) for m, name in zip(mats, ("W_Q", "W_K", "W_V", "P"))]
        gd_layer = gt.constructed_copy_gd(dx, dy, N, lr, dtype=torch.float64).stack.layer(1).matrices()
        for cls, where in ((LinearSelfAttention, ""), (gt.CausalSelfAttention, " under a causal mask")):
            copy = cls.from_matrices(*mats, attention="softmax")
            model = StandardTokenLSA(LSAStack([copy, cls.from_matrices(**gd_layer)]), dx, dy, N)
            scores = gt.copy_scores(gt.copy_attention(model, b))
            assert scores["y_reads_x"] > 0.999, (
                f"target tokens should attend to their own input{where} (mean weight {scores['y_reads_x']:.3f})")
            with torch.no_grad():
                E = model.tokens(b.tokens())
                out = copy(E)
            moved = float((out[:, -1, :p0] - E[:, -1, :p0]).abs().max())
            assert moved < 1e-9, (
                f"the copy layer changes the query's x- and y-slots{where} (by up to {moved:.3g}); the GD layer "
                "reads x_q there and writes its prediction into the y-slot")
            leaked = float(out[:, 0:2 * N:2, dx:p0].abs().max())
            assert leaked < 1e-9, (
                f"after the copy layer an input token's y-slot is not 0{where} (up to {leaked:.3g}); in the GD layer "
                "it would add a spurious term to the step")
            with torch.no_grad():
                got = gt.predict(model, b.tokens(), dx)
            ref = solvers.predict(solvers.gd(b.x, b.y, lr), b.x_query)
            assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12), (
                f"copy + GD layer{where} differs from one GD step "
                f"(max abs error {float((got - ref).abs().max()):.3g}); is x_i copied, once and unscaled?")


# ---------------------------------------------------------------- 18. how much does a layer copy?
@exercise(part=PART, name="pair_attention", title="How much does a layer copy?", difficulty="★☆☆", minutes=10,
          hint="Token 2i is x_{i+1} and token 2i+1 is y_{i+1}; the keys are the first 2N tokens.",
          stub='''def pair_attention(attn):
    """From attention weights (2N+1, 2N) on the standard layout: the mean weight each target token puts on its own
    input, and the mean weight each input token puts on its own target."""
    # YOUR CODE HERE
    raise NotImplementedError("pair_attention")
''')
def check_pair_attention(fn) -> None:
    gen = runtime.generator(25)
    attn = torch.softmax(torch.randn(11, 10, generator=gen, dtype=torch.float64) * 3, dim=-1)
    got = fn(attn)
    assert isinstance(got, (tuple, list)) and len(got) == 2, "return the two mean weights (y reads x, x reads y)"
    ref = gt.copy_scores(attn)
    assert abs(float(got[0]) - ref["y_reads_x"]) < 1e-12, "the target tokens' weight on their inputs is wrong"
    assert abs(float(got[1]) - ref["x_reads_y"]) < 1e-12, "the input tokens' weight on their targets is wrong"
    model = gt.constructed_copy_gd(3, 1, 5, 1.0, dtype=torch.float64)
    b = _batch(26, 4, 5, 3, 1)
    y_reads_x, _ = fn(gt.copy_attention(model, b))
    assert abs(float(y_reads_x) - 1) < 1e-12, "the constructed copy layer should score 1 for targets reading inputs"
