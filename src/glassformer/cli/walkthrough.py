"""The walk-through of train_step_by_step.py: one real example, stage by stage, with its real numbers.

The model runs forward once, with every sub-layer's forward wrapped so that its input and output are
recorded (Pass); each stage is printed from those records and the layers' own caches, and the loss,
backward and update stages reuse that same pass. So a post-LN and a pre-LN block both show what their
own forward did, in the order it did it.
"""
import contextlib
import math
import sys
from dataclasses import dataclass

import numpy as np

from .. import visualization as viz
from ..backend import to_numpy
from ..layers.activations import softmax


# ---------------------------------------------------------------- recording one forward pass

@dataclass
class Call:
    """One sub-layer forward seen during the pass: its dotted name, first argument and output."""
    name: str
    x: object
    out: object = None


def named_layers(layer, prefix=""):
    """(dotted name, layer) for every sub-layer under `layer`, depth first, in children() order."""
    for name, child in layer.children().items():
        yield prefix + name, child
        yield from named_layers(child, prefix + name + ".")


def _recorded(name, forward, calls):
    """forward, appending a Call (in the order the calls start) with what it was given and returned."""
    def recorded(*args, **kwargs):
        call = Call(name, args[0] if args else None)
        calls.append(call)
        call.out = forward(*args, **kwargs)
        return call.out
    return recorded


@contextlib.contextmanager
def recording(model):
    """with recording(model) as calls: every sub-layer's forward appends a Call; unwrapped afterwards."""
    calls, wrapped = [], []
    try:
        for name, layer in named_layers(model):
            if any(layer is w for w, _ in wrapped):         # a layer reachable twice: record it once
                continue
            own = layer.__dict__.get("forward")             # an instance attribute someone else set
            layer.forward = _recorded(name, layer.forward, calls)
            wrapped.append((layer, own))
        yield calls
    finally:
        for layer, own in wrapped:
            if own is None:
                del layer.forward                           # back to the class's method
            else:
                layer.forward = own


class Pass:
    """One model.forward(ids) with every sub-layer's input and output, looked up by dotted name."""

    def __init__(self, model, ids):
        with recording(model) as calls:
            self.logits = model.forward(ids)                # (1, n_classes) or (1, T, V)
        self.calls, self.by_name = calls, {}
        for call in calls:
            self.by_name.setdefault(call.name, call)        # the first call of each layer

    def __getitem__(self, name):
        return self.by_name[name]

    def __contains__(self, name):
        return name in self.by_name

    def order(self, prefix):
        """Names of the direct sub-layers under `prefix`, in the order they ran."""
        names = [c.name[len(prefix):] for c in self.calls if c.name.startswith(prefix)]
        return [n for n in names if "." not in n]

    def residual(self, block, after, own_norm):
        """(r, x, normed): the residual sum after a sub-layer and the stream leaving it, by call order."""
        order = self.order(block + ".")
        norms = [n for n in order[order.index(after) + 1:] if n in ("ln1", "ln2")]
        if not norms:                                       # pre-LN, last sub-layer: r is the output
            out = self[block].out
            return out, out, False
        norm = self[f"{block}.{norms[0]}"]                  # the first norm after `after` reads r
        if norms[0] == own_norm:                            # post-LN: x = LN(r)
            return norm.x, norm.out, True
        return norm.x, norm.x, False                        # pre-LN: the next sub-layer's norm; x = r

    def block(self, i):
        """What the four stages of block i show, read from the pass in the order the block ran."""
        name = f"blocks.{i}"
        order = self.order(name + ".")
        r1, x1, normed1 = self.residual(name, "drop1", "ln1")
        r2, x2, normed2 = self.residual(name, "drop2", "ln2")
        return {"pre": order.index("ln1") < order.index("attn"),   # pre-LN: ln1 feeds attention
                "attn": self[name + ".attn"].out, "r1": r1, "x1": x1, "normed1": normed1,
                "ffn_in": self[name + ".ffn.fc1"].x, "fc1": self[name + ".ffn.fc1"].out,
                "hidden": self[name + ".ffn.fc2"].x, "fc2": self[name + ".ffn.fc2"].out,
                "r2": r2, "x2": x2, "normed2": normed2}


