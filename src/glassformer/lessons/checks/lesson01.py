"""Lesson 1: embeddings and positional encodings."""
import numpy as np

from ...layers import Embedding
from ...layers.positional import LearnedPositionalEmbedding, sinusoidal_table as reference_table
from ..grading import close, exercise, expect, randn


@exercise("01")
def embedding_forward(fn, rng):
    W, ids = randn(rng, 7, 4), rng.integers(0, 7, (2, 5))
    ids[0, :3] = 3                                          # repeats are allowed
    close(fn(W.copy(), ids.copy()), W[ids], "embedding_forward(W, ids)", rtol=0, atol=0)


@exercise("01")
def embedding_backward(fn, rng):
    V, C = 9, 4
    ids = np.array([[1, 5, 5, 5, 2, 0], [5, 8, 1, 1, 3, 3]])    # 5 three times in row 0, 1 and 3 repeat
    dout = randn(rng, 2, 6, C)
    emb = Embedding(V, C, rng, dtype="float64")
    emb.forward(ids)
    emb.backward(dout)
    dW = fn(ids.copy(), dout.copy(), V)
    close(dW, emb.dW, "dW (rows of repeated ids must be sums)")
    unused = [v for v in range(V) if v not in ids]
    expect(not np.any(np.asarray(dW)[unused]), f"rows {unused} (ids never looked up) must stay 0")


@exercise("01")
def sinusoidal_table(fn, rng):
    for T, C in ((50, 8), (7, 16), (1, 2)):
        close(fn(T, C), reference_table(T, C), f"sinusoidal_table({T}, {C})")
    close(np.linalg.norm(np.asarray(fn(64, 16)), axis=1), np.full(64, np.sqrt(8)),
          "the norm of each row (sqrt(C/2): every pair is a unit vector)")


@exercise("01")
def shift_rotation(fn, rng):
    C = 8
    pe = reference_table(60, C)
    for k, i in ((3, 1), (1, 0), (7, 3), (0, 2)):
        R = np.asarray(fn(k, i, C), dtype=np.float64)
        expect(R.shape == (2, 2), f"shift_rotation({k}, {i}, {C}) has shape {R.shape}, expected (2, 2)")
        pairs = pe[:40, 2 * i:2 * i + 2]                    # (40, 2): [sin, cos] per position
        close(pairs @ R.T, pe[k:40 + k, 2 * i:2 * i + 2],
              f"PE[pos] @ R.T for k={k}, i={i} (should be PE[pos + {k}])")


@exercise("01")
def learned_positions_backward(fn, rng):
    B, T, C = 3, 5, 4
    pos = LearnedPositionalEmbedding(8, C, rng, dtype="float64")
    dout = randn(rng, B, T, C)
    pos.forward(randn(rng, B, T, C))
    pos.backward(dout)
    close(fn(dout.copy()), pos.dP[:T], "dP[:T]")
