"""The text of each stage of the walk-through, read from one recorded pass, fitted to the terminal.

Every function takes the numbers the pass recorded and a Look (terminal width, shades, what a token
is called) and returns the stage's text; no line is longer than Look.width.
"""
import math
import textwrap
from dataclasses import dataclass

import numpy as np

from .. import visualization as viz
from ..backend import to_numpy
from ..layers.activations import softmax
from ..train.progress import terminal_width  # noqa: F401  (the one width; walkthrough, repl)


@dataclass
class Look:
    """How the walk prints: at most `width` columns, these shades, and the name of one token."""
    width: int = 80
    shades: str = viz.SHADES
    masked: str = viz.MASKED
    unit: str = "word"                                      # "character", "token" or "word"


def unit_of(vocab):
    """What one token of this vocabulary is: a character (char LM), a token (BPE) or a word."""
    kind = getattr(getattr(vocab, "tokenizer", None), "type", None)
    return {"char": "character", "word": "word", None: "word"}.get(kind, "token")


def fit(text, width):
    """text with every line longer than width wrapped (continuations indented four spaces)."""
    return "\n".join(line if len(line) <= width else
                     textwrap.fill(line, width, subsequent_indent="    ", break_on_hyphens=False)
                     for line in text.split("\n"))


def num(x):
    """x with a sign and 3 decimals; zero (-0.0 included) prints unsigned, ' 0.000'."""
    x = round(float(x), 3) + 0.0                            # + 0.0 turns -0.0 into 0.0
    return " 0.000" if x == 0 else f"{x:+.3f}"


def vec(v, n=6):
    """The first n values of a vector, signed, 3 decimals."""
    v = to_numpy(v).ravel()
    more = " ..." if v.size > n else ""
    return "[" + " ".join(num(x) for x in v[:n]) + more + "]"


def widest(make, width, most=6):
    """make(n) for the largest n <= most (at least 2) whose lines all fit in width."""
    for n in range(most, 2, -1):
        text = make(n)
        if max(len(line) for line in text.split("\n")) <= width:
            return text
    return make(2)


def cut(label, n=8):
    """A token label at most n characters long."""
    return label if len(label) <= n else label[:n - 1] + "~"


def after_rows(tokens, rights, width):
    """'  after <tokens so far> <right>' per position; the tokens so far cut from the left to fit."""
    contexts = [" ".join(tokens[:j + 1]) for j in range(len(tokens))]
    room = width - len("  after ") - 1 - max(len(r) for r in rights)
    cw = min(max(len(c) for c in contexts), room)
    tail = lambda c, n: c if len(c) <= n else "..." + c[-(n - 3):]
    if cw < 12:                                             # too narrow: two lines per position
        return [line for c, r in zip(contexts, rights)
                for line in (f"  after {tail(c, width - 8)}", f"      {r}")]
    return [f"  after {tail(c, cw):<{cw}} {r}" for c, r in zip(contexts, rights)]


# ---------------------------------------------------------------- one text per stage

def tokens_text(tokens, ids, targets, vocab, lm, look):
    ids0 = to_numpy(ids[0]).tolist()
    iw = len(str(max(ids0)))
    head = [f"text: {' '.join(tokens)}", f"ids: {ids0}  shape {tuple(ids.shape)} = (B, T)"]
    if lm:
        nxt = [vocab[i] for i in to_numpy(targets[0])]
        head.append(f"targets (the next {look.unit} at each position): " + " ".join(nxt))
    else:
        head.append(f"target class (the answer): {int(to_numpy(targets)[0])}")
    rows = [f"  {cut(t):>8}  id {i:>{iw}}" for t, i in zip(tokens, ids0)]
    return "\n".join(head + [f"token -> id (a row of the vocabulary of {len(vocab)} {look.unit}s):"]
                     + rows)


def embedding_text(model, tokens, x, look):
    W = model.tok_emb.W
    lines = [f"tok_emb.W has shape {tuple(W.shape)} = (V, C); each id picks one row.",
             f"x = tok_emb.W[ids] has shape {tuple(x.shape)} = (B, T, C). First values per token:"]
    rows = lambda n: "\n".join(
        f"  {cut(t):>8} {vec(x[0, j], n)}  |x| = {float(np.linalg.norm(to_numpy(x[0, j]))):.3f}"
        for j, t in enumerate(tokens))
    return "\n".join(lines + [widest(rows, look.width)])


