"""Attention variants: rotary positions (RoPE), quadratic (softmax-free) scores, cross-attention.

Shapes: B batch, T query length, S key length, C = d_model, H = n_heads, D = d_head = C // H.
Each reuses split_heads / attention_mask / attend / attend_backward from glassformer.layers.attention
(attend and attend_backward run the GPU kernels on CuPy arrays; quadratic_attend is array code only).
"""
import numpy as np

from ..backend import array_module
from ..layers.attention import (MultiHeadAttention, attend, attend_backward, attention_mask,
                                cache_append, merge_heads, split_heads)
from ..layers.base import Layer
from ..layers.linear import Linear


def rope_tables(max_len, d_head, base=10000.0):
    """cos and sin of pos * theta_i with theta_i = base^(-2i/D), each (max_len, D/2), float64."""
    theta = base ** (-np.arange(0, d_head, 2) / d_head)    # (D/2,)
    angles = np.arange(max_len)[:, None] * theta[None, :]  # (max_len, D/2)
    return np.cos(angles), np.sin(angles)


class RotaryEmbedding(Layer):
    """RoPE (Su et al. 2021): rotates each pair (x[2i], x[2i+1]) of q or k by angle pos * theta_i.

    Then (R_m q) . (R_n k) = q . R_(n-m) k: the score depends on the offset n - m only.
    """

    def __init__(self, d_head, max_len, base=10000.0):
        if d_head % 2:
            raise ValueError(f"RoPE needs an even d_head, got {d_head}")
        self.max_len = max_len
        self.cos, self.sin = rope_tables(max_len, d_head, base)
        self._cache = {}

    def _tables(self, x, offset, T):
        """cos, sin rows offset..offset+T-1 as arrays like x: (T, D/2) each."""
        if offset + T > self.max_len:
            raise ValueError(f"position {offset + T - 1} is beyond max_len={self.max_len}")
        xp = array_module(x)
        key = (xp.__name__, str(x.dtype))
        if key not in self._cache:
            self._cache[key] = (xp.asarray(self.cos, x.dtype), xp.asarray(self.sin, x.dtype))
        cos, sin = self._cache[key]
        return cos[offset:offset + T], sin[offset:offset + T]

    def rotate(self, x, offset=0, inverse=False):
        """x (B, H, T, D) with position t at absolute position offset + t; inverse rotates back."""
        xp = array_module(x)
        cos, sin = self._tables(x, offset, x.shape[-2])    # (T, D/2)
        if inverse:                                         # R(theta)^T = R(-theta)
            sin = -sin
        x1, x2 = x[..., 0::2], x[..., 1::2]                 # (B, H, T, D/2)
        out = xp.empty_like(x)
        out[..., 0::2] = x1 * cos - x2 * sin
        out[..., 1::2] = x1 * sin + x2 * cos
        return out

    def forward(self, x, offset=0):                         # x: (B, H, T, D)
        self.offset = offset
        return self.rotate(x, offset)

    def backward(self, dout):                               # a rotation's VJP is its inverse
        return self.rotate(dout, self.offset, inverse=True)


def quadratic_attend(q, k, v, allowed):
    """att = (q k^T / D)^2 with masked pairs set to 0 (no softmax); returns (att @ v, att)."""
    xp = array_module(q)
    s = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / q.shape[-1])   # (B, H, T, S)
    att = s * s
    if allowed is not None:
        att = xp.where(allowed, att, 0.0)
    return att @ v, att                                     # (B, H, T, D)


def quadratic_attend_backward(dy, q, k, v, att, allowed):
    """Gradients of quadratic_attend() w.r.t. q, k, v."""
    xp = array_module(q)
    D = q.shape[-1]
    dv = att.transpose(0, 1, 3, 2) @ dy                     # y = att @ v
    datt = dy @ v.transpose(0, 1, 3, 2)                     # (B, H, T, S)
    s = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / D)           # recomputed: one matmul, no cache
    ds = 2.0 * s * datt                                     # att = s^2
    if allowed is not None:
        ds = xp.where(allowed, ds, 0.0)                     # masked pairs are constant 0
    ds *= 1.0 / D                                           # s = q k^T / D
    return ds @ k, ds.transpose(0, 1, 3, 2) @ q, dv


