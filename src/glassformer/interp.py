"""Interpretability: QK and OV circuits, attention maps and entropy, head classification, per-token loss.

Circuits (Elhage et al. 2021) in our row-vector layout, per head h of one layer:
  QK = W_E W_Q[h] W_K[h]^T W_E^T   (H, V, V): [query token, key token] -> attention score (x sqrt(D))
  OV = W_E W_V[h] W_O[h] W_U       (H, V, V): [attended token, output token] -> logit contribution
Norms, biases and positions are left out: exact for the direct path of a norm-free attention-only
model, a first-order picture otherwise. Head patterns (B, H, T, T): previous-token = attention to
t - 1, first-token = attention to position 0, induction = attention to the token after the previous
occurrence of the current token (t - L + 1 in a sequence repeated with period L).
"""
import html
import os
from pathlib import Path

import numpy as np

from .backend import array_module, to_numpy
from .layers.activations import softmax
from .research.attention import split_head_weights

LABELS = ("previous-token", "first-token", "induction", "diffuse", "other")


# ---- weights and circuits ------------------------------------------------------------------------

def head_weights(attn):
    """{"W_Q", "W_K", "W_V": (H, C, D), "W_O": (H, D, C)} of a self-attention layer, as NumPy."""
    return {k: to_numpy(v) for k, v in split_head_weights(attn).items()}


def unembedding(model):
    """W_U (C, V): the LM head, or the token embedding transposed when tied."""
    if getattr(model, "head", None) is not None:
        return to_numpy(model.head.W)
    return to_numpy(model.tok_emb.W).T


def qk_circuit(model, layer=0):
    """W_E W_Q W_K^T W_E^T per head of block `layer`: (H, V, V), rows = query token, cols = key."""
    w = head_weights(model.blocks[layer].attn)
    E = to_numpy(model.tok_emb.W)                           # (V, C)
    q, k = E @ w["W_Q"], E @ w["W_K"]                       # (H, V, D) each
    return q @ k.transpose(0, 2, 1)                         # (H, V, V)


def ov_circuit(model, layer=0):
    """W_E W_V W_O W_U per head of block `layer`: (H, V, V), rows = attended token, cols = logit."""
    w = head_weights(model.blocks[layer].attn)
    E = to_numpy(model.tok_emb.W)                           # (V, C)
    return (E @ w["W_V"]) @ w["W_O"] @ unembedding(model)   # (H, V, D) (H, D, C) (C, V) -> (H, V, V)


def top_pairs(circuit, vocab, k=5):
    """Per head, the k largest entries: [{"head", "row", "col", "value"}] (row, col as tokens)."""
    out = []
    H, V, _ = circuit.shape
    for h in range(H):
        flat = np.argsort(circuit[h], axis=None)[::-1][:k]
        for i, j in zip(*np.unravel_index(flat, (V, V))):
            out.append({"head": h, "row": vocab[i], "col": vocab[j], "value": float(circuit[h, i, j])})
    return out


