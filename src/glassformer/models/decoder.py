"""DecoderLM: causal transformer blocks and an LM head (optionally tied to the token embedding)."""
from ..backend import array_module, matmul, to_compute
from ..layers.base import Layer
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding
from ..layers.linear import Linear
from ..layers.norm import LayerNorm
from .encoder import make_blocks, make_positional


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
        self.ln_f = LayerNorm(C, dtype=config.dtype) if config.norm_first else None
        self.head = None if config.tie_weights else \
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
        self.h = h
        if self.head is None:
            B, T, C = h.shape                               # tied weights: logits = h E^T
            h2, E = to_compute(h.reshape(B * T, C)), to_compute(self.tok_emb.W)  # fp16 policy: float16
            return matmul(h2, E.T).reshape(B, T, -1)        # one 2-D GEMM
        return self.head.forward(h)

    def new_caches(self):
        """One empty KV cache per block, preallocating max_len positions when first written."""
        return [{"max_len": self.config.max_len} for _ in self.blocks]

    def backward(self, dlogits):                            # dlogits: (B, T, V)
        if self.head is None:
            V, C = self.tok_emb.W.shape
            d2, h2 = to_compute(dlogits.reshape(-1, V)), to_compute(self.h.reshape(-1, C))
            self.tok_emb.dW += matmul(d2.T, h2)             # logits = h E^T; float32 dW
            dx = matmul(d2, to_compute(self.tok_emb.W)).reshape(self.h.shape)
        else:
            dx = self.head.backward(dlogits)
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
        if self.head is not None:
            kids["head"] = self.head
        return kids
