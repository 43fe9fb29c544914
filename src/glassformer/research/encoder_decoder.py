"""The original transformer (Vaswani et al. 2017): encoder, cross-attending decoder."""
from dataclasses import asdict, dataclass

import numpy as np

from ..layers.attention import MultiHeadAttention
from ..backend import array_module, scatter_add
from ..errors import UserError
from ..layers.base import Layer
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding
from ..layers.linear import Linear
from ..layers.feedforward import FeedForward
from ..layers.norm import LayerNorm
from ..models.builders import make_blocks, make_positional
from .attention import CrossAttention


@dataclass(frozen=True)
class EncoderDecoderConfig:
    vocab_size: int                    # source vocabulary (and target, unless tgt_vocab_size)
    tgt_vocab_size: int = 0            # 0: the same as vocab_size
    d_model: int = 64                  # C
    n_heads: int = 4
    n_layers: int = 2                  # encoder blocks
    n_decoder_layers: int = 0          # 0: the same as n_layers
    d_ff: int = 256
    max_len: int = 64
    dropout: float = 0.0
    norm_first: bool = False           # False: post-LN (the 2017 paper); True: pre-LN
    activation: str = "relu"
    positional: str = "sinusoidal"     # or "learned"
    share_embeddings: bool = False     # one token table for source and target (same vocabulary)
    fused_qkv: bool = True
    init: str = "xavier"
    dtype: str = "float32"

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise UserError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "max_len"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)} must be a positive integer")
        choices = {"activation": ("relu", "gelu"), "positional": ("sinusoidal", "learned"),
                   "init": ("xavier", "normal"), "dtype": ("float32", "float64", "float16")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"{name}={getattr(self, name)!r}: use one of {allowed}")
        if self.share_embeddings and self.tgt_vocab_size not in (0, self.vocab_size):
            raise UserError("share_embeddings needs one vocabulary: leave tgt_vocab_size at 0")

    @property
    def tgt_vocab(self):
        return self.tgt_vocab_size or self.vocab_size

    @property
    def n_dec_layers(self):
        return self.n_decoder_layers or self.n_layers

    def to_dict(self):
        return asdict(self)


class DecoderBlock(Layer):
    """Causal self-attention, cross-attention to the encoder memory, FFN; residuals + LayerNorm."""

    def __init__(self, d_model, n_heads, d_ff, rng, norm_first=False, dropout=0.0,
                 activation="relu", fused_qkv=True, init="xavier", dtype="float32"):
        self.norm_first = norm_first
        self.ln1, self.ln2, self.ln3 = (LayerNorm(d_model, dtype=dtype) for _ in range(3))
        self.self_attn = MultiHeadAttention(d_model, n_heads, rng, causal=True, fused_qkv=fused_qkv,
                                            init=init, dtype=dtype)
        self.cross_attn = CrossAttention(d_model, n_heads, rng, init=init, dtype=dtype)
        self.ffn = FeedForward(d_model, d_ff, rng, activation=activation, init=init, dtype=dtype)
        self.drop1, self.drop2, self.drop3 = (Dropout(dropout, rng) for _ in range(3))

    def forward(self, x, memory, memory_mask=None):         # x: (B, T, C), memory: (B, S, C)
        if self.norm_first:
            x = x + self.drop1.forward(self.self_attn.forward(self.ln1.forward(x)))
            x = x + self.drop2.forward(self.cross_attn.forward(self.ln2.forward(x), memory,
                                                               memory_mask))
            return x + self.drop3.forward(self.ffn.forward(self.ln3.forward(x)))
        x = self.ln1.forward(x + self.drop1.forward(self.self_attn.forward(x)))
        x = self.ln2.forward(x + self.drop2.forward(self.cross_attn.forward(x, memory,
                                                                            memory_mask)))
        return self.ln3.forward(x + self.drop3.forward(self.ffn.forward(x)))

    def backward(self, dout):                               # returns (dx, dmemory)
        if self.norm_first:                                 # residual: gradients add
            dx = dout + self.ln3.backward(self.ffn.backward(self.drop3.backward(dout)))
            dh, dmemory = self.cross_attn.backward(self.drop2.backward(dx))
            dx = dx + self.ln2.backward(dh)
            return dx + self.ln1.backward(self.self_attn.backward(self.drop1.backward(dx))), dmemory
        dx = self.ln3.backward(dout)
        dx = self.ln2.backward(dx + self.ffn.backward(self.drop3.backward(dx)))
        dh, dmemory = self.cross_attn.backward(self.drop2.backward(dx))
        dx = self.ln1.backward(dx + dh)
        return dx + self.self_attn.backward(self.drop1.backward(dx)), dmemory

    def children(self):
        return {"ln1": self.ln1, "self_attn": self.self_attn, "drop1": self.drop1,
                "ln2": self.ln2, "cross_attn": self.cross_attn, "drop2": self.drop2,
                "ln3": self.ln3, "ffn": self.ffn, "drop3": self.drop3}