def plot_circuit(circuit, vocab, path, title=""):
    """One heatmap per head of an (H, V, V) circuit (diverging colours around 0), saved as PNG."""
    from .visualization import _pyplot, _savefig
    plt = _pyplot()
    H, V, _ = circuit.shape
    cols = min(H, 4)
    rows = (H + cols - 1) // cols
    size = 1.5 + 0.18 * V
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size + 0.5), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= H:
            ax.axis("off")
            continue
        vmax = float(np.abs(circuit[h]).max()) or 1.0
        ax.imshow(circuit[h], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(f"head {h}")
        if V <= 40:
            ax.set_xticks(range(V), vocab, rotation=90, fontsize=6)
            ax.set_yticks(range(V), vocab, fontsize=6)
    if title:
        fig.suptitle(title)
    return _savefig(fig, path)


# ---- attention maps ------------------------------------------------------------------------------

def attention_layers(model, prefix=""):
    """[(dotted name, layer)] of every sub-layer that records last_attention_weights, in order."""
    found = [(prefix.rstrip("."), model)] if hasattr(model, "last_attention_weights") else []
    for name, child in model.children().items():
        found += attention_layers(child, prefix + name + ".")
    return found


def attention_maps(model, *inputs):
    """Run model.forward(*inputs) in eval mode; {layer name: (B, H, T, S) NumPy attention weights}."""
    was_training = model.training
    model.eval()
    try:
        model.forward(*inputs)
    finally:
        model.train(was_training)
    return {name: to_numpy(layer.last_attention_weights) for name, layer in attention_layers(model)
            if layer.last_attention_weights is not None}


def save_attention_heatmaps(maps, tokens, out_dir, example=0, src_tokens=None):
    """One PNG per layer (every head and their average) for one example; returns the paths.

    tokens label decoder positions; src_tokens (encoder-decoder) label "encoder.*" maps and the keys
    of cross-attention maps.
    """
    from .visualization import plot_attention
    paths = []
    for name, att in maps.items():
        w = att[example]                                    # (H, T, S)
        q = k = tokens
        if src_tokens is not None and name.startswith("encoder"):
            q = k = src_tokens
        elif src_tokens is not None and "cross" in name:
            k = src_tokens
        path = Path(out_dir) / f"attention-{name}.png"
        if q is k:
            paths.append(plot_attention(w, list(q), path, title=name))
        else:
            paths.append(plot_rectangular(w, list(q), list(k), path, name))
    return paths


def plot_rectangular(w, queries, keys, path, title=""):
    """Heatmaps of (H, T, S) attention whose queries and keys differ (cross-attention)."""
    from .visualization import _pyplot, _savefig
    plt = _pyplot()
    panels = [(w[h], f"head {h}") for h in range(w.shape[0])] + [(w.mean(axis=0), "average")]
    fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * (1 + 0.4 * len(keys)),
                                                      1.5 + 0.4 * len(queries)), squeeze=False)
    for ax, (m, name) in zip(axes.flat, panels):
        ax.imshow(m, cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(name)
        ax.set_xticks(range(len(keys)), keys, rotation=90)
        ax.set_yticks(range(len(queries)), queries)
    if title:
        fig.suptitle(title)
    return _savefig(fig, path)


def ascii_attention(att, tokens, key_tokens=None, head=None):
    """Terminal heatmap of (T, S) or (H, T, S) attention: one head, or the average when head=None."""
    from .visualization import ascii_heatmap
    w = np.asarray(att, dtype=np.float64)
    if w.ndim == 3:
        w = w.mean(axis=0) if head is None else w[head]
    return ascii_heatmap(w, list(tokens), list(key_tokens if key_tokens is not None else tokens),
                         vmax=1.0)


# ---- head statistics and classification ----------------------------------------------------------

def query_entropy(att):
    """Entropy (nats) of each query's weights: (B, H, T, S) -> (B, H, T); 0 log 0 = 0."""
    return -(att * np.log(np.where(att > 0, att, 1.0))).sum(axis=-1)


def attention_entropy(att, normalized=False):
    """Mean entropy (nats) per head of (B, H, T, S) causal weights; normalized: / log(keys seen)."""
    att = np.asarray(att, dtype=np.float64)
    ent = query_entropy(att)                                # (B, H, T)
    if normalized:
        n_keys = (att > 0).sum(axis=-1)                     # keys with weight, per query
        ent = np.where(n_keys > 1, ent / np.log(np.maximum(n_keys, 2)), 0.0)
        return ent[:, :, 1:].mean(axis=(0, 2))              # query 0 has one key: skip it
    return ent.mean(axis=(0, 2))                            # (H,)


def induction_targets(ids, period=None, prefix=1):
    """Boolean (B, T, T): [b, t, s] where s is the token after the previous occurrence of ids[b, t].

    period L and prefix (ints or one per row): the row is prefix tokens, a repeat r, r again; for t
    in the second repeat (prefix + L <= t < prefix + 2L) the target is s = t - L + 1. Without a
    period, every s = s' + 1 with ids[s'] == ids[t] and s' < t counts.
    """
    ids = np.asarray(ids)
    B, T = ids.shape
    t, s = np.arange(T)[None, :, None], np.arange(T)[None, None, :]       # (1, T, 1), (1, 1, T)
    if period is not None:
        L = np.broadcast_to(np.asarray(period), (B,))[:, None, None]      # (B, 1, 1)
        o = np.broadcast_to(np.asarray(prefix), (B,))[:, None, None]
        return (s == t - L + 1) & (t >= o + L) & (t < o + 2 * L)
    same = (ids[:, :, None] == ids[:, None, :]) & (s < t)   # (B, T, T): earlier same token at s
    out = np.zeros((B, T, T), dtype=bool)
    out[:, :, 1:] = same[:, :, :-1]                         # the token right after it
    return out


def head_scores(att, ids=None, period=None, prefix=1, mask=None):
    """Per-head scores of (B, H, T, T) causal weights, each (H,): "previous_token" (mean weight on
    t - 1), "first_token" (on position 0), "induction" (see induction_targets) and "entropy"
    (normalised to [0, 1]). mask (B, T): the query positions to average over (default: all)."""
    att = np.asarray(att, dtype=np.float64)
    B, H, T, _ = att.shape
    mask = np.ones((B, T), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    q = mask[:, None, 1:]                                   # (B, 1, T-1): query 0 sees only itself
    mean = lambda w, m: (w * m).sum(axis=(0, 2)) / max(int(m.sum()), 1)  # noqa: E731  (H,)
    scores = {"previous_token": mean(np.diagonal(att, offset=-1, axis1=2, axis2=3), q),
              "first_token": mean(att[:, :, 1:, 0], q), "induction": np.zeros(H)}
    if ids is not None or period is not None:
        ids = np.zeros((B, T), dtype=int) if ids is None else np.asarray(ids)
        target = induction_targets(ids, period, prefix)     # (B, T, T)
        rows = target.any(axis=-1) & mask                   # (B, T): queries with a target
        scores["induction"] = mean((att * target[:, None]).sum(axis=-1), rows[:, None])
    ent = query_entropy(att)                                # (B, H, T)
    n_keys = (att > 0).sum(axis=-1)
    scores["entropy"] = mean(ent[:, :, 1:] / np.log(np.maximum(n_keys[:, :, 1:], 2)), q)
    return scores


def classify_heads(maps, ids=None, period=None, prefix=1, mask=None, threshold=0.5, diffuse=0.5):
    """[{"layer", "head", "label", scores...}] for every head of every map in `maps` ({name: att}).

    label: the best of previous-token / first-token / induction when its score >= threshold,
    else "diffuse" when the normalised entropy >= diffuse, else "other".
    """
    rows = []
    patterns = (("previous-token", "previous_token"), ("first-token", "first_token"),
                ("induction", "induction"))
    for name, att in maps.items():
        s = head_scores(att, ids, period, prefix, mask)
        for h in range(np.shape(att)[1]):
            label, key = max(patterns, key=lambda p: s[p[1]][h])
            if s[key][h] < threshold:
                label = "diffuse" if s["entropy"][h] >= diffuse else "other"
            rows.append({"layer": name, "head": h, "label": label,
                         **{k: round(float(v[h]), 4) for k, v in s.items()}})
    return rows


# ---- per-token loss ------------------------------------------------------------------------------

def per_token_loss(model, ids):
    """-log p(ids[t+1] | ids[..t]) for t = 0..T-2 of one sequence (list or (T,)), in eval mode."""
    xp = array_module(model.tok_emb.W)
    x = xp.asarray(np.asarray(ids, dtype=np.int64)[None])  # (1, T)
    was_training = model.training
    model.eval()
    try:
        logits = model.forward(x)[0, :-1].astype(xp.float64)   # (T-1, V)
    finally:
        model.train(was_training)
    logp = xp.log(softmax(logits, axis=-1) + 1e-30)
    return to_numpy(-logp[xp.arange(x.shape[1] - 1), x[0, 1:]])   # (T-1,)


def loss_color(loss, vmax):
    """White (loss 0) to red (loss >= vmax) as an rgb() string."""
    f = 0.0 if vmax <= 0 else min(max(loss / vmax, 0.0), 1.0)
    g = int(round(255 * (1.0 - f)))
    return f"rgb(255,{g},{g})"


def loss_html(tokens, losses, path=None, title="per-token loss", vmax=None, sep=""):
    """An HTML page, one <span> per token shaded white -> red by the loss of predicting it.

    tokens: T strings; losses: T - 1 values for tokens 1..T-1 (token 0 is not predicted).
    Writes `path` atomically when given; returns the HTML text.
    """
    losses = [float(v) for v in losses]
    if len(losses) != len(tokens) - 1:
        raise ValueError(f"{len(tokens)} tokens need {len(tokens) - 1} losses, got {len(losses)}")
    vmax = vmax if vmax is not None else max(losses, default=1.0)
    spans = ['<span style="background:rgb(255,255,255)" title="first token: not predicted">'
             f'{html.escape(tokens[0])}</span>']
    for tok, loss in zip(tokens[1:], losses):
        spans.append(f'<span style="background:{loss_color(loss, vmax)}" title="loss {loss:.3f}">'
                     f'{html.escape(tok)}</span>')
    mean = float(np.mean(losses)) if losses else 0.0
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title></head>\n<body>\n"
            f"<h3>{html.escape(title)}</h3>\n<p>mean loss {mean:.3f} nats over {len(losses)} "
            f"predictions; white = 0, red = {vmax:.2f} or more (hover a token for its loss)</p>\n"
            f"<div style=\"font-family:monospace; white-space:pre-wrap; line-height:1.6\">"
            f"{sep.join(spans)}</div>\n</body></html>\n")
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, path)
    return page


