"""Why Part I's regression GPT reads one token per demonstration: train it with Garg et al.'s interleaved layout and
with the course's previous-pair layout, same settings and seeds, and print the error / d at N ≥ 3 next to ridge's.

Run: ``python scripts/garg_layouts.py [seed ...]`` (default seeds 0 1; about 1.5 CPU-minutes per model and layout).
"""

from __future__ import annotations

import dataclasses
import sys

from icl_course import basics, runtime


def main(seeds: list[int]) -> None:
    runtime.setup(seed=0)
    for layout in ("interleaved", "previous_pair"):
        s = dataclasses.replace(basics.GARG.cpu, layout=layout)
        for seed in seeds:
            run = basics.train_regression_gpt(s, seed=seed, progress=False)
            c = basics.bayes_comparison(basics.prefix_errors(s, run.model, seed=seed), s.ridge_margin)
            tf = " ".join(f"{float(v):.2f}" for v in c.transformer)
            print(f"{layout:>13}, seed {seed}: transformer error/d at N = 3..{int(c.n[-1])}: {tf}; "
                  f"worst excess over ridge {100 * float(c.excess.max()):.0f} %; beats 3-NN and averaging: "
                  f"{c.beats_baselines}", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [0, 1])
