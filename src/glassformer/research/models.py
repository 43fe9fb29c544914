"""Toy transformers for interpretability: attention-only or full, 1 or 2 layers, by model_type.

Where the weights are (C = d_model, H = n_heads, D = d_head, V = vocab_size):
  model.tok_emb.W                  (V, C)       token embedding W_E
  model.pos.P                      (n_ctx, C)   learned positions W_pos (positional="learned" only)
  model.blocks[i].ln1, .ln2        LayerNorm / RMSNorm / NoNorm before attention / the MLP
  model.blocks[i].attn.qkv.W       (C, 3C)      columns [q | k | v], head h at h*D..(h+1)*D in each
  model.blocks[i].attn.proj.W      (C, C)       output projection, rows h*D..(h+1)*D for head h
  model.blocks[i].attn.head_weights()           {"W_Q", "W_K", "W_V": (H, C, D), "W_O": (H, D, C)}
  model.blocks[i].attn.last_attention_weights   (B, H, T, T) from the last forward
  model.blocks[i].mlp              FeedForward (fc1, fc2) or Bilinear (w1, w2, w_out); or None
  model.ln_f                       the final norm
  model.head                       Linear (C, V), or a TiedLMHead when tie_weights
  model.W_U                        (C, V)       unembedding: model.head.W (tok_emb.W.T when tied)
QK circuit of head h in block 0: W_E W_Q[h] W_K[h]^T W_E^T; OV circuit: W_E W_V[h] W_O[h] W_U.
"""
from dataclasses import asdict, dataclass

from ..errors import UserError
from ..layers.base import Layer
from ..layers.embedding import Embedding
from ..layers.heads import TiedLMHead
from ..layers.positional import LearnedPositionalEmbedding
from ..layers.linear import Linear
from ..layers.feedforward import FeedForward
from .attention import KernelAttention, QuadraticAttention
from .layers import Bilinear, make_norm

MODEL_TYPES = {"attention_only_1L": (1, False), "attention_only_2L": (2, False),
               "transformer_1L": (1, True), "transformer_2L": (2, True)}   # (n_layers, has MLP)


@dataclass(frozen=True)
class ToyConfig:
    vocab_size: int
    d_model: int = 64                  # C
    n_heads: int = 4                   # H; d_head = d_model // n_heads
    n_ctx: int = 32                    # longest sequence
    model_type: str = "attention_only_1L"
    attention: str = "softmax"         # or "quadratic": (q.k / D)^2, no softmax
    mlp: str = "gelu"                  # or "bilinear" (no biases: an exact bilinear form)
    norm: str = "layernorm"            # or "rmsnorm", "none"
    positional: str = "learned"        # or "rope" (rotary, inside attention)
    tie_weights: bool = False          # unembedding = token embedding transposed
    d_mlp: int = 0                     # MLP hidden width; 0 means 4 * d_model
    n_blocks: int = 0                  # 0: model_type's 1 or 2; else this many (multi-hop tasks)
    dtype: str = "float32"

    def __post_init__(self):
        choices = {"model_type": tuple(MODEL_TYPES), "attention": ("softmax", "quadratic"),
                   "mlp": ("gelu", "bilinear"), "norm": ("layernorm", "rmsnorm", "none"),
                   "positional": ("learned", "rope"), "dtype": ("float32", "float64", "float16")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"{name}={getattr(self, name)!r}: use one of {allowed}")
        for name in ("vocab_size", "d_model", "n_heads", "n_ctx"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)} must be a positive integer")
        if self.d_model % self.n_heads:
            raise UserError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.positional == "rope" and self.d_head % 2:
            raise UserError(f"positional='rope' needs an even d_head, got {self.d_head}")
        if self.n_blocks < 0:
            raise UserError(f"n_blocks={self.n_blocks} must be 0 (from model_type) or positive")

    @property
    def n_layers(self):
        return self.n_blocks or MODEL_TYPES[self.model_type][0]

    @property
    def has_mlp(self):
        return MODEL_TYPES[self.model_type][1]

    @property
    def d_head(self):
        return self.d_model // self.n_heads

    def to_dict(self):
        return asdict(self)


