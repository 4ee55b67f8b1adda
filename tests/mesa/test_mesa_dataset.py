"""Part IV, chapter "Building the training set: a softmax layer copies the previous token": position codes, raw
tokens, the hand-built copy-then-descend model, the copy diagnostics, training (smoke), claims and exercise slips."""

from __future__ import annotations

import pytest
import torch

from icl_course import mesa, reproduce, runtime, solvers, tasks
from icl_course.claims.mesa import mesa_dataset as cl
from tests.helpers import F64, rel


def _batch(seed=0, B=4, T=20, D=10):
    return tasks.sample_linear_dynamics(B, T, D, generator=runtime.generator(seed), dtype=F64)


def test_positional_codes_shift_by_one_rotation():
    from icl_course.mesa.mesa_dataset import _shift_rotation

    pe = mesa.positional_codes(40, 16, dtype=F64)
    R = _shift_rotation(16)
    assert rel(pe[:-1] @ R.T, pe[1:]) < 1e-12
    assert rel(R @ R.T, torch.eye(16, dtype=F64)) < 1e-12  # a rotation
    with pytest.raises(ValueError, match="dim"):
        mesa.positional_codes(10, 7)


def test_raw_tokens_hold_only_the_state_and_the_position():
    b = _batch()
    E = mesa.raw_tokens(b.inputs, 16)
    assert E.shape == (4, 20, 56)
    assert torch.equal(E[..., 10:20], b.inputs)
    assert not E[..., :10].any() and not E[..., 20:40].any()
    assert torch.equal(E[0, :, 40:], mesa.positional_codes(20, 16, dtype=F64))
    with pytest.raises(ValueError, match="states"):
        mesa.raw_tokens(b.inputs[0])


@pytest.mark.parametrize("seed", [0, 1])
def test_copy_then_descend_is_gd1_as_beta_grows(seed):
    errors = [mesa.copy_construction_error(b, seed=seed) for b in (3.0, 10.0, 30.0, 100.0)]
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-12


def test_the_copy_head_attends_to_the_previous_position():
    model = mesa.constructed_copy_model(0.03, 100.0, dtype=F64)
    w = mesa.previous_token_weight(model, _batch(2, T=50))
    assert torch.allclose(w[0, 1:], torch.ones(49, dtype=F64), atol=1e-10) and float(w[0, 0]) == 0.0
    with pytest.raises(TypeError, match="softmax"):
        mesa.previous_token_weight(mesa.new_raw_model("linear"), _batch(2, T=50, D=10).__class__(
            *(x.float() for x in _batch(2, T=50))))


def test_the_construction_would_catch_a_head_that_copies_the_token_itself():
    model = mesa.constructed_copy_model(0.03, 100.0, dtype=F64)
    with torch.no_grad():  # keys p_j instead of p_{j+1}: the head copies s_t, and the GD layer is no longer GD
        model.layers[0].W_K.weight[:16, 40:] = torch.eye(16, dtype=F64)
    b = _batch(3, T=50)
    assert rel(mesa.raw_predictions(model, b), solvers.causal_gd_predict(b.inputs, 0.03)) > 0.1


def test_copy_probe_reads_the_previous_state_only_after_a_copy():
    b_fit, b_ev = _batch(4, B=300, T=30), _batch(5, B=300, T=30)
    r2 = mesa.copy_probe(mesa.constructed_copy_model(0.03, 100.0, dtype=F64), b_fit, b_ev)
    assert r2.shape == (2, 30)
    assert float(r2[0, 1:].mean()) < 0.1 and float(r2[1, 1:].min()) > 0.999
    ev = mesa.copy_evidence(torch.ones(1, 30, dtype=F64), r2)
    assert ev.prev_weight == pytest.approx(1.0) and ev.probe_layer1 > 0.999
    assert ev.uniform_weight == pytest.approx(sum(1 / t for t in range(2, 31)) / 29)  # mean of 1/t, t = 2 … 30


