"""The toy in-context classification task of chapter "ICL versus fine-tuning on a transformer trained from scratch":
its settings, data, prompts, the small GPT trained on it, and the recording of attention outputs and logits.

Tokens ``0 … n_items − 1`` are *items*; the first half belong to class 0, the second half to class 1 (a fixed latent
class the weights can learn, like a word's sentiment). An example is ``item_len`` items of one class followed by its
label. Labels are ``n_labels`` further tokens; every task draws two of them at random, one naming each class (the
remapped labels of Dai et al.'s MR experiment), so the query alone says nothing about which label is right.

References
----------
Dai et al. (2022), §4 (ICL against fine-tuning with remapped labels); Part II, ``book/part2_toy_finetuning.ipynb``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .. import _checks, runtime, train
from ..gpt import GPT, GPTConfig

__all__ = ["ToySettings", "TOY", "ToyTasks", "sample_toy_tasks", "icl_prompt", "zsl_prompt", "training_batch",
           "new_toy_model", "train_toy_model", "Recording", "record", "label_correct"]


@dataclass(frozen=True)
class ToySettings:
    """The toy experiment: the task (``n_items`` item tokens, half per class; ``item_len`` items per example;
    ``n_labels`` label tokens; ``n_demos`` demonstrations), the GPT (``n_layer``, ``n_head``, ``d_model``), its
    training (Adam at ``lr``, global-norm clip ``clip``, ``steps`` batches of ``batch_size`` prompts), the fine-tuning
    baseline's SGD step ``ft_lr`` (a default: :func:`~icl_course.meta_optimizer.toy_experiment` chooses it on each
    trained model with :func:`~icl_course.meta_optimizer.choose_ft_lr`), ``n_eval`` evaluation tasks per
    demonstration seed and the demonstration seeds. Training stops ``after_escape`` steps after the evaluation loss
    first drops below ``escape_loss`` (cap ``steps``)."""

    n_items: int = 8
    item_len: int = 2
    n_labels: int = 8
    n_demos: int = 4
    n_layer: int = 2
    n_head: int = 2
    d_model: int = 32
    steps: int = 12_000
    escape_loss: float = 1.1
    after_escape: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    clip: float = 1.0
    ft_lr: float = 1.0
    n_eval: int = 300
    demo_seeds: tuple[int, ...] = (0, 1)

    def __post_init__(self) -> None:
        for name in ("n_items", "item_len", "n_labels", "n_demos", "steps", "batch_size", "n_eval"):
            _checks.positive_int(f"ToySettings.{name}", getattr(self, name))
        if self.n_items % 2 or self.n_labels < 2:
            raise ValueError("ToySettings.n_items must be even (half per class) and n_labels ≥ 2")

    @property
    def vocab_size(self) -> int:
        return self.n_items + self.n_labels

    @property
    def example_len(self) -> int:
        return self.item_len + 1


TOY = runtime.Scales(cpu=ToySettings(), paper=ToySettings(n_items=64, item_len=6, n_labels=32, n_demos=16,
                                                          n_layer=4, n_head=4, d_model=128, steps=20_000,
                                                          batch_size=64, lr=1e-3, n_eval=2000, demo_seeds=(0, 1, 2)))
"""``cpu``: 8 items, examples of 2 items and a label, 8 labels, 4 demonstrations; a 2-layer GPT (2 heads, width 32)
trained with Adam (3e-3, clip 1) on batches of 32 prompts until 1,500 steps after the evaluation loss first drops
below 1.1 (cap 12,000). Measured escapes: model seeds 0, 1, 2 at 1,500, 1,750 and 3,250 steps (seed 0 trains in about
21 CPU-seconds on one thread). Three items per example left seed 1 on the copy-a-label plateau for all 12,000 steps,
hence two. The default ``ft_lr = 1.0`` is what ``choose_ft_lr`` chose for model seed 0 on the machine the chapter
was first run on (grid 0.01 … 3; FT accuracy 0.59, 0.61, 0.69, 0.80, 0.87, 0.85); on a 2-vCPU Intel Xeon the same
seed trains to a different model, for which it chooses 3.0, so ``toy_experiment`` chooses the step per model.
``paper``: a larger vocabulary, more demonstrations and a bigger model, for a GPU; not run by the book."""


def _ids(name: str, value: object, ndim: int, shape_doc: str) -> torch.Tensor:
    """Raise unless ``value`` is an integer tensor of token ids with ``ndim`` dimensions."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, shape {shape_doc}, got {type(value).__name__}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_doc} ({ndim} dims), got shape {tuple(value.shape)}")
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of token ids, got dtype {value.dtype}")
    return value