class ToyBlock(Layer):
    """Pre-norm residual block: x + attn(ln1(x)), then x + mlp(ln2(x)) when the model has an MLP."""

    def __init__(self, config, rng):
        C, dt = config.d_model, config.dtype
        attn_cls = QuadraticAttention if config.attention == "quadratic" else KernelAttention
        self.ln1 = make_norm(config.norm, C, dt)
        self.attn = attn_cls(C, config.n_heads, rng, causal=True, rope=config.positional == "rope",
                             max_len=config.n_ctx, init="normal", out_init="zeros", dtype=dt)
        self.ln2 = self.mlp = None
        if config.has_mlp:
            d_mlp = config.d_mlp or 4 * C
            self.ln2 = make_norm(config.norm, C, dt)
            self.mlp = Bilinear(C, d_mlp, rng, bias=False, dtype=dt) if config.mlp == "bilinear" \
                else FeedForward(C, d_mlp, rng, activation="gelu", init="normal", out_init="zeros",
                                 dtype=dt)

    def forward(self, x, cache=None):                       # (B, T, C) -> (B, T, C)
        x = x + self.attn.forward(self.ln1.forward(x), None, cache)
        if self.mlp is not None:
            x = x + self.mlp.forward(self.ln2.forward(x))
        return x

    def backward(self, dout):                               # residual: gradients add
        dx = dout
        if self.mlp is not None:
            dx = dx + self.ln2.backward(self.mlp.backward(dx))
        return dx + self.ln1.backward(self.attn.backward(dx))

    def children(self):
        kids = {"ln1": self.ln1, "attn": self.attn}
        if self.mlp is not None:
            kids.update({"ln2": self.ln2, "mlp": self.mlp})
        return kids


class ToyModel(Layer):
    """ids (B, T) -> next-token logits (B, T, V), causal; weight names: see the module docstring."""

    def __init__(self, config, rng):
        self.config = config
        C, V, dt = config.d_model, config.vocab_size, config.dtype
        self.tok_emb = Embedding(V, C, rng, std=0.02, dtype=dt)
        self.pos = LearnedPositionalEmbedding(config.n_ctx, C, rng, std=0.02, dtype=dt) \
            if config.positional == "learned" else None
        self.blocks = [ToyBlock(config, rng) for _ in range(config.n_layers)]
        self.ln_f = make_norm(config.norm, C, dt)
        self.head = TiedLMHead(self.tok_emb) if config.tie_weights else \
            Linear(C, V, rng, bias=False, init="normal", dtype=dt)

    @property
    def W_U(self):
        """The unembedding (C, V)."""
        return self.head.W

    def forward(self, ids, caches=None, start=0):           # ids: (B, T)
        """caches: one dict per block for incremental decoding; start: position of ids[:, 0]."""
        x = self.tok_emb.forward(ids)                       # (B, T, C)
        if self.pos is not None:
            x = self.pos.forward(x, start)
        elif start + ids.shape[1] > self.config.n_ctx:
            raise ValueError(f"sequence of {start + ids.shape[1]} tokens is longer than "
                             f"n_ctx={self.config.n_ctx}")
        for i, block in enumerate(self.blocks):
            x = block.forward(x, None if caches is None else caches[i])
        self.h = self.ln_f.forward(x)
        return self.head.forward(self.h)                    # (B, T, V)

    def backward(self, dlogits):                            # dlogits: (B, T, V)
        dx = self.ln_f.backward(self.head.backward(dlogits))   # tied: also adds into tok_emb.dW
        for block in reversed(self.blocks):
            dx = block.backward(dx)
        if self.pos is not None:
            dx = self.pos.backward(dx)
        self.tok_emb.backward(dx)
        return None                                         # ids have no gradient

    def attention_weights(self):
        """[(B, H, T, T)] per block, from the last forward."""
        return [b.attn.last_attention_weights for b in self.blocks]

    def children(self):
        kids = {"tok_emb": self.tok_emb}
        if self.pos is not None:
            kids["pos"] = self.pos
        kids.update({f"blocks.{i}": b for i, b in enumerate(self.blocks)})
        kids.update({"ln_f": self.ln_f, "head": self.head})   # a tied head has no parameters
        return kids


def build_toy_model(config, rng):
    """The toy model a ToyConfig describes: weights N(0, 0.02^2) from rng, output projections 0."""
    return ToyModel(config, rng)
