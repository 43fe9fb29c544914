"""Attention's masked softmax in float32 for 16-bit scores, through the CPU softmax.

Laid over layers.attention.attend / attend_backward.
"""
from ... import backend
from ...backend import array_module, upcast
from .activations import softmax_backward_cpu, softmax_cpu


def mask_bias(xp, allowed, dtype):
    """0 where allowed, else dtype's lowest finite number, (B or 1, 1, T, S): one pass to add."""
    return xp.where(allowed, 0.0, float(xp.finfo(dtype).min)).astype(dtype)


@backend.accelerates("attend", device="cpu")
def attend_cpu(q, k, v, allowed):
    """attend(): the scores scaled in place; 16-bit scores masked and normalised in float32."""
    xp = array_module(q)
    D = q.shape[-1]
    scores = q @ k.transpose(0, 1, 3, 2)                               # (B, H, T, S)
    scores *= float(D ** -0.5)
    scores = upcast(scores)                                 # 16-bit in: the mask and softmax in float32
    if allowed is not None:
        scores += mask_bias(xp, allowed, scores.dtype)
    att = softmax_cpu(scores, axis=-1)                                  # (B, H, T, S)
    return att @ v, att                                                 # (B, H, T, D)


@backend.accelerates("attend_backward", device="cpu")
def attend_backward_cpu(dy, q, k, v, att):
    """attend_backward(): the softmax's Jacobian product through row dots, scaled in place."""
    D = q.shape[-1]
    dv = att.transpose(0, 1, 3, 2) @ dy                                 # y = att @ v
    datt = dy @ v.transpose(0, 1, 3, 2)                                 # (B, H, T, S)
    dscores = softmax_backward_cpu(datt, att)                           # att = softmax(scores)
    dscores *= float(D ** -0.5)
    dq = dscores @ k                                                    # scores = q k^T / sqrt(D)
    dk = dscores.transpose(0, 1, 3, 2) @ q
    return dq, dk, dv
