"""Lesson 2: attention, masks, heads."""
import numpy as np

from ...layers.attention import attend, attention_mask, merge_heads as ref_merge, split_heads as ref_split
from ..grading import Fail, close, exercise, expect, randn, same, unpack


NO_SCALE = "the scores look unscaled: softmax(q k^T / sqrt(D)), with D the size of one head"


def unscaled(q, k, v, allowed):
    """(y, att) of the slip that forgets 1/sqrt(D): attend() on q * sqrt(D) scores q k^T alone."""
    return attend(q * np.sqrt(q.shape[-1]), k, v, allowed)


@exercise("02")
def attention_forward(fn, rng):
    q, k, v = randn(rng, 2, 3, 4, 8), randn(rng, 2, 3, 6, 8), randn(rng, 2, 3, 6, 8)
    for allowed, label in ((None, "no mask"), (attention_mask(np, 4, 6, True, np.array(
            [[1, 1, 1, 1, 0, 0], [1] * 6], bool), offset=2), "causal + padding mask")):
        (y_ref, att_ref), (y_slip, att_slip) = attend(q, k, v, allowed), unscaled(q, k, v, allowed)
        y, att = unpack(fn(q.copy(), k.copy(), v.copy(), allowed), ("y", "att"))
        close(att, att_ref, f"att ({label})", hints=[(att_slip, NO_SCALE)])
        if allowed is not None:
            expect(np.all(np.asarray(att)[~np.broadcast_to(allowed, att_ref.shape)] == 0),
                   "att must be exactly 0 where the mask is False")
        close(y, y_ref, f"y ({label})", hints=[(y_slip, NO_SCALE)])
    big = 1e3 * q                                           # scores in the thousands
    with np.errstate(all="ignore"):
        _, att = unpack(fn(big, k.copy(), v.copy(), None), ("y", "att"))
    expect(np.all(np.isfinite(att)), "att has nan or inf for large scores: subtract the row max first")


@exercise("02")
def causal_mask(fn, rng):
    for T, S, offset in ((4, 4, 0), (1, 6, 5), (3, 7, 4), (5, 5, 0)):
        want = attention_mask(np, T, S, True, offset=offset)[0, 0]
        got = fn(T, S, offset)
        same(np.asarray(got, dtype=bool) if got is not None else None, want,
             f"causal_mask({T}, {S}, offset={offset})")
        expect(np.asarray(got).dtype == bool, f"causal_mask should return booleans, got {np.asarray(got).dtype}")


@exercise("02")
def padding_mask(fn, rng):
    lengths = np.array([3, 5, 1])
    want = np.arange(5)[None, :] < lengths[:, None]
    got = fn(lengths.copy(), 5)
    if got is None or np.shape(got) != (3, 1, 1, 5):
        raise Fail(f"padding_mask([3, 5, 1], 5) should have shape (3, 1, 1, 5), got {np.shape(got)}")
    same(np.asarray(got, dtype=bool), want[:, None, None, :], "padding_mask([3, 5, 1], 5)")


@exercise("02")
def split_heads(fn, rng):
    x = randn(rng, 2, 5, 12)
    for H in (3, 4, 1):
        close(fn(x.copy(), H), ref_split(x, H), f"split_heads(x (2, 5, 12), {H})", rtol=0, atol=0)


@exercise("02")
def merge_heads(fn, rng):
    y = randn(rng, 2, 3, 5, 4)
    close(fn(y.copy()), ref_merge(y), "merge_heads(y (2, 3, 5, 4))", rtol=0, atol=0)
    x = randn(rng, 2, 5, 12)
    close(fn(ref_split(x, 4)), x, "merge_heads(split_heads(x, 4)) (should give x back)", rtol=0, atol=0)
