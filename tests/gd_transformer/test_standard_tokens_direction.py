"""Part III, "Standard tokens": Proposition 3's copy direction (App. A.5), the reverse one, and the causal mask."""

from __future__ import annotations

import pytest
import torch

from icl_course import gd_transformer as gt
from icl_course import runtime, solvers, tasks
from icl_course.models import LinearSelfAttention, LSAStack, StandardTokenLSA
from tests.helpers import F64


def _batch(seed=12, B=8, N=5, dx=3, dy=1):
    return tasks.sample_linear_regression(B, N, dx, dy, generator=runtime.generator(seed), dtype=F64)


def _one_gd_step(b, lr):
    return solvers.predict(solvers.gd(b.x, b.y, lr), b.x_query)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_copy_then_gd_is_one_gd_step(seed):
    # E12a: Proposition 3 as in App. A.5 (every input token copies the next token's label) + Proposition 1's layer
    assert gt.copy_gd_errors([40.0], seed=seed)[40.0] < 1e-12
    assert gt.copy_gd_errors([40.0], seed=seed, direction="next")[40.0] < 1e-12


@pytest.mark.parametrize(("B", "N", "dx", "dy", "lr"), [(6, 5, 3, 1, 0.8), (4, 7, 2, 2, 1.3), (3, 1, 4, 1, 0.5)])
def test_label_copy_construction_matches_gd_at_other_sizes(B, N, dx, dy, lr):
    b = _batch(31 + N, B, N, dx, dy)
    model = gt.constructed_label_copy_gd(dx, dy, N, lr, dtype=F64)
    got = gt.predict(model, b.tokens(), dx)
    assert torch.allclose(got, _one_gd_step(b, lr), rtol=1e-10, atol=1e-13)


def test_label_copy_error_falls_with_the_softmax_sharpness():
    values = list(gt.copy_gd_errors([5.0, 10.0, 20.0, 30.0]).values())
    assert all(b < a / 10 for a, b in zip(values, values[1:])) and values[0] > 1e-2


def test_label_copy_layer_reads_the_next_token():
    model = gt.constructed_label_copy_gd(3, 1, 5, 0.5, dtype=F64)
    attn = gt.copy_attention(model, _batch())  # (2N+1, 2N)
    scores = gt.copy_scores(attn)
    assert scores["x_reads_y"] == pytest.approx(1.0, abs=1e-12)  # input token 2i reads its label at 2i + 1
    # only the last target has no successor: it attends uniformly (1/2N) to all 2N keys
    assert scores["y_reads_x"] == pytest.approx(0.1 / 5, abs=1e-12)
    t = torch.arange(attn.shape[1] - 1)
    assert torch.allclose(attn[t, t + 1], torch.ones_like(attn[t, 0]), atol=1e-12)  # every token: its successor
    assert float(attn[-1, 0]) == pytest.approx(1.0, abs=1e-12)  # the query, which has no successor, reads token 0


@torch.no_grad()
def test_the_two_directions_put_the_pair_in_different_tokens():
    b = _batch()
    E = gt.new_standard_model(dx=3, n_context=5).tokens(b.tokens()).to(F64)  # (B, 11, 3 + 1 + 11)
    nxt = gt.copy_layer(3, 1, 5, direction="next", dtype=F64)(E)
    prev = gt.copy_layer(3, 1, 5, direction="previous", dtype=F64)(E)
    # "next": input tokens gain their label in the y-slot; "previous": targets gain their input in the x-slot
    assert torch.allclose(nxt[:, 0:10:2, 3:4], b.y, atol=1e-12) and torch.equal(nxt[:, 1:10:2, :3], E[:, 1:10:2, :3])
    assert torch.allclose(prev[:, 1:10:2, :3], b.x, atol=1e-12) and torch.equal(prev[:, 0:10:2, 3:4], E[:, 0:10:2, 3:4])
    assert torch.allclose(nxt[:, -1, 3], torch.zeros_like(nxt[:, -1, 3]), atol=1e-12)  # the query gets no label


def test_both_directions_are_one_gd_step_and_the_old_name_keeps_the_previous_token_one():
    errs = gt.copy_gd_errors([40.0], direction="previous")
    assert errs[40.0] < 1e-12
    scores = gt.copy_scores(gt.copy_attention(gt.constructed_copy_gd(3, 1, 5, 0.5, dtype=F64), _batch()))
    assert scores["y_reads_x"] == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------- the causal mask
def _causal_stack(first="softmax", seed=3, D=9):
    gen = runtime.generator(seed)
    layers = [gt.CausalSelfAttention(D, attention=first, init_scale=2.0, generator=gen, dtype=F64),
              gt.CausalSelfAttention(D, init_scale=2.0, generator=gen, dtype=F64)]
    return LSAStack(layers)