# ---------------------------------------------------------------- the walk

def vec(v, n=6):
    """The first n values of a vector, signed, 3 decimals."""
    v = to_numpy(v).ravel()
    more = " ..." if v.size > n else ""
    return "[" + " ".join(f"{x:+.3f}" for x in v[:n]) + more + "]"


def count_stages(model):
    """How many stages walk() prints for this model."""
    return 3 + 4 * len(model.blocks) + 5


def walk(model, ids, targets, vocab, loss_fn, optimizer, ask=input, out=sys.stdout):
    """Print every stage of one forward, loss, backward and update, pausing; returns the stage names.

    ids (1, T); targets (1,) for a classifier, (1, T) for an LM. ask() returning "q" (or raising
    EOFError) skips to training. The model and optimizer are restored after, so the run is unchanged.
    """
    chars = viz.shade_chars(out)
    stages = _stages(model, ids, targets, vocab, loss_fn, optimizer, chars)
    total, shown = count_stages(model), []
    try:
        for k, (name, text) in enumerate(stages, 1):
            print(f"\n=== stage {k}/{total}: {name} ===", file=out)
            print(text, file=out)
            shown.append(name)
            if _wants_to_quit(ask, k == total):
                print("skipping the rest of the walk-through: on to training.", file=out)
                break
    finally:
        stages.close()                                      # runs the restore in _stages
    return shown


def _wants_to_quit(ask, last):
    prompt = "[Enter] start training" if last else "[Enter] next stage, q + Enter: skip to training"
    try:
        return ask(prompt + " > ").strip().lower() in ("q", "quit")
    except EOFError:
        return True


def _snapshot(model, optimizer):
    state = optimizer.state_dict()
    arrays = {k: a.copy() for k, a in state["arrays"].items()}
    return ({k: p.copy() for k, p in model.state_dict().items()},
            {"t": state["t"], "lr": state["lr"], "arrays": arrays}, model.training)


def _restore(model, optimizer, snapshot):
    params, opt_state, was_training = snapshot
    model.load_state_dict(params)
    optimizer.load_state_dict(opt_state)
    model.zero_grad()
    model.train(was_training)


def _stages(model, ids, targets, vocab, loss_fn, optimizer, chars):
    """Generator of (stage name, text), all read from one recorded forward pass of the model."""
    lm = model.config.kind == "decoder_lm"
    tokens = [vocab[i] for i in to_numpy(ids[0])]
    snapshot = _snapshot(model, optimizer)
    model.eval()                                            # dropout off: one deterministic pass
    try:
        run = Pass(model, ids)                              # the one forward; caches for backward
        yield "tokens", _tokens_text(tokens, ids, targets, vocab, lm)
        yield "embeddings", _embedding_text(model, tokens, run["tok_emb"].out)
        yield "positions", _positions_text(model, tokens, run["pos"].out)
        for i, block in enumerate(model.blocks):
            v = run.block(i)
            yield f"block {i} attention", _attention_text(block, v["attn"], tokens, chars, v["pre"])
            yield f"block {i} add & norm", _norm_text(v["r1"], v["x1"], tokens, not v["normed1"],
                                                      "attention", "ln1")
            yield f"block {i} feed-forward", _ffn_text(block, v, tokens)
            yield (f"block {i} add & norm (after the FFN)",
                   _norm_text(v["r2"], v["x2"], tokens, not v["normed2"], "FFN", "ln2"))
        if lm:
            yield "LM head", _lm_head_text(model, run.logits, tokens, vocab)
        else:
            yield "pooling + classifier head", _pool_head_text(model, run, tokens)
        yield "softmax", _softmax_text(run.logits, targets, tokens, vocab, lm)
        yield "loss", _loss_text(loss_fn, run.logits, targets, lm)
        yield "backward", _backward_text(model, loss_fn, optimizer, chars)
        yield "optimizer update", _update_text(model, optimizer)
    finally:
        _restore(model, optimizer, snapshot)


