# ==================================================================================================
# SPOILER: the solutions of lesson 16's exercises (lessons/16-*.md: a character model).
# Write your own in lessons/exercises/16_char_model.py first, and check them with
#     python -m glassformer.lessons check 16
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 16 exercises: a character-level model, from the bigram baseline to training batches."""
import numpy as np


def bigram_counts(ids, vocab_size):
    """Count which character follows which (lesson 16, the bigram baseline).

    ids: (N,) integer character ids of a text. Return an int array (V, V) whose [a, b] entry counts
    the positions t with ids[t] == a and ids[t + 1] == b.
    """
    counts = np.zeros((vocab_size, vocab_size), dtype=np.int64)
    np.add.at(counts, (ids[:-1], ids[1:]), 1)
    return counts


def bigram_log_probs(counts, alpha=1.0):
    """The bigram model: log p(b | a) with add-alpha smoothing (lesson 16, the bigram baseline).

    counts: (V, V) from bigram_counts. Return (V, V): log((counts[a, b] + alpha) /
    (sum_b counts[a, b] + alpha V)). Every row's exp sums to 1, and an unseen pair is not -inf.
    """
    smoothed = counts + alpha
    return np.log(smoothed / smoothed.sum(axis=1, keepdims=True))


def bigram_loss(log_probs, ids):
    """The bigram model's cross-entropy on a text (lesson 16, the bigram baseline).

    log_probs: (V, V) from bigram_log_probs; ids: (N,). Return a float: the mean over t = 0..N-2 of
    -log_probs[ids[t], ids[t + 1]], in nats per character (the number the transformer must beat).
    """
    return float(-log_probs[ids[:-1], ids[1:]].mean())


def get_batch(ids, block_size, batch_size, rng):
    """A random batch of training windows (lesson 16, training the transformer).

    ids: (N,) the encoded text. Draw batch_size start positions s with
    rng.integers(0, N - block_size, batch_size) and return (x, y), each (batch_size, block_size):
    x[r] = ids[s : s + block_size] and y[r] = ids[s + 1 : s + block_size + 1] (the next characters).
    """
    starts = rng.integers(0, len(ids) - block_size, batch_size)
    x = np.stack([ids[s:s + block_size] for s in starts])
    y = np.stack([ids[s + 1:s + block_size + 1] for s in starts])
    return x, y
