"""Lesson 17: encoder-decoder and cross-attention."""
import numpy as np

from ...research import CrossAttention
from ..grading import close, exercise, grad_close, numeric_vjp, randn, same, unpack

B, T, S, C, H = 2, 3, 5, 8, 2
MASK = np.array([[True] * 5, [True, True, True, False, False]])


def layer_and_weights(rng):
    attn = CrossAttention(C, H, rng, dtype="float64")
    for lin in (attn.q_proj, attn.k_proj, attn.v_proj, attn.proj):
        lin.b[...] = 0.0                                    # the exercise has no biases
    return attn, [lin.W.copy() for lin in (attn.q_proj, attn.k_proj, attn.v_proj, attn.proj)]


@exercise("17")
def cross_attention_forward(fn, rng):
    attn, W = layer_and_weights(rng)
    x, memory = randn(rng, B, T, C), randn(rng, B, S, C)
    for mask in (None, MASK):
        label = "no mask" if mask is None else "source padding mask"
        close(fn(x.copy(), memory.copy(), *W, H, mask), attn.forward(x, memory, mask),
              f"cross-attention output ({label})")
    garbage = memory.copy()
    garbage[1, 3:] = 100.0                                  # padded source positions
    close(fn(x.copy(), garbage, *W, H, MASK), attn.forward(x, memory, MASK),
          "the output with garbage at padded source positions (it must not change)")


@exercise("17")
def cross_attention_backward(fn, rng):
    attn, W = layer_and_weights(rng)
    x, memory, dout = randn(rng, B, T, C), randn(rng, B, S, C), randn(rng, B, T, C)
    for mask in (None, MASK):
        label = "no mask" if mask is None else "source padding mask"
        attn.forward(x, memory, mask)
        dx_ref, dmem_ref = attn.backward(dout)
        dx, dmem = unpack(fn(dout.copy(), x.copy(), memory.copy(), *W, H, mask), ("dx", "dmemory"))
        close(dx, dx_ref, f"dx ({label})")
        close(dmem, dmem_ref, f"dmemory ({label})")
        numeric = numeric_vjp(lambda: attn.forward(x, memory, mask), {"x": x, "memory": memory}, dout)
        grad_close(dx, numeric["x"], f"dx ({label})")
        grad_close(dmem, numeric["memory"], f"dmemory ({label})")


@exercise("17")
def shift_right(fn, rng):
    targets = np.array([[5, 6, 7, 2], [8, 2, 0, 0]])
    same(np.asarray(fn(targets.copy(), 1)), np.array([[1, 5, 6, 7], [1, 8, 2, 0]]),
         "shift_right([[5, 6, 7, 2], [8, 2, 0, 0]], bos_id=1)")
