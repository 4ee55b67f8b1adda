"""Reference solutions of the exercises of meta_optimizer/toy_finetuning: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch

from icl_course import meta_optimizer as mo


def freeze_all_but_kv(model):
    for name, p in model.named_parameters():  # only the attention layers' key and value projections stay trainable
        p.requires_grad_(name.endswith(("mix.W_K.weight", "mix.W_V.weight")))
    return [name for name, p in model.named_parameters() if p.requires_grad]


def kv_sgd_step(model, items, label, lr):
    kv = mo.kv_parameters(model)  # [W_K, W_V] of every layer
    loss = torch.nn.functional.cross_entropy(model(items[None])[:, -1], label[None])  # zero-shot format, last item
    grads = torch.autograd.grad(loss, kv)
    with torch.no_grad():
        for w, g in zip(kv, grads):
            w -= lr * g  # plain SGD: no momentum, no clipping
    return float(loss.detach())


def paired_gap(a, b):
    d = a - b  # one difference per example: the pairing removes what both scores share
    return float(d.mean()), float(d.std(correction=1) / d.numel() ** 0.5)  # mean and its standard error


def align_icl_logits(icl_logits, n_text):
    return icl_logits[..., -n_text:]  # the query text is the prompt's last n_text tokens, in zero-shot order
