"""Lesson 4 exercises: post-LN and pre-LN blocks, forward and backward, and their size.

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 04
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.
"""


def block_parameter_count(C, F):
    """The number of parameters of one transformer block (lesson 4, section 1).

    d_model = C, d_ff = F. Count: attention (a fused C x 3C projection for q, k, v with its 3C biases,
    and the C x C output projection with C biases), the FFN (C x F + F, then F x C + C), and two
    LayerNorms (gamma and beta, C each). Return an int.
    """
    raise NotImplementedError


def pre_ln_block(x, attn, ffn, ln1, ln2):
    """A pre-LN block's forward (lesson 4, section 1; GPT-2's layout).

    x: (B, T, C); attn, ffn, ln1, ln2: functions (B, T, C) -> (B, T, C), the block's sub-layers.
    Return x + ffn(ln2(h)) with h = x + attn(ln1(x)): each sub-layer reads a normalised copy,
    the residual stream itself is never normalised. Call each function exactly once.
    """
    raise NotImplementedError


def post_ln_block(x, attn, ffn, ln1, ln2):
    """A post-LN block's forward (lesson 4, section 1; the 2017 paper's layout).

    Same arguments as pre_ln_block. Return ln2(h + ffn(h)) with h = ln1(x + attn(x)): the norm
    comes after each residual sum. Call each function exactly once.
    """
    raise NotImplementedError


def pre_ln_block_backward(dout, attn_backward, ffn_backward, ln1_backward, ln2_backward):
    """A pre-LN block's backward (lesson 4, section 2): residual gradients add.

    dout: (B, T, C) the gradient of the block's output; each *_backward(d) returns the gradient of
    that sub-layer's input given the gradient of its output (their forwards have run already).
    Return dx for the forward of pre_ln_block. Call each function exactly once, the last sub-layer
    of the forward first.
    """
    raise NotImplementedError
