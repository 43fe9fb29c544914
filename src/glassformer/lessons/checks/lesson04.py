"""Lesson 4: stacking blocks."""
from ...layers import TransformerBlock
from ..grading import close, exercise, expect, randn


@exercise("04")
def block_parameter_count(fn, rng):
    for C, F in ((16, 32), (64, 256), (8, 8)):
        want = TransformerBlock(C, 4, F, rng).n_parameters()
        got = fn(C, F)
        expect(got == want, f"block_parameter_count({C}, {F}) = {got!r}, but the block has {want}")


def block(rng, norm_first):
    b = TransformerBlock(16, 2, 32, rng, norm_first=norm_first, dtype="float64")
    for _, (p, _) in b.named_parameters():                  # gamma, beta away from 1, 0
        p += 0.3 * randn(rng, *p.shape)
    return b


def sublayers(b, method):
    return [getattr(layer, method) for layer in (b.attn, b.ffn, b.ln1, b.ln2)]


@exercise("04")
def pre_ln_block(fn, rng):
    b, x = block(rng, True), randn(rng, 2, 5, 16)
    close(fn(x.copy(), *sublayers(b, "forward")), b.forward(x), "the pre-LN block's output")


@exercise("04")
def post_ln_block(fn, rng):
    b, x = block(rng, False), randn(rng, 2, 5, 16)
    close(fn(x.copy(), *sublayers(b, "forward")), b.forward(x), "the post-LN block's output")


@exercise("04")
def pre_ln_block_backward(fn, rng):
    b, x, dout = block(rng, True), randn(rng, 2, 5, 16), randn(rng, 2, 5, 16)
    b.forward(x)
    want = b.backward(dout)
    b.forward(x)
    close(fn(dout.copy(), *sublayers(b, "backward")), want, "dx of the pre-LN block")
