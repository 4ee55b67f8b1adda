"""Unit tests for :mod:`icl_course.train`: exact global-norm clipping and the training loop."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from icl_course import runtime
from icl_course.train import History, clip_global_norm_, fit
from tests.helpers import F64


def params_with_grads(grads):
    ps = []
    for g in grads:
        p = nn.Parameter(torch.zeros_like(g))
        p.grad = g.clone()
        ps.append(p)
    return ps


def global_norm(ps):
    return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in ps))


# ---------------------------------------------------------------------------------------------------------------
# clip_global_norm_
# ---------------------------------------------------------------------------------------------------------------


@given(seed=st.integers(0, 2**31 - 1), ratio=st.floats(0.01, 100.0))
def test_clip_exact_rule(seed, ratio):
    g = runtime.generator(seed)
    grads = [torch.randn(3, 4, generator=g, dtype=F64), torch.randn(5, generator=g, dtype=F64)]
    ps = params_with_grads(grads)
    norm = global_norm(ps)
    c = norm / ratio  # ratio > 1: above the threshold
    returned = clip_global_norm_(ps, c)
    assert returned == pytest.approx(norm, rel=1e-12)  # the unclipped norm
    if norm >= c:
        assert global_norm(ps) == pytest.approx(c, rel=1e-12)  # exactly c, no epsilon
        for p, g0 in zip(ps, grads):
            torch.testing.assert_close(p.grad, g0 * (c / norm), rtol=1e-12, atol=0)
    else:
        for p, g0 in zip(ps, grads):
            assert torch.equal(p.grad, g0)  # untouched below the threshold


def test_clip_at_threshold_and_none():
    ps = params_with_grads([torch.tensor([0.25], dtype=F64)])
    assert clip_global_norm_(ps, 0.25) == 0.25
    assert float(ps[0].grad) == 0.25
    ps = params_with_grads([torch.tensor([3.0, 4.0], dtype=F64)])
    assert clip_global_norm_(ps, None) == 5.0
    assert torch.equal(ps[0].grad, torch.tensor([3.0, 4.0], dtype=F64))


def test_clip_skips_params_without_grad():
    p_none = nn.Parameter(torch.ones(3, dtype=F64))
    ps = params_with_grads([torch.tensor([3.0, 4.0], dtype=F64)]) + [p_none]
    assert clip_global_norm_(ps, 1.0) == 5.0
    assert p_none.grad is None
    assert clip_global_norm_([p_none], 1.0) == 0.0


def test_clip_differs_from_torch_clip_grad_norm():
    """torch's rule scales by c / (‖g‖ + 1e-6), always: visible at the official clip 1e-3."""
    c = 1e-3
    g0 = torch.tensor([1.2e-3, 1.6e-3], dtype=F64)  # norm 2e-3
    ours, theirs = params_with_grads([g0]), params_with_grads([g0])
    n_ours = clip_global_norm_(ours, c)
    n_theirs = float(torch.nn.utils.clip_grad_norm_(theirs, c))
    assert n_ours == pytest.approx(n_theirs, rel=1e-12)  # both return the unclipped norm
    assert global_norm(ours) == pytest.approx(c, rel=1e-12)
    torch_norm = global_norm(theirs)
    assert torch_norm == pytest.approx(c * 2e-3 / (2e-3 + 1e-6), rel=1e-12)
    assert abs(torch_norm - c) / c > 1e-4  # they differ ...
    assert abs(torch_norm - c) / c < 1e-3  # ... by the epsilon only
    # just below the threshold (within the epsilon) torch scales down, the exact rule does not
    g1 = torch.tensor([c * (1 - 1e-5)], dtype=F64)
    ours, theirs = params_with_grads([g1]), params_with_grads([g1])
    clip_global_norm_(ours, c)
    torch.nn.utils.clip_grad_norm_(theirs, c)
    assert torch.equal(ours[0].grad, g1)
    assert float(theirs[0].grad) < float(g1)


# ---------------------------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------------------------


def regression_problem(seed=0, n=64, d=3):
    g = runtime.generator(seed)
    X = torch.randn(n, d, generator=g, dtype=F64)
    Y = X @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=F64) + 0.3
    return X, Y


def mse(model, batch):
    X, Y = batch
    return 0.5 * (model(X) - Y).pow(2).mean()


def loss_value(model, batch):
    with torch.no_grad():
        return float(mse(model, batch))


