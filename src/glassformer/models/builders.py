"""Builders shared by the models (and research/): the positional layer and the block stack of a config."""
from ..layers.block import TransformerBlock
from ..layers.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding


def make_positional(config, rng):
    """Learned positions (GPT-2) or the fixed sinusoidal table, by config.positional."""
    if config.positional == "learned":
        return LearnedPositionalEmbedding(config.max_len, config.d_model, rng, dtype=config.dtype)
    return SinusoidalPositionalEncoding(config.max_len, config.d_model)


def make_blocks(config, rng, causal):
    """config.n_layers TransformerBlocks; GPT-2 init (init="normal") also draws output projections."""
    out_init = "normal" if config.init == "normal" else None
    blocks = [TransformerBlock(config.d_model, config.n_heads, config.d_ff, rng,
                               norm_first=config.norm_first, causal=causal, dropout=config.dropout,
                               activation=config.activation, fused_qkv=config.fused_qkv,
                               init=config.init, out_init=out_init, dtype=config.dtype,
                               bias=getattr(config, "bias", True))
              for _ in range(config.n_layers)]
    for block in blocks:                                    # configs without norm_eps: the default
        block.ln1.eps = block.ln2.eps = getattr(config, "norm_eps", block.ln1.eps)
    if getattr(config, "scale_residual_init", False):
        scale_residual_projections(blocks)
    return blocks


def scale_residual_projections(blocks):
    """GPT-2/nanoGPT: each residual branch's output projection std 0.02 -> 0.02 / sqrt(2 n_layers).

    Every block adds two branches to the residual stream, so its variance at init stays O(1) in depth."""
    scale = (2 * len(blocks)) ** -0.5
    for block in blocks:
        for linear in (block.attn.proj, block.ffn.fc2):
            linear.W[...] = linear.W * scale
