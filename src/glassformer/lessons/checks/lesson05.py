"""Lesson 5: pooling, the tied head, parameter counts."""
import numpy as np

from ...layers import Embedding, Pooling, TiedLMHead
from ...models import ModelConfig, build_model
from ..grading import close, exercise, expect, randn, unpack

MASK = np.array([[True, True, True, True, True], [True, True, False, False, False],
                 [True, False, False, False, False]])


@exercise("05")
def mean_pool(fn, rng):
    x = randn(rng, 3, 5, 4)
    pool = Pooling("mean")
    close(fn(x.copy(), MASK.copy()), pool.forward(x, MASK), "mean_pool(x, mask)")
    x2 = x.copy()
    x2[~MASK] = 1e3                                         # garbage where the padding is
    close(fn(x2, MASK.copy()), pool.forward(x, MASK), "mean_pool with garbage at padded positions")


@exercise("05")
def mean_pool_backward(fn, rng):
    x, dout = randn(rng, 3, 5, 4), randn(rng, 3, 4)
    pool = Pooling("mean")
    pool.forward(x, MASK)
    close(fn(dout.copy(), MASK.copy()), pool.backward(dout), "dx of mean_pool")


@exercise("05")
def tied_head_backward(fn, rng):
    V, C = 11, 4
    emb = Embedding(V, C, rng, dtype="float64")
    head = TiedLMHead(emb)
    h, dlogits = randn(rng, 2, 3, C), randn(rng, 2, 3, V)
    head.forward(h)
    dh_ref = head.backward(dlogits)
    dh, dE = unpack(fn(dlogits.copy(), h.copy(), emb.W.copy()), ("dh", "dE_head"))
    close(dh, dh_ref, "dh")
    close(dE, emb.dW, "dE_head")


@exercise("05")
def gpt2_parameter_count(fn, rng):
    got = fn(50257, 768, 12, 3072, 1024)
    expect(got == 124_439_808, f"GPT-2 small: got {got!r}, expected 124,439,808")
    for V, C, L, F, T in ((500, 64, 2, 256, 32), (37, 16, 3, 24, 9)):
        config = ModelConfig(vocab_size=V, kind="decoder_lm", d_model=C, n_heads=4, n_layers=L,
                             d_ff=F, max_len=T, positional="learned", norm_first=True)
        want = build_model(config, np.random.default_rng(0)).n_parameters()
        got = fn(V, C, L, F, T)
        expect(got == want, f"gpt2_parameter_count({V}, {C}, {L}, {F}, {T}) = {got!r}, "
                            f"but that model has {want}")
