# ==================================================================================================
# SPOILER: the solutions of lesson 4's exercises (lessons/04-stacking-blocks.md).
# Write your own in lessons/exercises/04_stacking_blocks.py first, and check them with
#     python -m glassformer.lessons check 04
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 4 exercises: post-LN and pre-LN blocks, forward and backward, and their size."""


def block_parameter_count(C, F):
    """The number of parameters of one transformer block (lesson 4, section 1).

    d_model = C, d_ff = F. Count: attention (a fused C x 3C projection for q, k, v with its 3C biases,
    and the C x C output projection with C biases), the FFN (C x F + F, then F x C + C), and two
    LayerNorms (gamma and beta, C each). Return an int.
    """
    attention = 3 * C * C + 3 * C + C * C + C
    ffn = C * F + F + F * C + C
    norms = 2 * (C + C)
    return attention + ffn + norms


def pre_ln_block(x, attn, ffn, ln1, ln2):
    """A pre-LN block's forward (lesson 4, section 1; GPT-2's layout).

    x: (B, T, C); attn, ffn, ln1, ln2: functions (B, T, C) -> (B, T, C), the block's sub-layers.
    Return x + ffn(ln2(h)) with h = x + attn(ln1(x)): each sub-layer reads a normalised copy,
    the residual stream itself is never normalised. Call each function exactly once.
    """
    h = x + attn(ln1(x))
    return h + ffn(ln2(h))


def post_ln_block(x, attn, ffn, ln1, ln2):
    """A post-LN block's forward (lesson 4, section 1; the 2017 paper's layout).

    Same arguments as pre_ln_block. Return ln2(h + ffn(h)) with h = ln1(x + attn(x)): the norm
    comes after each residual sum. Call each function exactly once.
    """
    h = ln1(x + attn(x))
    return ln2(h + ffn(h))


def pre_ln_block_backward(dout, attn_backward, ffn_backward, ln1_backward, ln2_backward):
    """A pre-LN block's backward (lesson 4, section 2): residual gradients add.

    dout: (B, T, C) the gradient of the block's output; each *_backward(d) returns the gradient of
    that sub-layer's input given the gradient of its output (their forwards have run already).
    Return dx for the forward of pre_ln_block. Call each function exactly once, the last sub-layer
    of the forward first.
    """
    dh = dout + ln2_backward(ffn_backward(dout))            # out = h + ffn(ln2(h))
    return dh + ln1_backward(attn_backward(dh))             # h = x + attn(ln1(x))
