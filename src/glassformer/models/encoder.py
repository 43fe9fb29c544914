"""EncoderClassifier: bidirectional transformer blocks, pooling, a linear head over classes."""
from ..backend import array_module
from ..layers.base import Layer
from ..layers.block import TransformerBlock
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding
from ..layers.positional import SinusoidalPositionalEncoding, LearnedPositionalEmbedding
from ..layers.linear import Linear
from ..layers.norm import LayerNorm


def make_positional(config, rng):
    if config.positional == "learned":
        return LearnedPositionalEmbedding(config.max_len, config.d_model, rng, dtype=config.dtype)
    return SinusoidalPositionalEncoding(config.max_len, config.d_model)


def make_blocks(config, rng, causal):
    out_init = "normal" if config.init == "normal" else None
    return [TransformerBlock(config.d_model, config.n_heads, config.d_ff, rng,
                             norm_first=config.norm_first, causal=causal, dropout=config.dropout,
                             activation=config.activation, fused_qkv=config.fused_qkv,
                             init=config.init, out_init=out_init, dtype=config.dtype)
            for _ in range(config.n_layers)]


class EncoderClassifier(Layer):
    """ids (B, T) -> class logits (B, n_classes), pooling the first token or the mean of real tokens."""

    def __init__(self, config, rng):
        self.config = config
        C = config.d_model
        self.tok_emb = Embedding(config.vocab_size, C, rng, dtype=config.dtype)
        self.pos = make_positional(config, rng)
        self.drop = Dropout(config.dropout, rng)
        self.blocks = make_blocks(config, rng, causal=False)
        self.ln_f = LayerNorm(C, dtype=config.dtype) if config.norm_first else None
        self.head = Linear(C, config.n_classes, rng, init=config.init, dtype=config.dtype)

    def forward(self, ids, padding_mask=None):              # ids: (B, T); mask True = real token
        x = self.drop.forward(self.pos.forward(self.tok_emb.forward(ids)))   # (B, T, C)
        for block in self.blocks:
            x = block.forward(x, padding_mask)
        if self.ln_f is not None:
            x = self.ln_f.forward(x)
        self.x_shape, self.padding_mask = x.shape, padding_mask
        return self.head.forward(self.pool(x))              # (B, n_classes)

    def pool(self, x):                                      # (B, T, C) -> (B, C)
        if self.config.pooling == "first":
            return x[:, 0]
        return (x * self.pool_weights(array_module(x), x.shape, x.dtype)).sum(axis=1)

    def pool_weights(self, xp, shape, dtype):
        """(B, T, 1): 1/n on the n real tokens, 0 on padding; mean pooling as a weighted sum."""
        B, T, _ = shape
        m = xp.ones((B, T), dtype) if self.padding_mask is None else \
            xp.asarray(self.padding_mask, dtype=dtype)
        return (m / m.sum(axis=1, keepdims=True))[:, :, None]

    def backward(self, dlogits):                            # dlogits: (B, n_classes)
        xp = array_module(dlogits)
        dpooled = self.head.backward(dlogits)               # (B, C)
        if self.config.pooling == "first":
            dx = xp.zeros(self.x_shape, dpooled.dtype)
            dx[:, 0] = dpooled
        else:
            dx = dpooled[:, None, :] * self.pool_weights(xp, self.x_shape, dpooled.dtype)
        if self.ln_f is not None:
            dx = self.ln_f.backward(dx)
        for block in reversed(self.blocks):
            dx = block.backward(dx)
        self.tok_emb.backward(self.pos.backward(self.drop.backward(dx)))
        return None                                         # ids have no gradient

    def children(self):
        kids = {"tok_emb": self.tok_emb, "pos": self.pos, "drop": self.drop}
        kids.update({f"blocks.{i}": b for i, b in enumerate(self.blocks)})
        if self.ln_f is not None:
            kids["ln_f"] = self.ln_f
        kids["head"] = self.head
        return kids

