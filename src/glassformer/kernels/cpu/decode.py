"""One step of cached decoding of a GPT-2-shaped model in compiled calls (the `fast` extra).

Laid over models.decoder.decode_step. A token of GPT-2 124M streams its 494 MB of weights through the
caches: 48 matrix-vector products and the tied head. On the 2-core VM where this was first
measured, each NumPy call between two products started with its code and data evicted: after a 9 MB
product, `a * 2` on 3,072 numbers took 14-17 us against 0.9 hot, and a token took 38 ms through the
layers, of which 33.4 were the products alone. Here each block is one numba call (jit.decode_block:
LayerNorm, q k v, the cached attention, GELU and the products) and the head another
(jit.tied_head), on one thread. There: 27.4 tokens/s against transformers' 21.7 (bench/gpt2.py).
On a newer 2-core AMD EPYC, where that cold start is 1.7 us against 0.8: 68 tokens/s against the
reference's 62, the same greedy ids, and 1.72-1.84x transformers' tokens/s (bench/gpt2.py, 3 runs).

It runs for one new token of one sequence in eval mode on one CPU thread (at two, OpenBLAS's
threads stream the weights faster: 25 ms a token on that VM, 13 on the EPYC), with numba on
(compiled.loops), float32 weights without the fp16 policy, a pre-LN DecoderLM with fused q k v,
biases, GELU, learned positions and a tied head, and caches the reference has started (their
buffers preallocated). Anything else, such as the prompt's first step, goes to the reference. The
caches are written as cache_append writes them, so the two can take turns.
"""
import numpy as np

from ... import backend, precision
from .compiled import MIN_SIZE, gelu_constants, loops

BLOCK_ARRAYS = ("ln1.gamma", "ln1.beta", "attn.qkv.W", "attn.qkv.b", "attn.proj.W", "attn.proj.b",
                "ln2.gamma", "ln2.beta", "ffn.fc1.W", "ffn.fc1.b", "ffn.fc2.W", "ffn.fc2.b")


@backend.accelerates("decode_step", device="cpu")
def decode_step_compiled(model, ids, caches, start):
    """decode_step(): jit.decode_block per block and jit.tied_head where it applies (see above), else
    the reference."""
    jit = gpt2_step(model, ids, caches, start)
    blocks = None if jit is None else block_arrays(model)
    if blocks is None:
        return backend.reference("decode_step")(model, ids, caches, start)
    E, P, ln_f = model.tok_emb.W, model.pos.P, model.ln_f  # (V, C), (max_len, C)
    eps, (c, c3) = np.float32(ln_f.eps), gelu_constants(np.float32)
    x = E[int(ids[0, 0])] + P[start]                       # (C,)
    for arrays, cache in zip(blocks, caches):
        jit.decode_block(x, start, eps, c, c3, *arrays, cache["k_buf"][0], cache["v_buf"][0])
        cache["k"], cache["v"] = cache["k_buf"][:, :, :start + 1], cache["v_buf"][:, :, :start + 1]
    logits = np.empty(E.shape[0], np.float32)             # (V,)
    jit.tied_head(x, ln_f.gamma, ln_f.beta, eps, E, logits)
    return logits.reshape(1, 1, -1)


def gpt2_step(model, ids, caches, start):
    """jit.py's module when this step is one jit.decode_block covers (the docstring above), else None.
    The model is told by its class's name (kernels import no models), so a subclass never runs here."""
    config = getattr(model, "config", None)
    if (type(model).__name__ != "DecoderLM" or model.training or caches is None
            or backend.cpu_threads() != 1 or getattr(ids, "shape", None) != (1, 1)):
        return None
    if not (config.norm_first and config.fused_qkv and config.bias and config.tie_weights
            and config.activation == "gelu" and config.positional == "learned"):
        return None
    E = model.tok_emb.W
    if E.dtype != np.float32 or precision.compute_dtype(E.dtype) != np.float32:
        return None
    if not (0 <= int(ids[0, 0]) < E.shape[0] and 0 <= start < model.pos.P.shape[0]):
        return None                                        # the reference says what is wrong
    if not all(started(cache, start) for cache in caches) or len(caches) != len(model.blocks):
        return None
    if any(b.ln1.eps != model.ln_f.eps or b.ln2.eps != model.ln_f.eps for b in model.blocks):
        return None                                        # the blocks take one epsilon
    return loops(E, size=MIN_SIZE)                         # None without numba or with the loops off


def started(cache, start):
    """True when the cache holds exactly `start` positions of one sequence and has room for one more."""
    buf = cache.get("k_buf")
    return (buf is not None and "k" in cache and cache["k"].shape[2] == start and buf.shape[0] == 1
            and buf.shape[2] > start and buf.dtype == np.float32)


def block_arrays(model):
    """Each block's BLOCK_ARRAYS, or None when one of those or the embeddings' and ln_f's is not what
    the jit.py step is compiled for (C-contiguous float32 NumPy)."""
    blocks = [[attribute(block, name) for name in BLOCK_ARRAYS] for block in model.blocks]
    shared = (model.tok_emb.W, model.pos.P, model.ln_f.gamma, model.ln_f.beta)
    return blocks if all(contiguous32(a) for a in (*shared, *sum(blocks, []))) else None


def attribute(obj, dotted):
    """obj.a.b.c for "a.b.c"."""
    for name in dotted.split("."):
        obj = getattr(obj, name)
    return obj


def contiguous32(a):
    """True for a C-contiguous float32 NumPy array."""
    return type(a) is np.ndarray and a.dtype == np.float32 and a.flags.c_contiguous
