"""Exercises of Part I, chapter "Learning to learn in context".

The checkers need no trained model: they compare with the package's pieces on small random inputs in float64 and
recognise the classic slips by name — input and label in one token, the model read at the label tokens, the error
not divided by d, the noise left out of the Bayes error, and an unpaired standard error for a paired comparison.
"""

from __future__ import annotations

import math

import torch

from ... import runtime, solvers, tasks
from .. import exercise

__all__ = ["check_interleave", "check_prefix_error", "check_bayes_error", "check_paired_difference_sem"]

PART = "basics"
F64 = torch.float64


def _expect(value: object, shape: tuple, what: str) -> torch.Tensor:
    assert isinstance(value, torch.Tensor), f"{what} must be a torch.Tensor, got {type(value).__name__}"
    assert tuple(value.shape) == shape, f"{what} must have shape {shape}, got {tuple(value.shape)}"
    return value


def _xy(seed: int = 0, B: int = 3, N: int = 5, d: int = 4):
    g = runtime.generator(seed)
    return torch.randn(B, N, d, generator=g, dtype=F64), torch.randn(B, N, 1, generator=g, dtype=F64)


# ---------------------------------------------------------------- 1. the prompt as tokens
@exercise(part=PART, name="interleave", title="Demonstrations as a sequence of input and label tokens",
          difficulty="★☆☆", minutes=10,
          hint="Make 2N tokens of width d+1, all zeros; token 2i gets x_i in its first d coordinates, token 2i+1 gets "
               "y_i in its last coordinate. Input and label go in separate tokens so that the model, reading at an "
               "input token, has not yet seen that input's label.",
          stub='''def interleave(x, y):
    """x (B, N, d), y (B, N, 1) -> tokens (B, 2N, d+1): token 2i is (x_i, 0), token 2i+1 is (0, y_i)."""
    # YOUR CODE HERE
    raise NotImplementedError("interleave")
''')
def check_interleave(fn) -> None:
    x, y = _xy()
    got = fn(x.clone(), y.clone())
    assert isinstance(got, torch.Tensor), f"interleave must return a torch.Tensor, got {type(got).__name__}"
    if tuple(got.shape) == (3, 5, 5):
        raise AssertionError("you put x_i and y_i in one token: the model would see each label with its input")
    _expect(got, (3, 10, 5), "the tokens")
    ref = tasks.interleaved_tokens(x, y)
    if torch.allclose(got, ref):
        return
    assert not torch.allclose(got[:, 0::2], ref[:, 1::2]), "labels come first: token 2i must be the input x_i"
    raise AssertionError("the tokens differ from (x_1, 0), (0, y_1), (x_2, 0), …")


# ---------------------------------------------------------------- 2. error per prefix length
_D = 4


@exercise(part=PART, name="prefix_error", title="One prompt scores every number of demonstrations",
          difficulty="★☆☆", minutes=5,
          hint="The prediction of y_i is the model's output at input token 2i (it has seen i demonstrations and x_i). "
               "Square the error, average over the tasks (dimension 0), and divide by d = 4 as Garg et al. do.",
          stub='''def prefix_error(outputs, y):
    """outputs (B, 2N, 1): the model's outputs on interleaved tokens with d = 4; y (B, N, 1) the labels ->
    (N,): entry i is the mean squared error of predicting y_i from i demonstrations, divided by d."""
    # YOUR CODE HERE
    raise NotImplementedError("prefix_error")
''')
def check_prefix_error(fn) -> None:
    g = runtime.generator(1)
    outputs, y = torch.randn(50, 12, 1, generator=g, dtype=F64), torch.randn(50, 6, 1, generator=g, dtype=F64)
    got = _expect(fn(outputs.clone(), y.clone()), (6,), "the error per prefix length")
    ref = ((outputs[:, 0::2, 0] - y[..., 0]) ** 2).mean(0) / _D
    if torch.allclose(got.to(F64), ref):
        return
    assert not torch.allclose(got.to(F64), ((outputs[:, 1::2, 0] - y[..., 0]) ** 2).mean(0) / _D), (
        "you read the model at the label tokens: there it has already seen the label it predicts")
    assert not torch.allclose(got.to(F64), ref * _D), "divide by d = 4 (Garg et al.'s normalisation)"
    raise AssertionError(f"expected {ref.numpy().round(3)}, got {got.detach().numpy().round(3)}")


