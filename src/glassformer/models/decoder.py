"""DecoderLM: causal transformer blocks and an LM head (optionally tied to the token embedding)."""
from ..backend import accelerated
from ..layers.base import Layer
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding
from ..layers.heads import TiedLMHead
from ..layers.linear import Linear
from ..layers.norm import LayerNorm
from .builders import make_blocks, make_positional


class DecoderLM(Layer):
    """ids (B, T) -> next-token logits (B, T, V); position t sees tokens 0..t only."""

    def __init__(self, config, rng):
        self.config = config
        C, V = config.d_model, config.vocab_size
        std = 0.02 if config.init == "normal" else None
        self.tok_emb = Embedding(V, C, rng, std=std, dtype=config.dtype)
        self.pos = make_positional(config, rng)
        self.drop = Dropout(config.dropout, rng)
        self.blocks = make_blocks(config, rng, causal=True)
        self.ln_f = (LayerNorm(C, eps=config.norm_eps, dtype=config.dtype, bias=config.bias)
                     if config.norm_first else None)
        self.head = TiedLMHead(self.tok_emb) if config.tie_weights else \
            Linear(C, V, rng, bias=False, init=config.init, dtype=config.dtype)

    def forward(self, ids, caches=None, start=0):           # ids: (B, T)
        return self.logits(self.features(ids, caches, start))   # (B, T, V)

    def features(self, ids, caches=None, start=0):
        """The final hidden states h (B, T, C); caches: one dict per block (see new_caches)."""
        x = self.drop.forward(self.pos.forward(self.tok_emb.forward(ids), start))  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block.forward(x, None, None if caches is None else caches[i])
        if self.ln_f is not None:
            x = self.ln_f.forward(x)
        return x

    def logits(self, h):                                    # h: (B, T, C) -> (B, T, V)
        self.h = h                                          # the final hidden states, kept
        return self.head.forward(h)

    def new_caches(self):
        """One empty KV cache per block, preallocating max_len positions when first written."""
        return [{"max_len": self.config.max_len} for _ in self.blocks]

    def backward(self, dlogits):                            # dlogits: (B, T, V)
        dx = self.head.backward(dlogits)                    # tied: also adds into tok_emb.dW
        if self.ln_f is not None:
            dx = self.ln_f.backward(dx)
        for block in reversed(self.blocks):
            dx = block.backward(dx)
        self.tok_emb.backward(self.pos.backward(self.drop.backward(dx)))
        return None

    def children(self):
        kids = {"tok_emb": self.tok_emb, "pos": self.pos, "drop": self.drop}
        kids.update({f"blocks.{i}": b for i, b in enumerate(self.blocks)})
        if self.ln_f is not None:
            kids["ln_f"] = self.ln_f
        kids["head"] = self.head                            # tied: no parameters, no names
        return kids


@accelerated
def decode_step(model, ids, caches, start):
    """The logits (B, 1, V) of the token after ids (B, T) fed at position `start`, the caches holding
    the positions before: one step of cached decoding (the CPU overlay runs a GPT-2-shaped step as
    one compiled call per block: kernels/cpu/decode.py)."""
    return model.logits(model.features(ids, caches, start)[:, -1:])
