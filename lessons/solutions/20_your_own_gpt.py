# ==================================================================================================
# SPOILER: the solutions of lesson 20's exercises (lessons/20-your-own-gpt.md).
# Write your own in lessons/exercises/20_your_own_gpt.py first, and check them with
#     python -m glassformer.lessons check 20
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 20 exercises: your own GPT, assembled from your answers to lessons 1 to 9."""
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
    T = x.shape[1]
    a = L3.layer_norm_forward(x, p["ln1.gamma"], p["ln1.beta"])               # (B, T, C)
    qkv = a @ p["attn.qkv.W"] + p["attn.qkv.b"]                                # (B, T, 3C)
    q, k, v = (L2.split_heads(part, n_heads) for part in np.split(qkv, 3, axis=-1))   # (B, H, T, D)
    y, att = L2.attention_forward(q, k, v, L2.causal_mask(T, T))
    m = L2.merge_heads(y)                                                      # (B, T, C)
    x1 = x + m @ p["attn.proj.W"] + p["attn.proj.b"]                           # first residual
    f = L3.layer_norm_forward(x1, p["ln2.gamma"], p["ln2.beta"])
    u = f @ p["ffn.fc1.W"] + p["ffn.fc1.b"]                                    # (B, T, F)
    g = _gelu(u)
    out = x1 + g @ p["ffn.fc2.W"] + p["ffn.fc2.b"]                             # second residual
    cache = dict(p=p, n_heads=n_heads, x=x, a=a, q=q, k=k, v=v, att=att, m=m, x1=x1, f=f, u=u, g=g)
    return out, cache


def block_backward(dout, cache):
    """The backward of block_forward (lesson 20, section 3).

    dout: (B, T, C) the gradient of the loss with respect to the block's output; cache: what your
    block_forward returned. Read the forward from the bottom up with your lesson 7 functions: at each
    residual the gradient takes both paths and they add. Return (dx, grads): dx (B, T, C), and grads
    {short name: gradient} with one entry of the parameter's shape for every key of the block's p.
    """
    c, p = cache, cache["p"]
    dg, dW2, db2 = L7.linear_backward(c["g"], p["ffn.fc2.W"], dout)
    du = L7.gelu_backward(c["u"], dg)
    df, dW1, db1 = L7.linear_backward(c["f"], p["ffn.fc1.W"], du)
    dx1_ffn, dgamma2, dbeta2 = L7.layer_norm_backward(df, c["x1"], p["ln2.gamma"])
    dx1 = dout + dx1_ffn                                                       # residual: both paths
    dm, dWo, dbo = L7.linear_backward(c["m"], p["attn.proj.W"], dx1)
    dq, dk, dv = L7.attend_backward(L2.split_heads(dm, c["n_heads"]), c["q"], c["k"], c["v"], c["att"])
    dqkv = np.concatenate([L2.merge_heads(d) for d in (dq, dk, dv)], axis=-1)  # (B, T, 3C)
    da, dWqkv, dbqkv = L7.linear_backward(c["a"], p["attn.qkv.W"], dqkv)
    dx_attn, dgamma1, dbeta1 = L7.layer_norm_backward(da, c["x"], p["ln1.gamma"])
    grads = {"ln1.gamma": dgamma1, "ln1.beta": dbeta1, "attn.qkv.W": dWqkv, "attn.qkv.b": dbqkv,
             "attn.proj.W": dWo, "attn.proj.b": dbo, "ln2.gamma": dgamma2, "ln2.beta": dbeta2,
             "ffn.fc1.W": dW1, "ffn.fc1.b": db1, "ffn.fc2.W": dW2, "ffn.fc2.b": db2}
    return dx1 + dx_attn, grads


def gpt_forward(params, ids, n_heads):
    """The whole decoder: ids (B, T) -> next-token logits (B, T, V) (lesson 20, section 4).

    params: {name: array} with glassformer's DecoderLM names: tok_emb.W (V, C), pos.P (max_len, C),
    blocks.0.ln1.gamma ... blocks.{L-1}.ffn.fc2.b, ln_f.gamma, ln_f.beta. x = E[ids] + P[:T], then
    every block in order (_block_params(params, i) gives block i's p), then the final LayerNorm, and
    the tied head logits = h @ E^T. Return (logits, cache), the cache for gpt_backward.
    """
    T = ids.shape[1]
    E = params["tok_emb.W"]
    x = L1.embedding_forward(E, ids) + params["pos.P"][:T]                    # (B, T, C)
    blocks = []
    for i in range(_n_layers(params)):
        x, cache = block_forward(x, _block_params(params, i), n_heads)
        blocks.append(cache)
    h = L3.layer_norm_forward(x, params["ln_f.gamma"], params["ln_f.beta"])   # (B, T, C)
    return h @ E.T, dict(params=params, ids=ids, blocks=blocks, x=x, h=h)


def gpt_backward(dlogits, cache):
    """The backward of gpt_forward (lesson 20, section 4).

    dlogits: (B, T, V); cache: what your gpt_forward returned. Return {name: gradient} for every
    name of params, each of its parameter's shape. The token table E is used twice, by the lookup
    and by the tied head, so its gradient is the sum of both parts; pos.P gets gradient only in its
    first T rows.
    """
    params, ids = cache["params"], cache["ids"]
    E = params["tok_emb.W"]
    dh, dE_head = L5.tied_head_backward(dlogits, cache["h"], E)
    dx, dgamma, dbeta = L7.layer_norm_backward(dh, cache["x"], params["ln_f.gamma"])
    grads = {"ln_f.gamma": dgamma, "ln_f.beta": dbeta}
    for i in reversed(range(len(cache["blocks"]))):
        dx, block_grads = block_backward(dx, cache["blocks"][i])
        grads.update({f"blocks.{i}.{name}": g for name, g in block_grads.items()})
    dP = np.zeros_like(params["pos.P"])
    dP[:ids.shape[1]] = L1.learned_positions_backward(dx)
    grads["pos.P"] = dP
    grads["tok_emb.W"] = dE_head + L1.embedding_backward(ids, dx, E.shape[0])
    return grads


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
    s, step = settings, state.get("step", 0)
    logits, cache = gpt_forward(params, ids, s["n_heads"])
    B, T, V = logits.shape
    loss = L6.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    dlogits = L6.cross_entropy_grad(logits.reshape(-1, V), targets.reshape(-1)).reshape(B, T, V)
    grads = gpt_backward(dlogits, cache)
    names = list(params)
    clipped, _ = L9.clip_grad_norm([grads[name] for name in names], s["grad_clip"])
    lr = L9.warmup_cosine(step, s["lr"], s["warmup_steps"], s["steps"], s["min_lr"])
    m = state.setdefault("m", {name: np.zeros_like(p) for name, p in params.items()})
    v = state.setdefault("v", {name: np.zeros_like(p) for name, p in params.items()})
    for name, g in zip(names, clipped):
        decays = params[name].ndim == 2 and name not in ("tok_emb.W", "pos.P")
        params[name], m[name], v[name] = L9.adamw_step(
            params[name], g, m[name], v[name], step + 1, lr, s["betas"], s["eps"],
            s["weight_decay"] if decays else 0.0)
    state["step"] = step + 1
    return float(loss)


def train(params, batches, settings):
    """The training loop (lesson 20, section 6): settings["steps"] calls of your train_step.

    batches(): a function that returns the next (ids, targets) batch, each (B, T). Start from an
    empty state dict, and return the list of the losses train_step returned, one per step.
    """
    state = {}
    return [train_step(params, state, *batches(), settings) for _ in range(settings["steps"])]
