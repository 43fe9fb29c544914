"""The transformer block: attention and feed-forward sub-layers with residuals and LayerNorm."""
from .base import Layer
from .dropout import Dropout
from .feedforward import FeedForward
from .norm import LayerNorm
from .attention import MultiHeadAttention


class TransformerBlock(Layer):
    """Post-LN (x = LN(x + f(x)), the 2017 paper) or pre-LN (x = x + f(LN(x)), GPT-2)."""

    def __init__(self, d_model, n_heads, d_ff, rng, norm_first=False, causal=False, dropout=0.0,
                 activation="relu", fused_qkv=True, init="xavier", out_init=None, dtype="float32",
                 bias=True):
        self.norm_first = norm_first
        self.ln1 = LayerNorm(d_model, dtype=dtype, bias=bias)
        self.attn = MultiHeadAttention(d_model, n_heads, rng, causal=causal, fused_qkv=fused_qkv,
                                       init=init, out_init=out_init, dtype=dtype, bias=bias)
        self.drop1 = Dropout(dropout, rng)
        self.ln2 = LayerNorm(d_model, dtype=dtype, bias=bias)
        self.ffn = FeedForward(d_model, d_ff, rng, activation=activation, init=init,
                               out_init=out_init, dtype=dtype, bias=bias)
        self.drop2 = Dropout(dropout, rng)

    def forward(self, x, key_padding_mask=None, cache=None):   # (B, T, C) -> (B, T, C)
        if self.norm_first:
            x = x + self.drop1.forward(self.attn.forward(self.ln1.forward(x), key_padding_mask, cache))
            return x + self.drop2.forward(self.ffn.forward(self.ln2.forward(x)))
        x = self.ln1.forward(x + self.drop1.forward(self.attn.forward(x, key_padding_mask, cache)))
        return self.ln2.forward(x + self.drop2.forward(self.ffn.forward(x)))

    def backward(self, dout):
        if self.norm_first:                                 # residual: gradients add
            dx = dout + self.ln2.backward(self.ffn.backward(self.drop2.backward(dout)))
            return dx + self.ln1.backward(self.attn.backward(self.drop1.backward(dx)))
        dh = self.ln2.backward(dout)
        dx = self.ln1.backward(dh + self.ffn.backward(self.drop2.backward(dh)))
        return dx + self.attn.backward(self.drop1.backward(dx))

    def children(self):
        return {"ln1": self.ln1, "attn": self.attn, "drop1": self.drop1,
                "ln2": self.ln2, "ffn": self.ffn, "drop2": self.drop2}