# ---------------------------------------------------------------- one text per stage

def _tokens_text(tokens, ids, targets, vocab, lm):
    rows = [f"  {t:>8}  id {i:>2}" for t, i in zip(tokens, to_numpy(ids[0]))]
    head = [f"text: {' '.join(tokens)}",
            f"ids: {to_numpy(ids[0]).tolist()}  shape {tuple(ids.shape)} = (B, T)"]
    if lm:
        nxt = [vocab[i] for i in to_numpy(targets[0])]
        head.append("targets (the next word at each position): " + " ".join(nxt))
    else:
        head.append(f"target class (the answer): {int(to_numpy(targets)[0])}")
    return "\n".join(head + ["token -> id (a row of the vocabulary of %d tokens):" % len(vocab)] + rows)


def _embedding_text(model, tokens, x):
    W = model.tok_emb.W
    lines = [f"tok_emb.W has shape {tuple(W.shape)} = (V, C); each id picks one row.",
             f"x = tok_emb.W[ids] has shape {tuple(x.shape)} = (B, T, C). First values per token:"]
    lines += [f"  {t:>8} {vec(x[0, j])}  |x| = {float(np.linalg.norm(to_numpy(x[0, j]))):.3f}"
              for j, t in enumerate(tokens)]
    return "\n".join(lines)


def _positions_text(model, tokens, x):
    kind = model.config.positional
    T = len(tokens)
    table = model.pos.table[:T] if kind == "sinusoidal" else to_numpy(model.pos.P[:T])
    what = ("PE[t, 2i] = sin(t / 10000^(2i/C)), PE[t, 2i+1] = cos(...): fixed, not learned"
            if kind == "sinusoidal" else "P[t]: a learned vector per position")
    lines = [f"positions ({kind}): {what}.", "x = x + PE[:T]; same shape. PE rows and the sums:"]
    for j, t in enumerate(tokens):
        lines.append(f"  t={j} {t:>8} PE {vec(table[j], 4)}  x+PE {vec(x[0, j], 4)}")
    return "\n".join(lines)


def _attention_text(block, a, tokens, chars, pre):
    attn = block.attn
    H, D = attn.q.shape[1], attn.q.shape[3]
    w = to_numpy(attn.last_attention_weights[0])            # (H, T, T)
    lines = [("pre-LN: ln1 normalises x first; " if pre else "") +
             f"q, k, v = projections of x, each {tuple(attn.q.shape)} = (B, H, T, D) with D = {D}.",
             f"scores = q k^T / sqrt({D}); weights = softmax over keys (each row sums to 1)"
             + ("; causal: a position sees only itself and earlier ones." if attn.causal else ".")]
    shades, masked = chars
    for h in range(H):
        lines.append(f"\nhead {h}: row = query token, column = key token it attends to "
                     "(darkest = this head's largest weight)")
        lines.append(viz.ascii_heatmap(w[h], tokens, tokens, shades=shades, masked=masked))
    if attn.causal:
        lines.append(f"the '{masked}' triangle above the diagonal is the causal mask: weight exactly 0.")
    lines.append(f"\noutput = concat(heads) @ proj.W: shape {tuple(a.shape)}; token 0: {vec(a[0, 0])}")
    return "\n".join(lines)