def test_train_raw_model_smoke():
    run = mesa.train_raw_model("softmax", seed=0, steps=3, progress=False)
    assert run.model.layers[0].attention == "softmax" and run.model.layers[1].attention == "linear"
    assert run.model.layers[0].dim == 4 * mesa.DYNAMICS.dim + mesa.RAW.cpu.pe_dim
    with pytest.raises(ValueError, match="first"):
        mesa.new_raw_model("mesa")


def _judge(cid, value):
    return reproduce.REGISTRY[cid].judge(value, None)


def test_claim_judges_can_fail():
    assert _judge("M12", (0.7, 0.3, 3e-3, 3e-9, 2e-16))
    assert not _judge("M12", (0.7, 0.3, 3e-3, 3e-9, 2e-8))
    assert not _judge("M12", (0.7, 0.8, 3e-3, 3e-9, 2e-16))
    ok = mesa.CopyEvidence(0.45, 0.07, -0.02, 0.82)
    assert _judge("M13", ok)
    assert not _judge("M13", ok._replace(prev_weight=0.2))
    assert not _judge("M13", ok._replace(probe_layer1=0.5))
    assert not _judge("M13", ok._replace(probe_input=0.5))
    assert not _judge("M13", ok._replace(prev_weight=0.3))  # above 4 × uniform (0.28), still no copy head
    raw = mesa.RawVsConstructed(0.79, 1.12, 0.90, 0.84, 1.68)
    assert _judge("M18", raw)
    assert not _judge("M18", raw._replace(softmax_first=0.86))  # below plain GD-1, above clipped GD-1
    assert not _judge("M18", raw._replace(linear_first=0.90))
    assert cl.BETAS[-1] == 100.0


def test_exercise_checkers_name_the_classic_slips():
    from icl_course.exercises import REGISTRY, ExerciseFailed
    from icl_course.exercises.mesa import mesa_dataset as ex

    def backwards(dim, base=100.0):
        return REGISTRY["mesa.shift_rotation"].solution(dim, base).T

    def attends_to_itself(T, dim, beta):
        p = mesa.positional_codes(T, dim, dtype=torch.float64)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        return torch.softmax((beta * p @ p.T).masked_fill(~causal, float("-inf")), dim=-1)

    def copies_as_values(states, copied, lr):
        return lr * (states @ copied.transpose(1, 2)).tril() @ copied

    def divides_by_T(states):
        return torch.cumsum(states, dim=1) / states.shape[1]

    for check, wrong, message in ((ex.check_shift_rotation, backwards, "one step back"),
                                  (ex.check_copy_attention, attends_to_itself, "moved one step on"),
                                  (ex.check_gd_on_copied, copies_as_values, "values are the states"),
                                  (ex.check_uniform_copy, divides_by_T, "divide by t")):
        with pytest.raises(ExerciseFailed, match=message):
            check(wrong)

    def no_mask(T, dim, beta):
        p = mesa.positional_codes(T + 1, dim, dtype=torch.float64)
        return torch.softmax(beta * p[:T] @ p[1:].T, dim=-1)

    def query_moved(T, dim, beta):
        p = mesa.positional_codes(T + 1, dim, dtype=torch.float64)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        return torch.softmax((beta * p[1:] @ p[:T].T).masked_fill(~causal, float("-inf")), dim=-1)

    for wrong, message in ((no_mask, "later tokens"), (query_moved, "not the query's")):
        with pytest.raises(ExerciseFailed, match=message):
            ex.check_copy_attention(wrong)


def test_exercise_checkers_accept_float32_answers():
    """The natural student line uses the position codes' default float32: a correct answer in float32 must pass."""
    from icl_course.exercises import REGISTRY
    from icl_course.exercises.mesa import mesa_dataset as ex

    f32 = lambda fn: (lambda *a: fn(*(x.float() if isinstance(x, torch.Tensor) else x for x in a)).float())
    for name in ("shift_rotation", "copy_attention", "gd_on_copied", "uniform_copy"):
        getattr(ex, f"check_{name}")(f32(REGISTRY[f"mesa.{name}"].solution))  # raises if a float32 answer is refused
