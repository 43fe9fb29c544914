"""Lesson 18: GPT-2 weights and the answer-only loss."""
import numpy as np

from ...layers import MultiHeadAttention
from ...layers.attention import split_heads
from ...layers.loss import cross_entropy_forward
from ..grading import close, exercise, grad_close, numeric_vjp, randn, same, unpack


@exercise("18")
def split_qkv(fn, rng):
    C = 6
    mha = MultiHeadAttention(C, 2, rng, dtype="float64")    # fused_qkv: one (C, 3C) like GPT-2's c_attn
    mha.qkv.b[...] = randn(rng, 3 * C)
    x = randn(rng, 1, 4, C)
    Wq, Wk, Wv, bq, bk, bv = unpack(fn(mha.qkv.W.copy(), mha.qkv.b.copy()),
                                    ("Wq", "Wk", "Wv", "bq", "bk", "bv"))
    q, k, v = mha.project_qkv(x)                            # (B, H, T, D) each
    for name, W, b, want in (("q", Wq, bq, q), ("k", Wk, bk, k), ("v", Wv, bv, v)):
        close(split_heads(x @ np.asarray(W) + np.asarray(b), 2), want, f"x @ W{name} + b{name}")


@exercise("18")
def answer_only_targets(fn, rng):
    ids = np.array([[11, 12, 13, 21, 22, 2, 0, 0],
                    [14, 21, 22, 23, 24, 25, 26, 2]])
    inputs, targets = unpack(fn(ids.copy(), np.array([3, 1]), np.array([6, 8]), -100),
                             ("inputs", "targets"))
    same(np.asarray(inputs), ids[:, :-1], "inputs")
    I = -100
    same(np.asarray(targets), np.array([[I, I, 21, 22, 2, I, I], [21, 22, 23, 24, 25, 26, 2]]),
         "targets (question and padding ignored, answer and its end token graded)")


@exercise("18")
def answer_only_loss(fn, rng):
    logits = randn(rng, 2, 4, 5)
    targets = np.array([[-100, -100, 3, 1], [-100, 4, 0, -100]])
    loss, dlogits = unpack(fn(logits.copy(), targets.copy(), -100), ("loss", "dlogits"))
    close(loss, float(cross_entropy_forward(logits, targets, -100)[0]), "the loss over the answer tokens")
    x = logits.copy()
    numeric = numeric_vjp(lambda: cross_entropy_forward(x, targets, -100)[0], {"logits": x}, 1.0)
    grad_close(dlogits, numeric["logits"], "dlogits")