def _norm_text(r, x, tokens, pre, what, ln):
    r, x = to_numpy(r[0]), to_numpy(x[0])
    if pre:
        lines = [f"residual: x = x + {what}(x) (pre-LN: no norm here; the next sub-layer normalises "
                 "its own input). Per token mean / std:"]
        lines += [f"  {t:>8} mean {r[j].mean():+.3f} std {r[j].std():.3f}" for j, t in enumerate(tokens)]
        return "\n".join(lines)
    lines = [f"residual: r = x + {what}(x), then x = {ln}(r) = (r - mean) / std * gamma + beta.",
             "per token:    before the norm (mean, std)   after (mean, std)"]
    lines += [f"  {t:>8}    {r[j].mean():+.3f} {r[j].std():6.3f}          "
              f"{x[j].mean():+.3f} {x[j].std():6.3f}" for j, t in enumerate(tokens)]
    lines.append(f"token 0 after the norm: {vec(x[0])}")
    return "\n".join(lines)


def _ffn_text(block, v, tokens):
    f1, g, f = v["fc1"], v["hidden"], v["fc2"]
    active = float((to_numpy(g) > 0).mean())
    act = type(block.ffn.act).__name__
    return "\n".join([
        f"fc1: {tuple(v['ffn_in'].shape)} -> {tuple(f1.shape)}, the same weights at every position",
        f"{act}: {active:.0%} of the {f1.shape[-1]} hidden values per token are > 0",
        f"fc2: back to {tuple(f.shape)}",
        f"token 0: hidden {vec(g[0, 0])}", f"token 0: output {vec(f[0, 0])}"])


def _pool_head_text(model, run, tokens):
    first = model.config.pooling == "first"
    pooled, logits = run["head"].x, run.logits              # (1, C) -> (1, n_classes)
    how = (f"pooling=first: the vector of token 0 ('{tokens[0]}') stands for the whole sequence"
           if first else "pooling=mean: the average of the token vectors")
    return "\n".join([
        how, f"pooled: shape {tuple(pooled.shape)} = (B, C) {vec(pooled[0])}",
        f"head: pooled @ W {(pooled.shape[-1], logits.shape[-1])} + b -> logits {tuple(logits.shape)}",
        "logits: " + " ".join(f"{c}:{v:+.2f}" for c, v in enumerate(to_numpy(logits[0])))])


def _lm_head_text(model, logits, tokens, vocab):
    tied = model.config.tie_weights
    lines = [f"LM head: logits = h @ {'tok_emb.W^T (tied to the embedding)' if tied else 'head.W'} "
             f"-> {tuple(logits.shape)} = (B, T, V): a score for every word at every position.",
             "highest-scoring next word per position:"]
    z = to_numpy(logits[0])                                 # (T, V)
    lines += [f"  after {' '.join(tokens[:j + 1]):<40} {vocab[int(z[j].argmax())]:<8} "
              f"score {z[j].max():+.2f}" for j in range(len(tokens))]
    return "\n".join(lines)


def _softmax_text(logits, targets, tokens, vocab, lm):
    probs = to_numpy(softmax(logits))
    lines = [f"logits z = model.forward(ids), shape {tuple(logits.shape)}: the one pass every stage "
             "above was read from.",
             "softmax: p = exp(z - max z) / sum exp(z - max z)."]
    if lm:
        y = to_numpy(targets[0])
        for j in range(len(tokens)):
            top = np.argsort(-probs[0, j])[:3]
            best = ", ".join(f"{vocab[k]} {probs[0, j, k]:.2f}" for k in top)
            lines.append(f"  after {' '.join(tokens[:j + 1]):<38} {best:<34} "
                         f"target {vocab[y[j]]} p={probs[0, j, y[j]]:.2f}")
        return "\n".join(lines)
    y, pred = int(to_numpy(targets)[0]), int(probs[0].argmax())
    for c, p in enumerate(probs[0]):
        mark = ("  <- target" if c == y else "") + ("  <- predicted" if c == pred else "")
        lines.append(f"  class {c}: {p:.3f} {viz.ascii_bar(p, 1.0, 30, shades='#')}{mark}")
    return "\n".join(lines)