@pytest.mark.parametrize("first", ["softmax", "linear"])
@torch.no_grad()
def test_a_causal_token_does_not_depend_on_later_tokens(first):
    stack = _causal_stack(first)
    E = torch.randn(2, 7, 9, generator=runtime.generator(5), dtype=F64)
    out = stack(E)
    for s in range(1, 6):  # perturb context token s
        E2 = E.clone()
        E2[:, s] += torch.randn(2, 9, generator=runtime.generator(50 + s), dtype=F64)
        out2 = stack(E2)
        assert torch.equal(out2[:, :s], out[:, :s]), f"a token before {s} changed"
        assert float((out2[:, s + 1] - out[:, s + 1]).abs().max()) > 1e-6, f"token {s + 1} ignores token {s}"
        assert float((out2[:, -1] - out[:, -1]).abs().max()) > 1e-6, "the query must read the whole context"


@torch.no_grad()
def test_the_query_reads_the_whole_context_and_the_mask_leaves_query_only_unchanged():
    stack = _causal_stack()
    E = torch.randn(2, 7, 9, generator=runtime.generator(6), dtype=F64)
    full = stack(E)
    assert torch.allclose(stack(E, query_only=True), full[:, -1:], rtol=1e-12, atol=1e-14)
    unmasked = LSAStack([LinearSelfAttention.from_matrices(**stack.layer(0).matrices(), attention="softmax"),
                         LinearSelfAttention.from_matrices(**stack.layer(1).matrices())])
    # the first token sees only itself; the query's row is unmasked in layer 1
    layer0 = stack.layer(0)
    assert torch.allclose(layer0(E)[:, -1], unmasked.layer(0)(E)[:, -1], rtol=1e-12, atol=1e-14)
    assert not torch.allclose(layer0(E)[:, 0], unmasked.layer(0)(E)[:, 0])


def test_causal_attention_map_is_lower_triangular():
    model = gt.new_standard_model(causal=True, seed=0, dx=3, n_context=5, init_scale=4.0)
    attn = gt.copy_attention(model, tasks.sample_linear_regression(8, 5, 3, generator=runtime.generator(12)))
    assert torch.equal(attn.triu(1), torch.zeros_like(attn))
    assert torch.allclose(attn.sum(-1), torch.ones(attn.shape[0]), atol=1e-6)
    assert gt.copy_scores(attn)["x_reads_y"] == 0.0


@torch.no_grad()
def test_under_a_causal_mask_only_the_previous_token_construction_survives():
    b = _batch()
    for direction, survives in (("previous", True), ("next", False)):
        built = gt.constructed_label_copy_gd if direction == "next" else gt.constructed_copy_gd
        stack = built(3, 1, 5, 0.7, dtype=F64).stack
        causal = LSAStack([gt.CausalSelfAttention.from_matrices(**stack.layer(i).matrices(),
                                                                attention=stack.layer(i).attention)
                           for i in range(2)])
        got = gt.predict(StandardTokenLSA(causal, 3, 1, 5), b.tokens(), 3)
        exact = torch.allclose(got, _one_gd_step(b, 0.7), rtol=1e-10, atol=1e-13)
        assert exact == survives, direction


def test_causal_model_starts_from_the_same_weights():
    a, c = gt.new_standard_model(seed=4), gt.new_standard_model(causal=True, seed=4)
    assert all(isinstance(c.stack.layer(i), gt.CausalSelfAttention) for i in range(2))
    for i in range(2):
        for name, m in a.stack.layer(i).matrices().items():
            assert torch.equal(m, c.stack.layer(i).matrices()[name])


def test_train_causal_runs():
    run = gt.train_standard_tokens(causal=True, seed=0, max_steps=50, eval_size=200)
    assert isinstance(run.model.stack.layer(0), gt.CausalSelfAttention) and run.history.steps == 50