# ---- command line: look inside a trained run -----------------------------------------------------

def load_run(run_dir):
    """(model, task, experiment dict) of a run directory written by glassformer.experiments."""
    import json
    from .errors import UserError
    from .experiments import load_run_model
    from .tasks.synthetic import make_task
    config = Path(run_dir) / "config.json"
    if not config.exists():
        raise UserError(f"{run_dir}: no config.json; give a run directory written by "
                        "python -m glassformer.experiments")
    exp = json.loads(config.read_text(encoding="utf-8"))["experiment"]
    model, _ = load_run_model(run_dir)
    return model, make_task(exp["task"], **exp["task_params"]), exp


def main(argv=None):
    import argparse
    import sys
    from .errors import UserError
    from .tasks.synthetic import load_dataset
    parser = argparse.ArgumentParser(
        prog="python -m glassformer.interp",
        description="Attention maps (ASCII), head classes and per-token loss (HTML) of a trained run.")
    parser.add_argument("run_dir", help="a run directory (runs/<time>-<name>)")
    parser.add_argument("--text", help="input in the task's own notation (default: a test example)")
    parser.add_argument("--example", type=int, default=0, help="which test example (default 0)")
    parser.add_argument("--head", type=int, default=None, help="one head (default: the average)")
    parser.add_argument("--html", help="write the per-token loss page here (decoder models)")
    args = parser.parse_args(argv)
    try:
        model, task, exp = load_run(args.run_dir)
        if task.kind == "seq2seq":
            raise UserError("the interp CLI reads decoder runs; for an encoder-decoder use "
                            "interp.attention_maps(model, src, tgt_in) in Python")
        if args.text is not None:
            ids = np.array([task.encode(args.text)], dtype=np.int64)
        else:
            test = load_dataset(task).test["inputs"]
            if not 0 <= args.example < len(test):
                raise UserError(f"--example {args.example}: the test split has {len(test)} rows")
            ids = test[args.example:args.example + 1]
            ids = ids[:, :max(1, int((ids[0] != 0).sum()))]  # drop trailing padding
        tokens = [task.vocab[i] for i in ids[0]]
        maps = attention_maps(model, ids)
        for name, att in maps.items():
            which = "average over heads" if args.head is None else f"head {args.head}"
            print(f"{name} ({which}):\n{ascii_attention(att[0], tokens, head=args.head)}\n")
        for row in classify_heads(maps, ids):
            print(f"{row['layer']} head {row['head']}: {row['label']:<14} previous-token "
                  f"{row['previous_token']:.2f} first-token {row['first_token']:.2f} induction "
                  f"{row['induction']:.2f} entropy {row['entropy']:.2f}")
        if args.html:
            losses = per_token_loss(model, ids[0])
            sep = "" if task.name == "charlm" else " "
            loss_html(tokens, losses, args.html, title=f"per-token loss: {exp['name']}", sep=sep)
            print(f"wrote {args.html} (mean loss {float(np.mean(losses)):.3f})")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