def _loss_text(loss_fn, logits, targets, lm):
    loss = float(loss_fn.forward(logits, targets))
    p = to_numpy(softmax(logits)).reshape(-1, logits.shape[-1])         # (N, V)
    y = to_numpy(targets).reshape(-1)
    by_hand = -np.log(p[np.arange(len(y)), y])                          # -log p[target] per token
    V = logits.shape[-1]
    lines = ["cross-entropy: loss = -log p[target]" + (" averaged over the positions" if lm else ""),
             f"  by hand: {' '.join(f'{v:.3f}' for v in by_hand)}"
             + (f" -> mean {by_hand.mean():.4f}" if lm else ""),
             f"  {type(loss_fn).__name__}: {loss:.4f}",
             f"  (a uniform guess over {V} classes would give log {V} = {math.log(V):.3f})"]
    return "\n".join(lines)


def _backward_text(model, loss_fn, optimizer, chars):
    optimizer.zero_grad()
    dlogits = loss_fn.backward()
    model.backward(dlogits)                                 # through the caches of the one pass
    norms = {}
    for name, (_, g) in model.named_parameters():
        layer = name.rsplit(".", 1)[0]
        norms[layer] = norms.get(layer, 0.0) + float((to_numpy(g).astype(np.float64) ** 2).sum())
    top = max(math.sqrt(v) for v in norms.values()) or 1.0
    d = to_numpy(dlogits).reshape(-1, dlogits.shape[-1])
    lines = ["dloss/dlogits = (softmax - one_hot(target)) / n_counted: "
             f"shape {tuple(dlogits.shape)}; first row {vec(d[0], 10)}",
             "model.backward(dlogits) runs every layer's backward in reverse; gradient norm per layer "
             "(from named_parameters), in the order the gradient reaches them:"]
    for layer in reversed(list(norms)):
        n = math.sqrt(norms[layer])
        lines.append(f"  {layer:<22} {n:10.4f} {viz.ascii_bar(n, top, 24, chars[0])}")
    if model.config.kind == "decoder_lm" and model.config.tie_weights:
        lines.append("(tok_emb's gradient includes the tied LM head's contribution)")
    return "\n".join(lines)


def _update_text(model, optimizer):
    names = [n for n, _ in model.named_parameters()]
    params = model.get_parameters()
    k = max(range(len(params)), key=lambda j: float(np.abs(to_numpy(params[j][1])).max()))
    p, g = params[k]
    idx = np.unravel_index(int(np.abs(to_numpy(g)).argmax()), p.shape)
    before, grad = float(to_numpy(p[idx])), float(to_numpy(g[idx]))
    all_before = [to_numpy(q).copy() for q, _ in params]
    optimizer.step()
    after = float(to_numpy(p[idx]))
    change = math.sqrt(sum(float(((to_numpy(q) - b) ** 2).sum())
                           for (q, _), b in zip(params, all_before)))
    size = math.sqrt(sum(float((b.astype(np.float64) ** 2).sum()) for b in all_before))
    lines = [f"{type(optimizer).__name__} step {optimizer.t}, lr {optimizer.lr:g}. The entry with the "
             f"largest gradient: {names[k]}{list(map(int, idx))}",
             f"  before {before:+.6f}   gradient {grad:+.6f}   after {after:+.6f}   "
             f"change {after - before:+.6f}"]
    if hasattr(optimizer, "m"):
        t, b1, b2 = optimizer.t, optimizer.beta1, optimizer.beta2
        step = optimizer.lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m, v = float(to_numpy(optimizer.m[k][idx])), float(to_numpy(optimizer.v[k][idx]))
        update = -step * m / (math.sqrt(v) + optimizer.eps)
        lines += [f"  Adam: m = {m:+.3e}, v = {v:.3e}; step size lr*sqrt(1-b2^t)/(1-b1^t) = {step:.3e}",
                  f"  update = -step * m / (sqrt(v) + eps) = {update:+.6f}"
                  " (on the first step about -lr * sign(gradient))"]
    lines += [f"all parameters: |change| = {change:.4f}, |params| = {size:.2f}, "
              f"ratio {change / size:.2e}",
              "(this update is undone before training starts: the walk does not change the run)"]
    return "\n".join(lines)
