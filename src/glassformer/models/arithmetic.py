"""Model arithmetic: a preset DecoderLM's parameter count, its FLOPs per token, and whether one
micro-batch's activations fit in this machine's free memory (checked before anything is allocated)."""
from ..domains import check_memory


def lm_parameters(config):
    """Parameters of a preset DecoderLM: embeddings, positions, L blocks (qkv, proj, FFN, 2 LN), ln_f."""
    C, F, L = config.d_model, config.d_ff, config.n_layers
    b = 1 if config.bias else 0                             # bias=False: no Linear or LayerNorm biases
    block = (3 * C * C + b * 3 * C) + (C * C + b * C) + (C * F + b * F) + (F * C + b * C) + 2 * (1 + b) * C
    return config.vocab_size * C + config.max_len * C + L * block + (1 + b) * C


def flops_per_token(n_params, n_layers, d_model, context):
    """6 N (forward + backward of every weight) + 12 L d T (attention scores and weighted sums)."""
    return 6 * n_params + 12 * n_layers * d_model * context


def activation_bytes(config, batch, context):
    """Rough bytes of one micro-batch: what the forward keeps for the backward (per token and layer about
    12 d + 2 d_ff floats and 2 H T attention weights; the logits and their gradient, 2 V), doubled for
    the backward's gradients of the same shapes; 4 bytes a float."""
    C, F, L, H = config.d_model, config.d_ff, config.n_layers, config.n_heads
    per_token = L * (12 * C + 2 * F + 2 * H * context) + 2 * config.vocab_size + 4 * C
    return 2 * 4 * batch * context * per_token


def check_batch_memory(config, batch, context):
    """UserError before anything is allocated when one micro-batch would not fit in free memory."""
    check_memory(activation_bytes(config, batch, context), f"one micro-batch of --batch-size {batch} x "
                 f"--context {context} (activations, {config.n_layers} layers, d_model {config.d_model}, "
                 f"{config.n_heads} heads, vocabulary {config.vocab_size:,})",
                 "--batch-size (--grad-accum N keeps the batch per update) or --context")
