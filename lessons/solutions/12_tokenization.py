# ==================================================================================================
# SPOILER: the solutions of lesson 12's exercises (lessons/12-tokenization.md).
# Write your own in lessons/exercises/12_tokenization.py first, and check them with
#     python -m glassformer.lessons check 12
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 12 exercises: byte-pair encoding, one piece at a time."""
from collections import Counter


def count_pairs(words):
    """Count adjacent pairs over the pre-tokens (lesson 12, section 3).

    words: a dict {tuple of ids: how often that pre-token occurs}. Return a dict
    {(a, b): count}: each adjacent pair of each word, weighted by the word's count.
    """
    pairs = Counter()
    for w, n in words.items():
        for pair in zip(w, w[1:]):
            pairs[pair] += n
    return dict(pairs)


def merge_pair(ids, a, b, new):
    """Replace each (a, b) in a list of ids by new, left to right, without overlaps
    (lesson 12, section 3).

    ids: a list of ints. Return a new list. Example: merge_pair([1, 1, 1], 1, 1, 9) is [9, 1].
    """
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def bpe_merge_step(words, new_id):
    """One BPE merge (lesson 12, section 3): count, pick the best pair, merge it everywhere.

    words: {tuple of ids: count} as in count_pairs; new_id: the id of the new token.
    The best pair has the highest count; ties go to the smallest pair (compare (a, b) as tuples).
    Return (best, new_words): best = (a, b), and new_words the dict with every word merged
    (words that become equal add their counts).
    """
    pairs = count_pairs(words)
    best = min(pairs, key=lambda pair: (-pairs[pair], pair))
    merged = Counter()
    for w, n in words.items():
        merged[tuple(merge_pair(list(w), *best, new_id))] += n
    return best, dict(merged)