def positions_text(model, tokens, x, look):
    kind = model.config.positional
    T = len(tokens)
    table = model.pos.table[:T] if kind == "sinusoidal" else to_numpy(model.pos.P[:T])
    what = ("fixed, not learned:\nPE[t, 2i] = sin(t / 10000^(2i/C)), PE[t, 2i+1] = cos(t / 10000^(2i/C))"
            if kind == "sinusoidal" else "P[t], a learned vector per position")
    tw = len(str(T - 1))                                    # t=9 and t=10 line up
    rows = lambda n: "\n".join(f"  t={j:<{tw}} {cut(t):>8} PE {vec(table[j], n)}  x+PE {vec(x[0, j], n)}"
                               for j, t in enumerate(tokens))
    return "\n".join([f"positions ({kind}): {what}.", "x = x + PE[:T]; same shape. PE rows and the sums:",
                      widest(rows, look.width)])


def attention_text(block, a, tokens, look, pre):
    attn = block.attn
    H, D = attn.q.shape[1], attn.q.shape[3]
    w = to_numpy(attn.last_attention_weights[0])            # (H, T, T)
    lines = (["pre-LN: ln1 normalises x first."] if pre else []) + [
        f"q, k, v = projections of x, each {tuple(attn.q.shape)} = (B, H, T, D), D = {D}.",
        f"scores = q k^T / sqrt({D}); weights = softmax over keys (each row sums to 1)."]
    if attn.causal:
        lines.append("causal: a position sees only itself and earlier ones.")
    aside = " (query 0 aside: it sees only itself)" if attn.causal else ""
    for h in range(H):
        lines.append(f"\nhead {h}: row = query token, column = key token it attends to\n"
                     f"darkest = this head's largest weight{aside}")
        lines.append(viz.ascii_heatmap(w[h], tokens, tokens, shades=look.shades, masked=look.masked,
                                       vmax=viz.attention_scale(w[h], attn.causal), width=look.width))
    if attn.causal:
        lines.append(f"the '{look.masked}' triangle above the diagonal is the causal mask: weight "
                     "exactly 0.")
    lines.append(f"\noutput = concat(heads) @ proj.W: shape {tuple(a.shape)}")
    lines.append(widest(lambda n: f"token 0: {vec(a[0, 0], n)}", look.width))
    return "\n".join(lines)


def norm_text(r, x, tokens, pre, what, ln, look):
    r, x = to_numpy(r[0]), to_numpy(x[0])
    if pre:
        lines = [f"residual: x = x + {what}(x)",
                 "pre-LN: no norm here; the next sub-layer normalises its own input.",
                 "per token mean / std:"]
        lines += [f"  {cut(t):>8} mean {num(r[j].mean())} std {r[j].std():.3f}"
                  for j, t in enumerate(tokens)]
        return "\n".join(lines)
    lines = [f"residual: r = x + {what}(x), then x = {ln}(r)",
             f"  where {ln}(r) = (r - mean) / std * gamma + beta.",
             "per token:    before the norm (mean, std)   after (mean, std)"]
    lines += [f"  {cut(t):>8}    {num(r[j].mean())} {r[j].std():6.3f}          "
              f"{num(x[j].mean())} {x[j].std():6.3f}" for j, t in enumerate(tokens)]
    lines.append(widest(lambda n: f"token 0 after the norm: {vec(x[0], n)}", look.width))
    return "\n".join(lines)


def ffn_text(block, v, look):
    f1, g, f = v["fc1"], v["hidden"], v["fc2"]
    active = float((to_numpy(g) > 0).mean())
    act = type(block.ffn.act).__name__
    return "\n".join([
        f"fc1: {tuple(v['ffn_in'].shape)} -> {tuple(f1.shape)}, the same weights at every position",
        f"{act}: {active:.0%} of the {f1.shape[-1]} hidden values per token are > 0",
        f"fc2: back to {tuple(f.shape)}",
        widest(lambda n: f"token 0: hidden {vec(g[0, 0], n)}\ntoken 0: output {vec(f[0, 0], n)}",
               look.width)])


def pool_head_text(model, run, tokens, look):
    first = model.config.pooling == "first"
    pooled, logits = run["head"].x, run.logits              # (1, C) -> (1, n_classes)
    how = (f"pooling=first: the vector of token 0 ('{tokens[0]}') stands for the whole sequence"
           if first else "pooling=mean: the average of the token vectors")
    z = [f"{c}:{v:+.2f}" for c, v in enumerate(to_numpy(logits[0]))]
    return "\n".join([
        how, widest(lambda n: f"pooled: shape {tuple(pooled.shape)} = (B, C) {vec(pooled[0], n)}",
                    look.width),
        f"head: pooled @ W {(pooled.shape[-1], logits.shape[-1])} + b -> logits {tuple(logits.shape)}",
        "logits: " + " ".join(z[:5])] + ["        " + " ".join(z[k:k + 5]) for k in range(5, len(z), 5)])


