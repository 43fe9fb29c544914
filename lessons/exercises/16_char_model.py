"""Lesson 16 exercises: a character-level model, from the bigram baseline to training batches.

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 16
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.
"""
import numpy as np


def bigram_counts(ids, vocab_size):
    """Count which character follows which (lesson 16, the bigram baseline).

    ids: (N,) integer character ids of a text. Return an int array (V, V) whose [a, b] entry counts
    the positions t with ids[t] == a and ids[t + 1] == b.
    """
    raise NotImplementedError


def bigram_log_probs(counts, alpha=1.0):
    """The bigram model: log p(b | a) with add-alpha smoothing (lesson 16, the bigram baseline).

    counts: (V, V) from bigram_counts. Return (V, V): log((counts[a, b] + alpha) /
    (sum_b counts[a, b] + alpha V)). Every row's exp sums to 1, and an unseen pair is not -inf.
    """
    raise NotImplementedError


def bigram_loss(log_probs, ids):
    """The bigram model's cross-entropy on a text (lesson 16, the bigram baseline).

    log_probs: (V, V) from bigram_log_probs; ids: (N,). Return a float: the mean over t = 0..N-2 of
    -log_probs[ids[t], ids[t + 1]], in nats per character (the number the transformer must beat).
    """
    raise NotImplementedError


def get_batch(ids, block_size, batch_size, rng):
    """A random batch of training windows (lesson 16, training the transformer).

    ids: (N,) the encoded text. Draw batch_size start positions s with
    rng.integers(0, N - block_size, batch_size) and return (x, y), each (batch_size, block_size):
    x[r] = ids[s : s + block_size] and y[r] = ids[s + 1 : s + block_size + 1] (the next characters).
    """
    raise NotImplementedError
