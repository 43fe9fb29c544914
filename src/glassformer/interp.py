"""Interpretability, numbers only: QK/OV circuits, attention maps, entropy, head classes, token loss.

Circuits (Elhage et al. 2021) in our row-vector layout, per head h of one layer:
  QK = W_E W_Q[h] W_K[h]^T W_E^T   (H, V, V): [query token, key token] -> attention score (x sqrt(D))
  OV = W_E W_V[h] W_O[h] W_U       (H, V, V): [attended token, output token] -> logit contribution
Norms, biases and positions are left out: exact for the direct path of a norm-free attention-only
model, a first-order picture otherwise. Head patterns (B, H, T, T): previous-token = attention to
t - 1, first-token = attention to position 0, induction = attention to the token after the previous
occurrence of the current token (t - L + 1 in a sequence repeated with period L).
Pictures of these numbers are in glassformer.visualization.
"""
from collections import namedtuple

import numpy as np

from .backend import array_module, to_numpy
from .checkpoint import load_checkpoint
from .errors import UserError
from .layers.activations import softmax
from .research.attention import split_head_weights
from .tasks import digits, load_dataset, make_task, sentences
from .tokenizers import tokenizer_from_dict

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


# ---- command line: look inside a trained run -----------------------------------------------------

def load_run(run_dir):
    """(model, task, experiment dict) of a run directory written by glassformer.experiments."""
    ckpt = load_checkpoint(run_dir, optimizer=False)
    exp = ckpt.experiment
    if exp is None:
        raise UserError(f"{run_dir}: not a run of python -m glassformer.experiments (its checkpoint "
                        "names no experiment)")
    return ckpt.model, make_task(exp["task"], **exp["task_params"]), exp


# What the CLI reads of a run: its name, token labels, text -> ids, the example rows, how the loss
# page joins tokens, whether it is a decoder (per-token loss, padding cropped) or a seq2seq model.
Subject = namedtuple("Subject", "name vocab encode examples sep kind")


def load_subject(path):
    """(model, Subject) of an experiments run or a train_step_by_step.py one (digits, sentences, lm)."""
    ckpt = load_checkpoint(path, optimizer=False)
    if ckpt.experiment is not None:
        exp = ckpt.experiment
        task = make_task(exp["task"], **exp["task_params"])
        return ckpt.model, Subject(exp["name"], task.vocab, task.encode,
                                   lambda: load_dataset(task).test["inputs"],
                                   "" if task.name == "charlm" else " ",
                                   "seq2seq" if task.kind == "seq2seq" else "decoder")
    meta = ckpt.task if isinstance(ckpt.task, dict) else {}
    name = meta.get("name")
    if name not in ("digits", "sentences", "lm") or not ckpt.tokenizer:
        raise UserError(f"{path}: not a run of python -m glassformer.experiments or of "
                        "train_step_by_step.py (its checkpoint names no experiment, and no digits, "
                        "sentences or lm task with a tokenizer)")
    return ckpt.model, step_subject(name, meta, tokenizer_from_dict(ckpt.tokenizer), path)


def step_subject(name, meta, tok, path):
    """The Subject of a train_step_by_step.py run: its own tokenizer and, for digits and sentences,
    its data regenerated from the task (an lm run's text is not in the checkpoint: pass --text)."""
    vocab = [token_label(tok.decode([i])) for i in range(tok.vocab_size)]
    if name == "digits":
        saved = meta.get("config", meta)
        config = digits.DigitsConfig(**{k: v for k, v in saved.items()
                                        if k in digits.DigitsConfig.__dataclass_fields__})
        encode = lambda text: digits.encode(*digits.parse(text, max_args=config.n_args),  # noqa: E731
                                            length=config.seq_len)
        return Subject("digits", vocab, encode, lambda: digits.split(config)["test"][0], " ",
                       "classifier")
    if name == "sentences":
        words = sentences.vocabulary()
        return Subject("sentences", vocab, lambda text: [sentences.START] + tok.encode(text),
                       lambda: sentences.dataset(words)[0], " ", "decoder")

    def no_examples():
        raise UserError(f"{path}: an lm run keeps no text to look at: pass --text TEXT")
    return Subject("lm", vocab, tok.encode, no_examples, "", "decoder")


def head_table(rows):
    """classify_heads' rows as a table: layer, head, class and the four scores (78 columns)."""
    lw = max([len("layer")] + [len(r["layer"]) for r in rows])
    lines = [f"{'layer':<{lw}} head {'class':<14} previous-token first-token induction entropy"]
    lines += [f"{r['layer']:<{lw}} {r['head']:>4} {r['label']:<14} {r['previous_token']:>14.2f} "
              f"{r['first_token']:>11.2f} {r['induction']:>9.2f} {r['entropy']:>7.2f}" for r in rows]
    return "\n".join(lines)


def token_label(text):
    """A token as a visible label: spaces and newlines shown, never empty."""
    return text.replace("\n", "\u21b5").replace("\t", "\u21e5").replace(" ", "\u2423") or "''"


def text_ids(run, text, max_len):
    """(1, T) ids of --text; UserError when it is empty, only whitespace, only unknown characters, or
    longer than the model's positions."""
    if not text.strip():
        raise UserError(f"--text {text!r} is {'empty' if not text else 'only whitespace'}: give the text "
                        "to look at, in the task's own notation")
    ids = list(run.encode(text))
    unk = run.vocab.index("<unk>") if "<unk>" in run.vocab else None
    if not ids or all(i == unk for i in ids):
        raise UserError(f"--text {text!r:.60}: none of its characters is in the model's vocabulary of "
                        f"{len(run.vocab)} tokens: give text it was trained on")
    if max_len is not None and len(ids) > max_len:
        raise UserError(f"--text is {len(ids):,} tokens, longer than the model's {max_len} positions: "
                        f"give at most {max_len} tokens of text")
    return np.array([ids], dtype=np.int64)


def example_ids(run, example):
    """(1, T) ids of test example `example` (a decoder's trailing padding dropped)."""
    test = run.examples()
    if not 0 <= example < len(test):
        raise UserError(f"--example {example}: the test split has {len(test)} rows: give 0..{len(test) - 1}")
    ids = test[example:example + 1]
    if run.kind == "decoder":                               # drop trailing padding
        ids = ids[:, :max(1, int((ids[0] != 0).sum()))]
    return ids


if __name__ == "__main__":             # python -m glassformer.interp: the command is in cli/
    from .cli.interp import main
    raise SystemExit(main())