def lm_head_text(model, logits, tokens, vocab, look):
    tied = model.config.tie_weights
    z = to_numpy(logits[0])                                 # (T, V)
    rights = [f"{cut(vocab[int(z[j].argmax())]):<8} score {z[j].max():+.2f}" for j in range(len(tokens))]
    return "\n".join([f"LM head: logits = h @ {'tok_emb.W^T (tied to the embedding)' if tied else 'head.W'}",
                      f"-> {tuple(logits.shape)} = (B, T, V): a score for every {look.unit} at every "
                      "position.", f"highest-scoring next {look.unit} per position:"]
                     + after_rows(tokens, rights, look.width))


def softmax_text(logits, targets, tokens, vocab, lm, look):
    probs = to_numpy(softmax(logits))
    lines = [f"logits z = model.forward(ids), shape {tuple(logits.shape)}:",
             "the one pass every stage above was read from.",
             "softmax: p = exp(z - max z) / sum exp(z - max z)."]
    if lm:
        y = to_numpy(targets[0])
        best = [", ".join(f"{cut(vocab[k], 7)} {probs[0, j, k]:.2f}" for k in np.argsort(-probs[0, j])[:3])
                for j in range(len(tokens))]
        bw = max(len(b) for b in best)
        rights = [f"{b:<{bw}} target {cut(vocab[y[j]], 7)} p={probs[0, j, y[j]]:.2f}"
                  for j, b in enumerate(best)]
        return "\n".join(lines + [f"after each position: the 3 likeliest next {look.unit}s, and the "
                                  "target's p"] + after_rows(tokens, rights, look.width))
    y, pred = int(to_numpy(targets)[0]), int(probs[0].argmax())
    for c, p in enumerate(probs[0]):
        mark = ("  <- target" if c == y else "") + ("  <- predicted" if c == pred else "")
        lines.append(f"  class {c}: {p:.3f} {viz.ascii_bar(p, 1.0, 30, shades='#')}{mark}")
    return "\n".join(lines)


def loss_text(loss_fn, logits, targets, lm):
    loss = float(loss_fn.forward(logits, targets))
    p = to_numpy(softmax(logits)).reshape(-1, logits.shape[-1])         # (N, V)
    y = to_numpy(targets).reshape(-1)
    by_hand = -np.log(p[np.arange(len(y)), y])                          # -log p[target] per token
    V = logits.shape[-1]
    return "\n".join([
        "cross-entropy: loss = -log p[target]" + (" averaged over the positions" if lm else ""),
        f"  by hand: {' '.join(f'{v:.3f}' for v in by_hand)}" + (f" -> mean {by_hand.mean():.4f}" if lm else ""),
        f"  {type(loss_fn).__name__}: {loss:.4f}",
        f"  (a uniform guess over {V} classes would give log {V} = {math.log(V):.3f})"])


def backward_text(model, loss_fn, optimizer, look):
    optimizer.zero_grad()
    dlogits = loss_fn.backward()
    model.backward(dlogits)                                 # through the caches of the one pass
    norms = {}
    for name, (_, g) in model.named_parameters():
        layer = name.rsplit(".", 1)[0]
        norms[layer] = norms.get(layer, 0.0) + float((to_numpy(g).astype(np.float64) ** 2).sum())
    top = max(math.sqrt(v) for v in norms.values()) or 1.0
    d = to_numpy(dlogits).reshape(-1, dlogits.shape[-1])
    lines = [f"dloss/dlogits = (softmax - one_hot(target)) / n_counted: shape {tuple(dlogits.shape)}",
             widest(lambda n: f"  first row {vec(d[0], n)}", look.width, most=10),
             "model.backward(dlogits) runs every layer's backward in reverse.",
             "gradient norm per layer, in reverse registration order (named_parameters reversed):"]
    bar = max(8, min(24, look.width - 37))
    for layer in reversed(list(norms)):
        n = math.sqrt(norms[layer])
        lines.append(f"  {cut(layer, 22):<22} {n:10.4f} {viz.ascii_bar(n, top, bar, look.shades)}".rstrip())
    if model.config.kind == "decoder_lm" and model.config.tie_weights:
        lines.append("(tok_emb's gradient includes the tied LM head's contribution)")
    return "\n".join(lines)