def split_head_weights(attn):
    """{"W_Q", "W_K", "W_V": (H, C, D), "W_O": (H, D, C)} of a MultiHeadAttention (fused or not)."""
    H = attn.n_heads
    if attn.fused_qkv:
        C = attn.qkv.W.shape[0]
        Wq, Wk, Wv = attn.qkv.W[:, :C], attn.qkv.W[:, C:2 * C], attn.qkv.W[:, 2 * C:]
    else:
        Wq, Wk, Wv = attn.q_proj.W, attn.k_proj.W, attn.v_proj.W
    C = Wq.shape[0]
    per_head = lambda W: W.reshape(C, H, C // H).transpose(1, 0, 2)    # noqa: E731  (H, C, D)
    return {"W_Q": per_head(Wq), "W_K": per_head(Wk), "W_V": per_head(Wv),
            "W_O": attn.proj.W.reshape(H, C // H, C)}


class KernelAttention(MultiHeadAttention):
    """MultiHeadAttention with an optional RoPE on q and k and a replaceable score kernel.

    forward(x, key_padding_mask=None, cache=None) as in MultiHeadAttention; with a cache the new
    q and k are rotated at positions cached_len.. so cached + incremental steps equal one full pass.
    """

    def __init__(self, d_model, n_heads, rng, causal=False, rope=False, max_len=2048,
                 rope_base=10000.0, **kwargs):
        super().__init__(d_model, n_heads, rng, causal=causal, **kwargs)
        self.rope = RotaryEmbedding(d_model // n_heads, max_len, rope_base) if rope else None

    def kernel(self, q, k, v, allowed):
        return attend(q, k, v, allowed)

    def kernel_backward(self, dy, q, k, v, att, allowed):
        return attend_backward(dy, q, k, v, att)

    def forward(self, x, key_padding_mask=None, cache=None):  # x: (B, T, C)
        xp = array_module(x)
        q, k, v = self.project_qkv(x)                       # (B, H, T, D) each
        offset = cache["k"].shape[2] if cache is not None and "k" in cache else 0
        if self.rope is not None:
            q, k = self.rope.rotate(q, offset), self.rope.rotate(k, offset)
        if cache is not None:                               # incremental decoding, inference only
            k, v = cache_append(cache, k, v)                # (B, H, S, D): cached + new
        allowed = attention_mask(xp, q.shape[2], k.shape[2], self.causal, key_padding_mask, offset)
        y, att = self.kernel(q, k, v, allowed)
        self.q, self.k, self.v, self.att, self.allowed, self.offset = q, k, v, att, allowed, offset
        self.last_attention_weights = att
        return self.proj.forward(merge_heads(y))            # (B, T, C)

    def backward(self, dout):                               # dout: (B, T, C)
        dy = split_heads(self.proj.backward(dout), self.n_heads)          # (B, H, T, D)
        dq, dk, dv = self.kernel_backward(dy, self.q, self.k, self.v, self.att, self.allowed)
        if self.rope is not None:                           # q = R q0: dq0 = R^T dq
            dq = self.rope.rotate(dq, self.offset, inverse=True)
            dk = self.rope.rotate(dk, self.offset, inverse=True)
        return self.project_qkv_backward(dq, dk, dv)        # (B, T, C)

    def head_weights(self):
        """Per-head matrices for circuits: W_Q, W_K, W_V (H, C, D) and W_O (H, D, C)."""
        return split_head_weights(self)


class RotaryAttention(KernelAttention):
    """Softmax attention with rotary position embeddings on q and k (Su et al. 2021)."""

    def __init__(self, d_model, n_heads, rng, causal=False, max_len=2048, rope_base=10000.0,
                 **kwargs):
        super().__init__(d_model, n_heads, rng, causal=causal, rope=True, max_len=max_len,
                         rope_base=rope_base, **kwargs)


class QuadraticAttention(KernelAttention):
    """Softmax-free attention: weights (q . k / D)^2, masked pairs 0, out = weights @ v."""

    def kernel(self, q, k, v, allowed):
        return quadratic_attend(q, k, v, allowed)

    def kernel_backward(self, dy, q, k, v, att, allowed):
        return quadratic_attend_backward(dy, q, k, v, att, allowed)


class CrossAttention(Layer):
    """Queries from x (B, T, C); keys and values from a context (B, S, C_ctx), padding masked."""

    def __init__(self, d_model, n_heads, rng, d_context=None, init="xavier", out_init=None,
                 dtype="float32"):
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        d_context = d_context or d_model
        self.n_heads = n_heads
        self.q_proj = Linear(d_model, d_model, rng, init=init, dtype=dtype)
        self.k_proj = Linear(d_context, d_model, rng, init=init, dtype=dtype)
        self.v_proj = Linear(d_context, d_model, rng, init=init, dtype=dtype)
        self.proj = Linear(d_model, d_model, rng, init=out_init or init, dtype=dtype)
        self.last_attention_weights = None                  # (B, H, T, S)

    def forward(self, x, context, context_mask=None):       # x: (B, T, C), context: (B, S, C_ctx)
        xp = array_module(x)
        H = self.n_heads
        q = split_heads(self.q_proj.forward(x), H)          # (B, H, T, D)
        k = split_heads(self.k_proj.forward(context), H)    # (B, H, S, D)
        v = split_heads(self.v_proj.forward(context), H)
        allowed = attention_mask(xp, q.shape[2], k.shape[2], False, context_mask)
        y, att = attend(q, k, v, allowed)
        self.q, self.k, self.v, self.att = q, k, v, att
        self.last_attention_weights = att
        return self.proj.forward(merge_heads(y))            # (B, T, C)

    def backward(self, dout):                               # returns (dx, dcontext)
        dy = split_heads(self.proj.backward(dout), self.n_heads)
        dq, dk, dv = attend_backward(dy, self.q, self.k, self.v, self.att)
        dx = self.q_proj.backward(merge_heads(dq))
        dcontext = self.k_proj.backward(merge_heads(dk)) + self.v_proj.backward(merge_heads(dv))
        return dx, dcontext

    def children(self):
        return {"q_proj": self.q_proj, "k_proj": self.k_proj, "v_proj": self.v_proj,
                "proj": self.proj}
