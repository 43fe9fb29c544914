"""Lesson 12 exercises: byte-pair encoding, one piece at a time.

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 12
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.
"""
from collections import Counter


def count_pairs(words):
    """Count adjacent pairs over the pre-tokens (lesson 12, section 3).

    words: a dict {tuple of ids: how often that pre-token occurs}. Return a dict
    {(a, b): count}: each adjacent pair of each word, weighted by the word's count.
    """
    raise NotImplementedError


def merge_pair(ids, a, b, new):
    """Replace each (a, b) in a list of ids by new, left to right, without overlaps
    (lesson 12, section 3).

    ids: a list of ints. Return a new list. Example: merge_pair([1, 1, 1], 1, 1, 9) is [9, 1].
    """
    raise NotImplementedError


def bpe_merge_step(words, new_id):
    """One BPE merge (lesson 12, section 3): count, pick the best pair, merge it everywhere.

    words: {tuple of ids: count} as in count_pairs; new_id: the id of the new token.
    The best pair has the highest count; ties go to the smallest pair (compare (a, b) as tuples).
    Return (best, new_words): best = (a, b), and new_words the dict with every word merged
    (words that become equal add their counts).
    """
    raise NotImplementedError