def optimizer_why(optimizer, k):
    """Which optimizer this task trains with, and why; whether parameter k is decayed."""
    name = type(optimizer).__name__
    decays = list(getattr(optimizer, "decay", []))
    if getattr(optimizer, "decoupled", False):
        return (f"optimizer: {name}, as for every language model: Adam's per-parameter step sizes "
                f"plus decoupled weight decay, p *= 1 - lr * {optimizer.weight_decay:g} each step, "
                "which keeps the weight matrices of a long run small; the decay mask spares biases, "
                f"norm gains and embeddings ({sum(decays)} of {len(decays)} tensors decay; this "
                f"entry's {'does' if decays[k] else 'does not'}).")
    if hasattr(optimizer, "m"):
        return (f"optimizer: {name}, as for the digits and sentences tasks: each parameter gets its "
                "own step size from running averages of its gradient (m) and squared gradient (v), "
                "so one learning rate suits every layer of these short runs"
                + (f"; weight decay {optimizer.weight_decay:g}, added to the gradient."
                   if optimizer.weight_decay else "; no weight decay."))
    return f"optimizer: {name}."


def update_text(model, optimizer, lr_at, look):
    """One optimizer.step() at the step's real learning rate, with Adam's arithmetic spelled out."""
    names = [n for n, _ in model.named_parameters()]
    params = model.get_parameters()
    k = max(range(len(params)), key=lambda j: float(np.abs(to_numpy(params[j][1])).max()))
    p, g = params[k]
    idx = np.unravel_index(int(np.abs(to_numpy(g)).argmax()), p.shape)
    before, grad = float(to_numpy(p[idx])), float(to_numpy(g[idx]))
    adam = hasattr(optimizer, "m")
    m0, v0 = (float(to_numpy(optimizer.m[k][idx])), float(to_numpy(optimizer.v[k][idx]))) if adam \
        else (0.0, 0.0)
    base = optimizer.lr
    if lr_at is not None:                                   # the schedule's value at this step
        optimizer.lr = lr_at(optimizer.t)
    all_before = [to_numpy(q).copy() for q, _ in params]
    optimizer.step()
    after, t, lr = float(to_numpy(p[idx])), optimizer.t, optimizer.lr
    change = math.sqrt(sum(float(((to_numpy(q) - b) ** 2).sum()) for (q, _), b in zip(params, all_before)))
    size = math.sqrt(sum(float((b.astype(np.float64) ** 2).sum()) for b in all_before))
    when = (f"the warm-up + cosine schedule's value at step {t} (peak {base:g})" if lr_at
            else "the optimizer's lr now" if getattr(optimizer, "decoupled", False)
            else "constant: this task uses no schedule")
    lines = [textwrap.fill(optimizer_why(optimizer, k), look.width),
             textwrap.fill(f"step t = {t}, learning rate lr = {lr:.4g}: {when}.", look.width),
             f"the entry with the largest gradient: {names[k]}{list(map(int, idx))}",
             f"  before {before:+.8f}   gradient g = {grad:+.6f}"]
    if adam:
        b1, b2, eps = optimizer.beta1, optimizer.beta2, optimizer.eps
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        wd = optimizer.weight_decay * bool(optimizer.decay[k])
        if wd and not optimizer.decoupled:
            grad += wd * before                             # Adam's L2: decay joins the gradient
            lines.append(f"  g + weight_decay * before = {grad:+.6f}")
        m, v = b1 * m0 + (1 - b1) * grad, b2 * v0 + (1 - b2) * grad * grad
        step = -lr * (m / c1) / (math.sqrt(v / c2) + eps)
        decay = -lr * wd * before if optimizer.decoupled else 0.0
        lines += [f"  beta1 = {b1:g}, beta2 = {b2:g}, eps = {eps:g}",
                  f"  bias corrections: 1 - beta1^t = {c1:.6g}, 1 - beta2^t = {c2:.6g}",
                  f"  m = beta1 * {m0:+.4e} + (1 - beta1) * g = {m:+.4e}",
                  f"  v = beta2 * {v0:.4e} + (1 - beta2) * g^2 = {v:.4e}",
                  f"  m_hat = m / (1 - beta1^t) = {m / c1:+.4e}",
                  f"  v_hat = v / (1 - beta2^t) = {v / c2:.4e}",
                  f"  update = -lr * m_hat / (sqrt(v_hat) + eps) = {step:+.4e}"]
        if optimizer.decoupled:
            lines.append(f"  decay = -lr * {wd:g} * before = {decay:+.4e}" if wd else
                         "  decay: none (the mask spares this entry)")
        lines += [f"  after  {after:+.8f}",
                  f"  change = after - before = {after - before:+.4e}; by hand, "
                  + ("update + decay" if optimizer.decoupled else "update") + f" = {step + decay:+.4e}"]
        if p.dtype.itemsize < 8:
            lines.append(f"  (the weights are {p.dtype}: the last digits may differ)")
    else:
        lines.append(f"  after  {after:+.8f}   change {after - before:+.4e}")
    lines += [f"all parameters: |change| = {change:.4f}, |params| = {size:.2f}, ratio {change / size:.2e}",
              "(this update is undone before training starts: the walk does not change the run)"]
    return "\n".join(lines)
