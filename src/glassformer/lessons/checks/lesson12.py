"""Lesson 12: BPE."""
from collections import Counter

from ...tokenizers.bpe_train import count_pretokens, learn_merges
from ...tokenizers.bpe_train import merge_pair as reference_merge
from ..grading import Fail, exercise, same, unpack

TEXT = ("the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat; "
        "then the cat and the dog sat together, that is that. " * 3)


def text_words():
    return {tuple(w.encode("utf-8")): n for w, n in count_pretokens(TEXT).items()}


@exercise("12")
def count_pairs(fn, rng):
    got = fn({(1, 2, 3): 2, (2, 3): 5, (3,): 7, (1, 1, 1): 1})
    same(dict(got) if got is not None else None, {(1, 2): 2, (2, 3): 7, (1, 1): 2},
         "count_pairs({(1, 2, 3): 2, (2, 3): 5, (3,): 7, (1, 1, 1): 1})")
    words = text_words()
    want = Counter()
    for w, n in words.items():
        for pair in zip(w, w[1:]):
            want[pair] += n
    same({k: v for k, v in dict(fn(words)).items() if v}, dict(want), "count_pairs on a small text")


@exercise("12")
def merge_pair(fn, rng):
    cases = [([1, 1, 1], 1, 1), ([1, 2, 1, 2, 2], 1, 2), ([5], 5, 5), ([], 1, 2), ([3, 4, 3, 3, 4], 3, 4)]
    for ids, a, b in cases:
        got = fn(list(ids), a, b, 99)
        same(list(got) if got is not None else None, reference_merge(ids, a, b, 99),
             f"merge_pair({ids}, {a}, {b}, 99)")
    ids = list(rng.integers(0, 3, 60))
    same(list(fn(list(ids), 1, 1, 7)), reference_merge(ids, 1, 1, 7), "merge_pair on 60 random ids")


@exercise("12")
def bpe_merge_step(fn, rng):
    best, new = unpack(fn({(1, 2, 3): 2, (2, 3, 1, 2): 1}, 256), ("best", "new_words"))
    if tuple(best) != (1, 2):                       # (1, 2) and (2, 3) both count 3: the smaller wins
        raise Fail(f"best pair of {{(1, 2, 3): 2, (2, 3, 1, 2): 1}} is {best}, expected (1, 2) "
                   "(a tie with (2, 3): the smallest pair wins)")
    same(dict(new), {(256, 3): 2, (2, 3, 256): 1}, "the words after merging (1, 2) into 256")
    words = text_words()
    want = learn_merges([list(w) for w in words], list(words.values()), 30)
    got = []
    for new_id in range(256, 286):
        best, words = unpack(fn(words, new_id), ("best", "new_words"))
        got.append((*best, new_id))
    same(got, want, "the first 30 merges on a small text (as (a, b, new) triples)")
    same(sum(dict(words).values()), sum(count_pretokens(TEXT).values()),
         "the total count of the words (merging must keep every occurrence)")
