"""Lesson 20 exercises: your own GPT, assembled from your answers to lessons 1 to 9.

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 20
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.

This file loads your own exercise files for lessons 1, 2, 3, 5, 6, 7 and 9 from the folder it is
in (L1 ... L9 below) and builds the model from their functions: write and check those first.
"""
import importlib.util
from pathlib import Path

import numpy as np


def _yours(stem):
    """Your exercise file STEM.py from the folder this file is in, loaded as a module of its own."""
    path = Path(__file__).with_name(f"{stem}.py")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: lesson 20 uses your answers to lessons 1 to 9, "
                                "kept beside this file")
    spec = importlib.util.spec_from_file_location(f"yours_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


L1 = _yours("01_embeddings")              # embedding_forward, embedding_backward, learned_positions_backward
L2 = _yours("02_attention")               # attention_forward, causal_mask, split_heads, merge_heads
L3 = _yours("03_residual_norm_ffn")       # layer_norm_forward
L5 = _yours("05_output_head")             # tied_head_backward
L6 = _yours("06_softmax_cross_entropy")   # cross_entropy, cross_entropy_grad
L7 = _yours("07_backprop_by_hand")        # linear_backward, gelu_backward, layer_norm_backward, attend_backward
L9 = _yours("09_training_loop")           # adamw_step, clip_grad_norm, warmup_cosine


def _gelu(x):
    """GELU's tanh form, the forward that lesson 7's gelu_backward differentiates."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def _block_params(params, i):
    """Block i's parameters under their short names: {"ln1.gamma": ..., "attn.qkv.W": ...} (no copies)."""
    prefix = f"blocks.{i}."
    return {name[len(prefix):]: p for name, p in params.items() if name.startswith(prefix)}


def _n_layers(params):
    """How many blocks the parameters hold."""
    return sum(name.endswith(".ln1.gamma") for name in params)


def block_forward(x, p, n_heads):
    """One pre-LN decoder block, GPT-2's layout (lesson 20, section 2).

    x: (B, T, C); p: the block's parameters by short name (ln1.gamma, ln1.beta, attn.qkv.W (C, 3C),
    attn.qkv.b, attn.proj.W (C, C), attn.proj.b, ln2.gamma, ln2.beta, ffn.fc1.W (C, F), ffn.fc1.b,
    ffn.fc2.W (F, C), ffn.fc2.b). With your lesson 2, 3 and 7 functions:
        a = LayerNorm1(x); q, k, v = the three C-column thirds of a @ Wqkv + bqkv, each split into heads;
        y = causal attention(q, k, v); x1 = x + merge(y) @ Wproj + bproj;
        out = x1 + gelu(LayerNorm2(x1) @ W1 + b1) @ W2 + b2.
    Return (out, cache): out (B, T, C), and whatever block_backward will need.
    """
    raise NotImplementedError


def block_backward(dout, cache):
    """The backward of block_forward (lesson 20, section 3).

    dout: (B, T, C) the gradient of the loss with respect to the block's output; cache: what your
    block_forward returned. Read the forward from the bottom up with your lesson 7 functions: at each
    residual the gradient takes both paths and they add. Return (dx, grads): dx (B, T, C), and grads
    {short name: gradient} with one entry of the parameter's shape for every key of the block's p.
    """
    raise NotImplementedError


def gpt_forward(params, ids, n_heads):
    """The whole decoder: ids (B, T) -> next-token logits (B, T, V) (lesson 20, section 4).

    params: {name: array} with glassformer's DecoderLM names: tok_emb.W (V, C), pos.P (max_len, C),
    blocks.0.ln1.gamma ... blocks.{L-1}.ffn.fc2.b, ln_f.gamma, ln_f.beta. x = E[ids] + P[:T], then
    every block in order (_block_params(params, i) gives block i's p), then the final LayerNorm, and
    the tied head logits = h @ E^T. Return (logits, cache), the cache for gpt_backward.
    """
    raise NotImplementedError


def gpt_backward(dlogits, cache):
    """The backward of gpt_forward (lesson 20, section 4).

    dlogits: (B, T, V); cache: what your gpt_forward returned. Return {name: gradient} for every
    name of params, each of its parameter's shape. The token table E is used twice, by the lookup
    and by the tied head, so its gradient is the sum of both parts; pos.P gets gradient only in its
    first T rows.
    """
    raise NotImplementedError


def train_step(params, state, ids, targets, settings):
    """One AdamW update of every parameter, as glassformer's Trainer makes it (lesson 20, section 5).

    params: {name: array}, updated in place (params[name] = new_array is fine); state: a dict that
    is empty before the first step, for you to keep the step count and AdamW's moments in;
    ids, targets: (B, T) token ids; settings: a dict with n_heads, lr, min_lr, warmup_steps, steps,
    betas, eps, weight_decay, grad_clip. With your lesson 6 and 9 functions: the mean cross-entropy
    over every position and its gradient; the gradients clipped to a global norm of grad_clip; the
    learning rate warmup_cosine(step) with step counted from 0; then adamw_step on each parameter
    (its step number t counted from 1), with weight decay on the matrices (2-D arrays) only, and not
    on the two tables tok_emb.W and pos.P. Return the loss before the update, as a float.
    """
    raise NotImplementedError


def train(params, batches, settings):
    """The training loop (lesson 20, section 6): settings["steps"] calls of your train_step.

    batches(): a function that returns the next (ids, targets) batch, each (B, T). Start from an
    empty state dict, and return the list of the losses train_step returned, one per step.
    """
    raise NotImplementedError