def linear_model(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(3, 1, dtype=F64)


def test_fit_decreases_loss():
    X, Y = regression_problem()
    model = linear_model()
    before = loss_value(model, (X, Y))
    hist = fit(model, mse, lambda step: (X, Y), 300, lr=3e-2, clip=None, progress=False)
    assert isinstance(hist, History)
    assert hist.steps == 300 and len(hist.grad_norm) == 300
    assert hist.loss[0] == pytest.approx(before, rel=1e-12)  # loss at the initial weights
    assert hist.loss[-1] < 0.05 * hist.loss[0]
    assert loss_value(model, (X, Y)) < 0.05 * before  # trained in place
    assert hist.seconds > 0


def test_fit_records_unclipped_grad_norm():
    X, Y = regression_problem()
    model = linear_model()
    loss = mse(model, (X, Y))
    grads = torch.autograd.grad(loss, list(model.parameters()))
    expected = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
    hist = fit(model, mse, [(X, Y)], 1, clip=1e-6, progress=False)
    assert hist.grad_norm[0] == pytest.approx(expected, rel=1e-12)
    assert expected > 1e-6  # so clipping was active


def test_fit_uses_injected_batches_in_order():
    X, Y = regression_problem()
    batches = [(X[i:i + 8], Y[i:i + 8]) for i in range(0, 64, 8)]  # 8 distinct batches
    seen = []

    def on_step(step, model, batch, loss):
        seen.append((step, batch))
        assert loss.requires_grad is False
        assert float(loss) == pytest.approx(loss_value(model, batch), rel=1e-12)  # weights in use at `step`

    fit(linear_model(), mse, batches, 6, on_step=on_step, progress=False)
    assert [s for s, _ in seen] == list(range(6))
    assert all(b is batches[i] for i, (_, b) in enumerate(seen))


def test_fit_calls_batch_function_with_step():
    X, Y = regression_problem()
    calls = []

    def batches(step):
        calls.append(step)
        return X, Y

    fit(linear_model(), mse, batches, 7, progress=False)
    assert calls == list(range(7))


@pytest.mark.parametrize(
    ("steps", "every", "expected"),
    [(23, 5, [0, 5, 10, 15, 20, 22]), (21, 5, [0, 5, 10, 15, 20]), (1, 5, [0]), (4, 1, [0, 1, 2, 3])],
)
def test_fit_eval_schedule(steps, every, expected):
    X, Y = regression_problem()
    model = linear_model()
    hist = fit(model, mse, lambda s: (X[:16], Y[:16]), steps, lr=1e-2, eval_batch=(X, Y), eval_every=every,
               callbacks={"bias": lambda m: float(m.bias.detach())}, progress=False)
    assert hist.eval_step == expected
    assert len(hist.eval_loss) == len(expected)
    assert len(hist.extras["bias"]) == len(expected)
    # the last evaluation is of the final weights (after the last update)
    assert hist.eval_loss[-1] == pytest.approx(loss_value(model, (X, Y)), rel=1e-12)
    assert hist.extras["bias"][-1] == float(model.bias.detach())


def test_fit_eval_after_first_update():
    X, Y = regression_problem()
    model = linear_model()
    initial_bias = float(model.bias.detach())
    hist = fit(model, mse, [(X, Y)] * 2, 2, lr=1e-2, clip=None, eval_every=100,
               callbacks={"bias": lambda m: float(m.bias.detach())}, progress=False)
    assert hist.extras["bias"][0] != initial_bias  # recorded after update 0


def test_fit_stop_ends_early():
    X, Y = regression_problem()
    hist = fit(linear_model(), mse, lambda s: (X, Y), 100, eval_batch=(X, Y), eval_every=3,
               stop=lambda h: len(h.eval_step) >= 2, progress=False)
    assert hist.eval_step == [0, 3]
    assert hist.steps == 4


def test_fit_no_eval_without_batch_or_callbacks():
    X, Y = regression_problem()
    hist = fit(linear_model(), mse, lambda s: (X, Y), 5, eval_every=2, progress=False)
    assert hist.eval_step == [] and hist.eval_loss == [] and hist.extras == {}
    d = hist.to_dict()
    assert set(d) == {"loss", "grad_norm", "eval_step", "eval_loss", "extras", "seconds"}


@pytest.mark.parametrize(
    ("kw", "exc", "name"),
    [
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": -3}, ValueError, "steps"),
        ({"lr": 0.0}, ValueError, "lr"),
        ({"lr": -1e-3}, ValueError, "lr"),
        ({"eval_every": 0}, ValueError, "eval_every"),
        ({"clip": 0.0}, ValueError, "clip"),
        ({"clip": -1.0}, ValueError, "clip"),
    ],
)
def test_fit_bad_arguments(kw, exc, name):
    X, Y = regression_problem()
    args = {"steps": 3} | kw
    steps = args.pop("steps")
    with pytest.raises(exc, match=rf"\b{name}\b"):
        fit(linear_model(), mse, lambda s: (X, Y), steps, progress=False, **args)


def test_fit_too_few_batches():
    X, Y = regression_problem()
    with pytest.raises(ValueError, match="batches"):
        fit(linear_model(), mse, [(X, Y)] * 3, 4, progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_clip_on_cuda():
    ps = params_with_grads([torch.tensor([3.0, 4.0], dtype=F64, device="cuda")])
    assert clip_global_norm_(ps, 1.0) == pytest.approx(5.0, rel=1e-14)
    assert global_norm(ps) == pytest.approx(1.0, rel=1e-12)


def test_fit_clips_element_wise_in_value_mode():
    """Adam's first step is lr·g/|g| per entry whatever the clip; compare the gradients the optimiser saw instead."""
    X, Y = regression_problem()
    seen = {}

    def record(step, model, batch, loss):
        seen["grad"] = model.weight.grad.detach().clone()

    model = linear_model()
    fit(model, mse, lambda step: (X * 100, Y * 100), 1, lr=1e-2, clip=0.5, clip_mode="value", on_step=record,
        progress=False)
    raw = seen["grad"]  # on_step sees the unclipped gradient
    assert float(raw.abs().max()) > 0.5
    model2 = linear_model()
    grads = []
    opt_step = torch.optim.Adam.step

    def spy(self, *a, **k):
        grads.append(model2.weight.grad.detach().clone())
        return opt_step(self, *a, **k)

    torch.optim.Adam.step = spy
    try:
        fit(model2, mse, lambda step: (X * 100, Y * 100), 1, lr=1e-2, clip=0.5, clip_mode="value", progress=False)
    finally:
        torch.optim.Adam.step = opt_step
    assert torch.equal(grads[0], raw.clamp(-0.5, 0.5))
    with pytest.raises(ValueError, match="clip_mode"):
        fit(linear_model(), mse, lambda step: (X, Y), 1, clip_mode="elementwise", progress=False)


def test_fit_weight_decay_is_decoupled_adamw():
    X, Y = regression_problem()
    a, b = linear_model(), linear_model()
    fit(a, mse, lambda step: (X, Y), 5, lr=1e-2, clip=None, progress=False)
    fit(b, mse, lambda step: (X, Y), 5, lr=1e-2, clip=None, weight_decay=0.5, progress=False)
    ref = linear_model()
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, betas=(0.9, 0.98), weight_decay=0.5)
    for _ in range(5):
        opt.zero_grad()
        mse(ref, (X, Y)).backward()
        opt.step()
    assert torch.allclose(b.weight, ref.weight) and not torch.allclose(a.weight, b.weight)


def test_warmup_cosine_schedule_and_its_use():
    from icl_course.train import warmup_cosine

    m = warmup_cosine(10, 110, final=0.1)
    assert m(0) == 0.0 and m(5) == 0.5 and m(10) == 1.0
    assert m(60) == pytest.approx(0.55) and m(110) == pytest.approx(0.1) and m(500) == pytest.approx(0.1)
    X, Y = regression_problem()
    model = linear_model()
    w0 = model.weight.detach().clone()
    fit(model, mse, lambda step: (X, Y), 1, lr=1e-2, clip=None, lr_schedule=m, progress=False)
    assert torch.equal(model.weight, w0), "a zero learning rate at step 0 leaves the weights unchanged"


def test_fit_sgd_is_plain_sgd_on_the_trainable_parameters_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, dtype=F64), nn.Linear(4, 1, dtype=F64))
    model[0].weight.requires_grad_(False)  # frozen: must not move
    batches = [(torch.randn(5, 3, dtype=F64), torch.randn(5, 1, dtype=F64)) for _ in range(3)]

    def loss_fn(m, b):
        return ((m(b[0]) - b[1]) ** 2).mean()

    ref = {n: p.detach().clone() for n, p in model.named_parameters()}
    expected = {n: p.clone() for n, p in ref.items()}
    for x, y in batches:  # the same three updates by hand
        ps = {n: p.clone().requires_grad_(n != "0.weight") for n, p in expected.items()}
        h = x @ ps["0.weight"].T + ps["0.bias"]
        loss = ((h @ ps["1.weight"].T + ps["1.bias"] - y) ** 2).mean()
        grads = torch.autograd.grad(loss, [p for n, p in ps.items() if n != "0.weight"])
        for (n, _), g in zip([(n, p) for n, p in ps.items() if n != "0.weight"], grads):
            expected[n] = expected[n] - 0.1 * g
    fit(model, loss_fn, batches, 3, lr=0.1, optimizer="sgd", clip=None, progress=False)
    for n, p in model.named_parameters():
        assert torch.allclose(p, expected[n], rtol=1e-12, atol=1e-14), n
    assert torch.equal(model[0].weight, ref["0.weight"])


def test_fit_rejects_an_unknown_optimizer_and_a_model_with_nothing_to_train():
    model = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="optimizer"):
        fit(model, lambda m, b: m(b).sum(), [torch.ones(1, 2)], 1, optimizer="adagrad", progress=False)
    model.weight.requires_grad_(False)
    model.bias.requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        fit(model, lambda m, b: m(b).sum(), [torch.ones(1, 2)], 1, progress=False)
