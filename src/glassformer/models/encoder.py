"""EncoderClassifier: bidirectional transformer blocks, pooling, a linear head over classes."""
from ..layers.base import Layer
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding
from ..layers.heads import Pooling
from ..layers.linear import Linear
from ..layers.norm import LayerNorm
from .builders import make_blocks, make_positional


class EncoderClassifier(Layer):
    """ids (B, T) -> class logits (B, n_classes), pooling the first token or the mean of real tokens."""

    def __init__(self, config, rng):
        self.config = config
        C = config.d_model
        self.tok_emb = Embedding(config.vocab_size, C, rng, dtype=config.dtype)
        self.pos = make_positional(config, rng)
        self.drop = Dropout(config.dropout, rng)
        self.blocks = make_blocks(config, rng, causal=False)
        self.ln_f = LayerNorm(C, dtype=config.dtype, bias=config.bias) if config.norm_first else None
        self.pool = Pooling(config.pooling)
        self.head = Linear(C, config.n_classes, rng, init=config.init, dtype=config.dtype)

    def forward(self, ids, padding_mask=None):              # ids: (B, T); mask True = real token
        x = self.drop.forward(self.pos.forward(self.tok_emb.forward(ids)))   # (B, T, C)
        for block in self.blocks:
            x = block.forward(x, padding_mask)
        if self.ln_f is not None:
            x = self.ln_f.forward(x)
        return self.head.forward(self.pool.forward(x, padding_mask))   # (B, n_classes)

    def backward(self, dlogits):                            # dlogits: (B, n_classes)
        dx = self.pool.backward(self.head.backward(dlogits))   # (B, C) -> (B, T, C)
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
        kids.update({"pool": self.pool, "head": self.head})
        return kids
