"""ModelConfig: every hyper-parameter of a model, saved inside every checkpoint."""
from dataclasses import dataclass, asdict, fields

from ..errors import UserError

MODEL_KINDS = ("encoder_classifier", "decoder_lm")

# Decoder-LM sizes (d_ff = 4 d_model); "qa" is a deeper medium with a 1024-token context.
PRESETS = {
    "tiny":   dict(d_model=128, n_heads=4, n_layers=4, max_len=128),     # CPU demos
    "small":  dict(d_model=256, n_heads=8, n_layers=6, max_len=256),
    "medium": dict(d_model=512, n_heads=8, n_layers=8, max_len=512),
    "large":  dict(d_model=768, n_heads=12, n_layers=12, max_len=1024),  # GPT-2 small's shape
    "qa":     dict(d_model=512, n_heads=8, n_layers=10, max_len=1024),
}
# What every preset LM shares: GPT-2's choices (pre-LN, GELU, learned positions, tied head, std 0.02).
LM_DEFAULTS = dict(kind="decoder_lm", norm_first=True, activation="gelu", positional="learned",
                   tie_weights=True, init="normal")


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    kind: str = "encoder_classifier"   # or "decoder_lm"
    d_model: int = 64                  # C
    n_heads: int = 4                   # H; d_head = d_model // n_heads
    n_layers: int = 2
    d_ff: int = 256
    max_len: int = 64                  # longest sequence the positional table covers
    dropout: float = 0.0
    norm_first: bool = False           # False: post-LN (2017 paper); True: pre-LN (GPT-2)
    activation: str = "relu"           # "relu" or "gelu"
    positional: str = "sinusoidal"     # "sinusoidal" or "learned"
    fused_qkv: bool = True
    n_classes: int = 10                # encoder_classifier: size of the output layer
    pooling: str = "first"             # encoder_classifier: "first" or "mean"
    tie_weights: bool = True           # decoder_lm: the LM head reuses the token embedding
    init: str = "xavier"               # "xavier", or "normal" (std 0.02, GPT-2 style)
    dtype: str = "float32"
    norm_eps: float = 1e-5             # LayerNorm's epsilon (GPT-2's layer_norm_epsilon)
    bias: bool = True                  # biases in the blocks' Linears and every LayerNorm (nanoGPT: option False)
    scale_residual_init: bool = False  # init="normal": residual projections std 0.02 / sqrt(2 n_layers) (GPT-2)

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise UserError(f"unknown model kind {self.kind!r}: use one of {MODEL_KINDS}")
        if self.d_model % self.n_heads:
            raise UserError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "max_len"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)} must be a positive integer")
        if not 0.0 < self.norm_eps < 1.0:
            raise UserError(f"norm_eps={self.norm_eps} must be in (0, 1)")
        for name in ("bias", "scale_residual_init"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{name}={getattr(self, name)!r} must be true or false")
        if self.scale_residual_init and self.init != "normal":
            raise UserError(f"scale_residual_init=True scales GPT-2's normal init: it needs init='normal', "
                            f"not {self.init!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout={self.dropout} must be in [0, 1)")
        choices = {"activation": ("relu", "gelu"), "positional": ("sinusoidal", "learned"),
                   "pooling": ("first", "mean"), "init": ("xavier", "normal"),
                   "dtype": ("float32", "float64", "float16")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"{name}={getattr(self, name)!r}: use one of {allowed}")

    @property
    def d_head(self):
        return self.d_model // self.n_heads

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Build from a checkpoint's JSON, saying which keys are unknown."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown model config keys {unknown}: was the checkpoint written by a "
                            "newer glassformer?")
        return cls(**d)


def lm_config(preset, vocab_size, **overrides):
    """ModelConfig of a named preset (tiny, small, medium, large, qa) with any field overridden.

    d_ff follows 4 * d_model unless it is given; e.g. lm_config("tiny", 65, max_len=64, dropout=0.1).
    """
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}: use one of {sorted(PRESETS)}")
    known = {f.name for f in fields(ModelConfig)} - {"vocab_size"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(f"unknown model setting(s) {unknown}: use some of {sorted(known)}")
    settings = dict(LM_DEFAULTS, **PRESETS[preset])
    settings.update(overrides)
    settings.setdefault("d_ff", 4 * settings["d_model"])
    return ModelConfig(vocab_size=vocab_size, **settings)
