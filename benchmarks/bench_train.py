"""Training speed of the one-layer LSA: the package's path against a plain full-attention PyTorch loop.

Both run at batch 2048 with fresh tasks every step, Adam and gradient clipping, on one thread; repetitions are
interleaved and the median is reported, so machine noise hits both alike. Also measures the wall time for a
freshly initialised layer to come within 1 % of GD-1's loss on 10,000 evaluation tasks.

    python benchmarks/bench_train.py [--reps 5] [--steps 150]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from icl_course import gd_transformer as gt
from icl_course import metrics, runtime, solvers, tasks, train
from icl_course.models import LSAStack


class PlainLSA(nn.Module):
    """A straightforward port: every token attends to the context tokens, then the query is read out."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q, self.k, self.v, self.p = (nn.Linear(dim, dim, bias=False) for _ in range(4))
        for lin in (self.q, self.k, self.v, self.p):
            nn.init.normal_(lin.weight, std=(0.002 / dim) ** 0.5)

    def forward(self, E: torch.Tensor) -> torch.Tensor:
        ctx = E[:, :-1]  # (B, N, D)
        scores = self.q(E) @ self.k(ctx).transpose(1, 2)  # (B, N+1, N)
        return E + self.p(scores @ self.v(ctx))  # (B, N+1, D)


def plain_steps_per_second(steps: int, seed: int) -> float:
    model = PlainLSA(11)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    gen = runtime.generator(seed)
    start = time.perf_counter()
    for _ in range(steps):
        b = tasks.sample_linear_regression(2048, 10, 10, generator=gen)
        pred = -model(b.tokens())[:, -1, 10:]
        loss = 0.5 * (pred - b.y_query).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
        opt.step()
    return steps / (time.perf_counter() - start)


def package_steps_per_second(steps: int, seed: int) -> float:
    model = LSAStack.new(11, 1, n_context=10, generator=runtime.generator(seed))
    start = time.perf_counter()
    train.fit(model, gt.icl_loss, gt.token_stream(2048, 10, 10, seed=seed), steps, progress=False)
    return steps / (time.perf_counter() - start)


def seconds_to_gd_level(seed: int, margin: float = 0.01) -> tuple[float, int]:
    """Wall seconds (training + periodic evaluation) until the eval loss is within ``margin`` of GD-1."""
    ev = gt.eval_batch(10_000, 10, 10, seed=seed + 2)
    target = (1 + margin) * float(metrics.half_squared_error(gt.gd_predict(ev, solvers.optimal_gd_lr(10, 10)),
                                                             ev.y_query))
    model = LSAStack.new(11, 1, n_context=10, generator=runtime.generator(seed))
    start = time.perf_counter()
    hist = train.fit(model, gt.icl_loss, gt.token_stream(2048, 10, 10, seed=seed + 1), 5000,
                     eval_batch=(ev.tokens(), ev.y_query), eval_every=25, progress=False,
                     stop=lambda h: h.eval_loss[-1] <= target)
    return time.perf_counter() - start, hist.steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--steps", type=int, default=150)
    args = p.parse_args()
    runtime.setup(seed=0, threads=1)
    plain_steps_per_second(10, 0), package_steps_per_second(10, 0)  # warm-up
    plain, package = [], []
    for rep in range(args.reps):  # interleaved
        plain.append(plain_steps_per_second(args.steps, rep))
        package.append(package_steps_per_second(args.steps, rep))
    mp, mk = statistics.median(plain), statistics.median(package)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch 2048, {args.reps} interleaved reps "
          f"of {args.steps} steps")
    print(f"plain full-attention loop : {mp:7.1f} steps/s  (reps: {', '.join(f'{v:.0f}' for v in plain)})")
    print(f"package (train.fit)       : {mk:7.1f} steps/s  (reps: {', '.join(f'{v:.0f}' for v in package)})")
    print(f"speed-up                  : {mk / mp:7.2f}x  (target >= 1.5x)")
    for seed in (0, 1, 2):
        secs, steps = seconds_to_gd_level(seed)
        print(f"seed {seed}: within 1 % of GD-1 after {steps} steps, {secs:.1f} s wall (target <= 15 s)")


if __name__ == "__main__":
    main()
