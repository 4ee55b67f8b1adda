"""Reference solutions of the exercises of mesa/language: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch


def next_char_windows(ids, starts, block_size):
    pos = starts[:, None] + torch.arange(block_size)  # (B, T): the window's positions
    return ids[pos], ids[pos + 1]  # inputs, and the character after each input


def unigram_loss(train_ids, val_ids, vocab_size):
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1  # add-one: no character has probability 0
    log_p = counts.log() - counts.sum().log()  # log (n_c + 1) / (N + V)
    return float(-log_p[val_ids].mean())  # nats per character


def bigram_loss(train_ids, val_ids, vocab_size):
    V = vocab_size
    pairs = train_ids[:-1] * V + train_ids[1:]  # one index per (previous, next) pair
    counts = torch.bincount(pairs, minlength=V * V).double().view(V, V) + 1  # row b: the characters after b
    log_p = counts.log() - counts.sum(-1, keepdim=True).log()  # log p(c | b) = log (n_bc + 1) / (n_b + V)
    return float(-log_p[val_ids[:-1], val_ids[1:]].mean())  # nats per predicted character


def window_position_losses(logits, targets):
    log_p = torch.log_softmax(logits, dim=-1)  # (B, T, V): normalised log-probabilities
    picked = log_p.gather(-1, targets[..., None])[..., 0]  # (B, T): log p(target) at every position
    return -picked.mean(0)  # (T,): averaged over the windows, one value per position
