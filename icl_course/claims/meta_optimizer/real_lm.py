"""Part II claims of chapter "A real language model": D4b."""

from __future__ import annotations

from dataclasses import replace

from ... import lm
from ...meta_optimizer import LM_PROTOCOL, LMRun, run_lm_protocol, simaou_beats_random, summarise_lm_run
from ...reproduce import Claim, Context, register

CHAPTER = "ICL versus fine-tuning on a real language model"

__all__: list[str] = []


def lm_settings(ctx: Context):
    """The protocol's settings for a reproduce run: the book's, on 48 test reviews with ``--quick``."""
    s = LM_PROTOCOL.pick(ctx.scale)
    return s.quick() if ctx.quick else replace(s, demo_seeds=(ctx.seed,))


def lm_run(ctx: Context) -> LMRun:
    """One protocol run on the pretrained LM with the demonstrations of ``ctx.seed`` (shared by the Part II claims
    that need it; recorded with the relaxation cosines)."""
    return ctx.shared("lm_protocol_run",
                      lambda: run_lm_protocol(lm.load(), lm_settings(ctx), ctx.seed, relaxation=True))


register(Claim(
    id="D4b", chapter=CHAPTER,
    claim="on a real LM (SmolLM2-135M-Instruct, MR), SimAOU of ICL and fine-tuning exceeds the zero-mean "
          "random-update baseline by more than its spread",
    reference="SimAOU well above a random update (Dai et al. 2022, §4.3, with their U(0, 1) baseline; the zero-mean "
              "baseline is the course's)",
    tolerance="paired difference (SimAOU − zero-mean baseline, per review, mean over layers) > 3 standard errors",
    measure=lambda ctx: simaou_beats_random([summarise_lm_run(lm_run(ctx), seed=ctx.seed)]),
    judge=lambda v, ctx: v.margin > 3,
    show=lambda v: f"SimAOU {v.simaou[0]:.3f} vs zero-mean {v.zero_mean[0]:+.3f} (U(0,1): {v.uniform[0]:.3f}); "
                   f"difference {v.difference[0]:.3f} ± {v.sem[0]:.3f}"))