class ToyTasks(NamedTuple):
    """``n`` tasks: demonstration items ``demos (n, k, L)`` and labels ``demo_labels (n, k)``, the query's items
    ``query (n, L)`` and correct label ``label (n,)``, and each task's two label tokens ``pair (n, 2)`` (class 0's,
    class 1's); int64 token ids."""

    demos: torch.Tensor
    demo_labels: torch.Tensor
    query: torch.Tensor
    label: torch.Tensor
    pair: torch.Tensor


def sample_toy_tasks(n: int, settings: ToySettings = TOY.cpu, *, generator: torch.Generator,
                     n_demos: int | None = None) -> ToyTasks:
    """Draw ``n`` tasks with ``n_demos`` (default ``settings.n_demos``) demonstrations each; classes i.i.d. fair."""
    n = _checks.positive_int("n", n)
    k = settings.n_demos if n_demos is None else _checks.positive_int("n_demos", n_demos)
    s, half = settings, settings.n_items // 2
    cls = torch.randint(0, 2, (n, k + 1), generator=generator)  # (n, k+1)
    items = torch.randint(0, half, (n, k + 1, s.item_len), generator=generator) + half * cls[..., None]
    pair = torch.rand(n, s.n_labels, generator=generator).argsort(-1)[:, :2] + s.n_items  # (n, 2)
    labels = pair.gather(1, cls)  # (n, k+1)
    return ToyTasks(items[:, :-1], labels[:, :-1], items[:, -1], labels[:, -1], pair)


def icl_prompt(tasks: ToyTasks, order: torch.Tensor | None = None) -> torch.Tensor:
    """The in-context prompt ``(n, k·(L+1) + L)``: the demonstrations (items then label), then the query's items.
    ``order (k,)`` permutes the demonstrations (all tasks alike)."""
    demos, labels = tasks.demos, tasks.demo_labels
    if order is not None:
        demos, labels = demos[:, order], labels[:, order]
    n = demos.shape[0]
    ex = torch.cat([demos, labels[..., None]], -1).reshape(n, -1)  # (n, k·(L+1))
    return torch.cat([ex, tasks.query], 1)


def zsl_prompt(tasks: ToyTasks) -> torch.Tensor:
    """The zero-shot prompt: the query's items alone, ``(n, L)``."""
    return tasks.query