class EncoderDecoder(Layer):
    """forward(src (B, S), tgt_in (B, T), src_mask) -> next-target-token logits (B, T, V_tgt)."""

    def __init__(self, config, rng):
        self.config = c = config
        self.src_emb = Embedding(c.vocab_size, c.d_model, rng, dtype=c.dtype)
        self.tgt_emb = None if c.share_embeddings else \
            Embedding(c.tgt_vocab, c.d_model, rng, dtype=c.dtype)
        self.src_pos, self.tgt_pos = make_positional(c, rng), make_positional(c, rng)
        self.src_drop, self.tgt_drop = Dropout(c.dropout, rng), Dropout(c.dropout, rng)
        self.encoder = make_blocks(c, rng, causal=False)
        self.decoder = [DecoderBlock(c.d_model, c.n_heads, c.d_ff, rng, c.norm_first, c.dropout,
                                     c.activation, c.fused_qkv, c.init, c.dtype)
                        for _ in range(c.n_dec_layers)]
        self.enc_ln = LayerNorm(c.d_model, dtype=c.dtype) if c.norm_first else None
        self.dec_ln = LayerNorm(c.d_model, dtype=c.dtype) if c.norm_first else None
        self.head = Linear(c.d_model, c.tgt_vocab, rng, init=c.init, dtype=c.dtype)

    def embed_target(self, tgt_in):                        # (B, T) -> (B, T, C)
        if self.tgt_emb is not None:
            return self.tgt_emb.forward(tgt_in)
        self.tgt_ids = tgt_in                               # shared table: src_emb keeps src ids
        return self.src_emb.W[tgt_in]

    def embed_target_backward(self, dx):
        if self.tgt_emb is not None:
            return self.tgt_emb.backward(dx)
        scatter_add(self.src_emb.dW, self.tgt_ids.reshape(-1), dx.reshape(-1, dx.shape[-1]))
        return None

    def encode(self, src, src_mask=None):                   # src: (B, S) -> memory (B, S, C)
        x = self.src_drop.forward(self.src_pos.forward(self.src_emb.forward(src)))
        for block in self.encoder:
            x = block.forward(x, src_mask)
        return x if self.enc_ln is None else self.enc_ln.forward(x)

    def decode(self, tgt_in, memory, src_mask=None):        # tgt_in: (B, T) -> logits (B, T, V)
        x = self.tgt_drop.forward(self.tgt_pos.forward(self.embed_target(tgt_in)))
        for block in self.decoder:
            x = block.forward(x, memory, src_mask)
        if self.dec_ln is not None:
            x = self.dec_ln.forward(x)
        return self.head.forward(x)

    def forward(self, src, tgt_in, src_mask=None):          # src_mask: (B, S) True = real token
        return self.decode(tgt_in, self.encode(src, src_mask), src_mask)

    def backward(self, dlogits):                            # dlogits: (B, T, V)
        dx = self.head.backward(dlogits)
        if self.dec_ln is not None:
            dx = self.dec_ln.backward(dx)
        dmemory = 0.0
        for block in reversed(self.decoder):
            dx, dm = block.backward(dx)
            dmemory = dmemory + dm                          # every decoder block reads the memory
        self.embed_target_backward(self.tgt_pos.backward(self.tgt_drop.backward(dx)))
        if self.enc_ln is not None:
            dmemory = self.enc_ln.backward(dmemory)
        for block in reversed(self.encoder):
            dmemory = block.backward(dmemory)
        self.src_emb.backward(self.src_pos.backward(self.src_drop.backward(dmemory)))
        return None                                         # ids have no gradient

    def greedy_decode(self, src, bos_id, eos_id, max_len, src_mask=None):
        """Batched argmax decoding: (B, <= max_len) ids after BOS; finished rows are eos-padded."""
        xp = array_module(self.head.W)
        src = xp.asarray(src)
        if max_len + 1 > self.config.max_len:
            raise ValueError(f"max_len={max_len} + BOS exceeds the model's max_len="
                             f"{self.config.max_len}")
        was_training = self.training
        self.eval()
        try:
            memory = self.encode(src, src_mask)
            tgt = xp.full((src.shape[0], 1), bos_id, dtype=np.int64)     # (B, 1)
            done = xp.zeros(src.shape[0], dtype=bool)
            for _ in range(max_len):
                nxt = self.decode(tgt, memory, src_mask)[:, -1].argmax(axis=-1)   # (B,)
                nxt = xp.where(done, eos_id, nxt)
                tgt = xp.concatenate([tgt, nxt[:, None]], axis=1)
                done |= nxt == eos_id
                if bool(done.all()):
                    break
        finally:
            self.train(was_training)
        return tgt[:, 1:]

    def children(self):
        kids = {"src_emb": self.src_emb}
        if self.tgt_emb is not None:
            kids["tgt_emb"] = self.tgt_emb
        kids.update({"src_pos": self.src_pos, "tgt_pos": self.tgt_pos,
                     "src_drop": self.src_drop, "tgt_drop": self.tgt_drop})
        kids.update({f"encoder.{i}": b for i, b in enumerate(self.encoder)})
        if self.enc_ln is not None:
            kids["enc_ln"] = self.enc_ln
        kids.update({f"decoder.{i}": b for i, b in enumerate(self.decoder)})
        if self.dec_ln is not None:
            kids["dec_ln"] = self.dec_ln
        kids["head"] = self.head
        return kids