# ---------------------------------------------------------------- bad input
def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="direction must be one of \\['next', 'previous'\\]"):
        gt.copy_layer(3, 1, 5, direction="forward")
    with pytest.raises(ValueError, match="direction"):
        gt.copy_gd_errors([40.0], direction="both")
    with pytest.raises(ValueError, match="n_context must be a positive int"):
        gt.constructed_label_copy_gd(3, 1, 0, 1.0)
    with pytest.raises(TypeError, match="dx must be a positive int"):
        gt.constructed_label_copy_gd(3.0, 1, 5, 1.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        gt.constructed_label_copy_gd(3, 1, 5, 1.0, beta=-1.0)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        gt.constructed_label_copy_gd(3, 1, 5, -0.5)
    with pytest.raises(TypeError, match="causal must be a bool"):
        gt.new_standard_model(causal="yes")
    layer = gt.CausalSelfAttention(9, dtype=F64)
    with pytest.raises(ValueError, match="E must have shape \\(B, T, D=9\\)"):
        layer(torch.zeros(7, 9, dtype=F64))
    with pytest.raises(ValueError, match="E must have shape \\(B, T, D=9\\)"):
        layer(torch.zeros(2, 7, 8, dtype=F64))
    with pytest.raises(TypeError, match="dtype"):
        layer(torch.zeros(2, 7, 9))
    with pytest.raises(ValueError, match="at least one context token"):
        layer(torch.zeros(2, 1, 9, dtype=F64))
    model = gt.constructed_label_copy_gd(3, 1, 5, 1.0, dtype=F64)
    with pytest.raises(ValueError, match="n_context=5"):
        model(torch.zeros(2, 4, 4, dtype=F64))


def test_with_gd_step_puts_proposition_1_on_the_first_layer():
    b = tasks.regression_eval_set(64, 10, 10, seed=4, dtype=torch.float64)
    for build in (gt.constructed_label_copy_gd, gt.constructed_copy_gd):
        swapped = gt.with_gd_step(build(10, 1, 10, 2.0, dtype=torch.float64), 3.0)
        with torch.no_grad():
            got = gt.predict(swapped, b.tokens(), 10)
            ref = gt.predict(build(10, 1, 10, 3.0, dtype=torch.float64), b.tokens(), 10)
        assert torch.allclose(got, ref, rtol=1e-10, atol=1e-13)
    masked = gt.new_standard_model(causal=True)
    assert isinstance(gt.with_gd_step(masked, 1.0).stack.layer(1), gt.CausalSelfAttention)
    assert gt.with_gd_step(masked, 1.0).stack.layer(0) is masked.stack.layer(0)  # shared, not copied
    with pytest.raises(TypeError, match="two-layer StandardTokenLSA"):
        gt.with_gd_step(gt.constructed_lsa(10, 1, 10, 1.0), 1.0)
    with pytest.raises(ValueError, match="lr"):
        gt.with_gd_step(masked, float("nan"))


def test_causal_uniform_level_is_what_an_even_causal_attention_gives():
    """A causal map that spreads each row evenly over the keys it sees: the target's weight on its own input is
    exactly copy_scores(causal=True)["uniform"] (the unmasked 1 / 2N would be wrong)."""
    K = 10  # N = 5
    even = torch.tril(torch.ones(K + 1, K, dtype=torch.float64))
    even = even / even.sum(-1, keepdim=True)
    scores = gt.copy_scores(even, causal=True)
    assert scores["y_reads_x"] == pytest.approx(scores["uniform"], rel=1e-12)
    assert scores["uniform"] == pytest.approx(sum(1 / (2 * i + 2) for i in range(5)) / 5, rel=1e-12)
    assert gt.copy_scores(even)["uniform"] == pytest.approx(1 / K)
    flat = torch.full((K + 1, K), 1 / K)
    assert gt.copy_scores(flat)["y_reads_x"] == pytest.approx(gt.copy_scores(flat)["uniform"])


def test_copy_readout_finds_a_copy_wherever_it_is_written_and_tells_the_directions_apart():
    """The previous-token construction writes x_i into the target's x-slot: the read-out finds it (R² = 1) and one GD
    step on the read-out pairs is GD-1 itself. Proposition 3 writes the copy the other way (into the input tokens):
    nothing of x_i is in the target tokens, and the read-out step is no better than predicting zero. A copy moved
    out of the x-slot (a rotation into the position coordinates) is still found by the read-out, not by the slot."""
    fit, ev = tasks.regression_eval_set(1500, 10, 10, seed=11), tasks.regression_eval_set(1500, 10, 10, seed=12)
    prev = gt.copy_readout(gt.constructed_copy_gd(10, 1, 10, 200 / 33, dtype=F64), fit, ev)
    assert prev["r2_x"] > 0.999 and prev["r2_x_slot"] > 0.999 and abs(prev["r2_x_before"]) < 0.01
    assert prev["loss"] == pytest.approx(prev["loss_gd"], rel=1e-3) and prev["lr"] == pytest.approx(200 / 33, rel=0.05)
    nxt = gt.copy_readout(gt.constructed_label_copy_gd(10, 1, 10, 200 / 33, dtype=F64), fit, ev)
    assert nxt["r2_x"] < 0.01 and nxt["loss"] > 2 * nxt["loss_gd"]
    moved = gt.constructed_copy_gd(10, 1, 10, 200 / 33, dtype=F64)
    layer = moved.stack.layer(0)
    with torch.no_grad():  # write the copied x into the position coordinates of inputs 0, 2, …, 18 instead
        P = layer.P.weight.clone()  # (no target token carries those one-hots)
        layer.P.weight.zero_()
        layer.P.weight[11:31:2] = P[:10]
        layer.P.weight[10] = P[10]
    hidden = gt.copy_readout(moved, fit, ev)
    assert hidden["r2_x_slot"] < 0.01 and hidden["r2_x"] > 0.99
    with pytest.raises(TypeError, match="model"):
        gt.copy_readout(gt.constructed_lsa(10, 1, 10, 1.0), fit, ev)
    with pytest.raises(TypeError, match="fit"):
        gt.copy_readout(gt.constructed_copy_gd(10, 1, 10, 1.0), fit.tokens(), ev)