# ---------------------------------------------------------------- 3. the error no learner can beat
@exercise(part=PART, name="bayes_error", title="The Bayes error of one prompt", difficulty="★★☆", minutes=15,
          hint="The posterior of w given the demonstrations is Gaussian with covariance σ² (XᵀX + λI)⁻¹, λ = σ²/s². "
               "The expected squared error of its mean (ridge) on the query is the posterior variance of w·x_q "
               "plus the label noise: σ² (1 + x_qᵀ (XᵀX + λI)⁻¹ x_q).",
          stub='''def bayes_error(x, x_query, noise_std, teacher_scale):
    """x (B, N, d) demonstrations' inputs, x_query (B, d); teacher w ~ N(0, s² I), label noise σ -> (B,): the
    expected squared error of the Bayes-optimal prediction of the query's label, given x (averaged over w and
    the noise)."""
    # YOUR CODE HERE
    raise NotImplementedError("bayes_error")
''')
def check_bayes_error(fn) -> None:
    g = runtime.generator(2)
    B, N, d, sig, s = 4000, 3, 4, 0.5, 1.0
    xs = torch.randn(5, N, d, generator=g, dtype=F64)  # five different prompts: the answer is per prompt
    xqs = torch.randn(5, d, generator=g, dtype=F64)
    got5 = _expect(fn(xs.clone(), xqs.clone(), sig, s), (5,), "the Bayes error").to(F64)

    def bayes(x, xq, noise, scale):  # the checker's own reference: noise² (1 + x_qᵀ (XᵀX + (noise/scale)² I)⁻¹ x_q)
        A = x.transpose(1, 2) @ x + (noise / scale) ** 2 * torch.eye(x.shape[-1], dtype=x.dtype)
        return noise**2 * (1 + torch.einsum("bi,bi->b", xq, torch.linalg.solve(A, xq)))

    ref5 = bayes(xs, xqs, sig, s)
    assert not torch.allclose(got5, ref5.mean().expand(5)) or torch.allclose(got5, ref5), (
        "one value for the whole batch: each prompt has its own Bayes error")
    x, xq = xs[:1].expand(B, N, d), xqs[:1].expand(B, d)
    got, ref = got5[:1], ref5[:1]
    if torch.allclose(got5, ref5):
        w = s * torch.randn(B, 1, d, generator=g, dtype=F64)  # Monte Carlo: the closed form is what ridge attains
        y = x @ w.transpose(1, 2) + sig * torch.randn(B, N, 1, generator=g, dtype=F64)
        yq = (w[:, 0] * xq).sum(-1) + sig * torch.randn(B, generator=g, dtype=F64)
        err = (solvers.predict(solvers.ridge(x, y, sig**2 / s**2), xq)[:, 0] - yq) ** 2
        assert abs(float(err.mean()) - float(ref)) < 4 * float(err.std()) / math.sqrt(B)
        return
    assert not torch.allclose(got, ref - sig**2), "add the label noise σ²: no predictor can remove it"
    assert not torch.allclose(got, bayes(x[:1], xq[:1], sig, s**2 / sig)), "λ is σ²/s², not s²/σ²"
    raise AssertionError(f"expected {ref5.numpy().round(4)}, got {got5.detach().numpy().round(4)}")


# ---------------------------------------------------------------- 4. a paired standard error
@exercise(part=PART, name="paired_difference_sem", title="Comparing two learners on the same tasks", difficulty="★☆☆",
          minutes=5,
          hint="Both errors come from the same tasks, so most of their spread is shared (a hard task is hard for "
               "both). Subtract per task first, then take the mean and the standard error (std / √n) of the "
               "differences.",
          stub='''def paired_difference_sem(err_a, err_b):
    """err_a, err_b (n,): two learners' errors on the same n tasks -> (mean difference a − b, its standard
    error), both scalar tensors."""
    # YOUR CODE HERE
    raise NotImplementedError("paired_difference_sem")
''')
def check_paired_difference_sem(fn) -> None:
    g = runtime.generator(3)
    hard = torch.rand(400, generator=g, dtype=F64) * 5  # shared task difficulty
    a, b = hard + 0.1 * torch.randn(400, generator=g, dtype=F64), hard + 0.05
    mean, sem = fn(a.clone(), b.clone())
    mean, sem = float(mean), float(sem)
    ref_mean, ref_sem = float((a - b).mean()), float((a - b).std()) / math.sqrt(400)
    assert abs(mean - ref_mean) < 1e-9, f"the mean difference is {ref_mean:.4f}, got {mean:.4f}"
    unpaired = math.sqrt(float(a.var()) / 400 + float(b.var()) / 400)
    assert abs(sem - unpaired) > 0.1 * unpaired, ("that is the unpaired standard error: the tasks are shared, so take "
                                                  "the standard error of the per-task differences")
    # the standard deviation with n or with n − 1 in the denominator: both are right to 1 / (2n)
    assert abs(sem - ref_sem) < 0.005 * ref_sem, f"expected standard error {ref_sem:.5f}, got {sem:.5f}"