def training_batch(settings: ToySettings, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch: ``batch_size`` prompts of ``n_demos + 1`` examples (the last label dropped) and the label
    targets ``(B, n_demos + 1)``, predicted at the last item of every example (so every number of demonstrations
    0 … ``n_demos`` is trained, the zero-shot format included)."""
    t = sample_toy_tasks(settings.batch_size, settings, generator=generator)
    return icl_prompt(t), torch.cat([t.demo_labels, t.label[:, None]], 1)


def _label_positions(settings: ToySettings, T: int) -> torch.Tensor:
    return torch.arange(settings.item_len - 1, T, settings.example_len)  # the last item of every example


def new_toy_model(settings: ToySettings = TOY.cpu, *, seed: int = 0) -> GPT:
    """A freshly initialised GPT for the toy task (softmax attention; weights from ``runtime.generator(seed)``)."""
    cfg = GPTConfig(vocab_size=settings.vocab_size, block_size=(settings.n_demos + 1) * settings.example_len,
                    n_layer=settings.n_layer, n_head=settings.n_head, d_model=settings.d_model)
    return GPT(cfg, generator=runtime.generator(seed))


def train_toy_model(settings: ToySettings = TOY.cpu, *, seed: int = 0, steps: int | None = None,
                    progress: bool | None = None) -> train.TrainedRun:
    """Train :func:`new_toy_model` (weights ``seed``, batches ``seed + 1``, evaluation tasks ``seed + 2``) with
    cross-entropy at every label position, with :data:`TOY`'s escape rule. About 21 CPU-seconds on one thread for
    ``TOY.cpu`` and seed 0 (seeds 1 and 2 escape later)."""
    model = new_toy_model(settings, seed=seed)
    g = runtime.generator(seed + 1)
    ev = training_batch(dataclasses.replace(settings, batch_size=1000), runtime.generator(seed + 2))

    def loss_fn(m: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        idx, y = batch
        logits = m(idx)[:, _label_positions(settings, idx.shape[1])]  # (B, k+1, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    return train.train_run(model, loss_fn, lambda step: training_batch(settings, g), steps or settings.steps,
                           eval_set=ev, eval_batch=ev, escape=train.Escape(settings.escape_loss, settings.after_escape),
                           lr=settings.lr, clip=settings.clip, eval_every=250, progress=progress,
                           desc=f"toy GPT seed {seed}")


class Recording(NamedTuple):
    """What one forward pass records at the last token: next-token ``logits (n, V)``, each layer's attention (mixer)
    output ``aou (n, n_layers, d)`` and pre-softmax attention logits over the last ``n_text`` tokens
    ``am (n, n_layers, H, n_text)``, and the softmax attention weights over all tokens
    ``weights (n, n_layers, H, T)``."""

    logits: torch.Tensor
    aou: torch.Tensor
    am: torch.Tensor
    weights: torch.Tensor


@torch.no_grad()
def record(model: GPT, idx: torch.Tensor, n_text: int) -> Recording:
    """Run ``model`` on prompts ``idx (n, T)`` and record :class:`Recording` at the last position; ``n_text`` is the
    number of query-text tokens (the prompt's last ``n_text``), so ICL logits align with the zero-shot ones."""
    _ids("idx", idx, 2, "(n, T)")
    n_text = _checks.positive_int("n_text", n_text)
    if n_text > idx.shape[1]:
        raise ValueError(f"n_text ({n_text}) must be at most the prompt length T={idx.shape[1]}")
    aou, am, weights, hooks = [], [], [], []

    def hook(mix, inputs, out):
        q, k, _ = mix.heads(inputs[0])  # (n, H, T, dk)
        s = (q[:, :, -1:] @ k.transpose(-2, -1))[:, :, 0] / mix.key_size**0.5  # (n, H, T) pre-softmax
        aou.append(out[:, -1])
        am.append(s[..., -n_text:])
        weights.append(torch.softmax(s, -1))

    for block in model.blocks:
        hooks.append(block.mix.register_forward_hook(hook))
    try:
        logits = model(idx)[:, -1]
    finally:
        for h in hooks:
            h.remove()
    return Recording(logits, torch.stack(aou, 1), torch.stack(am, 1), torch.stack(weights, 1))


def label_correct(logits: torch.Tensor, tasks: ToyTasks) -> torch.Tensor:
    """``(n,)`` bool: the correct label's logit beats the task's other label's (logits ``(n, V)``)."""
    other = torch.where(tasks.pair[:, 0] == tasks.label, tasks.pair[:, 1], tasks.pair[:, 0])
    return logits.gather(1, tasks.label[:, None])[:, 0] > logits.gather(1, other[:, None])[:, 0]
