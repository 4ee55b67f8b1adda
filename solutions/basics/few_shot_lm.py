"""Reference solutions of the exercises of basics/few_shot_lm: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch


def few_shot_prompt(demos, demo_labels, query, label_words, template, separator):
    shots = "".join(template.format(text=t) + label_words[y] + separator for t, y in zip(demos, demo_labels))
    return shots + template.format(text=query)


def two_label_accuracy(logits, label_ids, y):
    pred = logits[:, label_ids].argmax(1)  # 0 or 1: which of the two label tokens is more probable
    return (pred == y).double().mean()


def contextual_calibration(probs, content_free):
    scaled = probs / content_free  # W = diag(p_cf)^-1: a content-free input now scores every label alike
    return scaled / scaled.sum(-1, keepdim=True)


def copy_losses(losses, length):
    # the second copy's first token follows t_L, which has no earlier occurrence: it cannot be predicted, skip it
    return torch.stack([losses[:length].mean(), losses[length + 1:].mean()])
