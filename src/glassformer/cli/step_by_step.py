"""train_step_by_step.py: walk one real example through a transformer stage by stage, then train it.

Interactive (stdin is a terminal): every stage of one forward pass, the loss, the backward pass and
one optimizer update is printed with real numbers, pausing for Enter. Then training runs with a live
progress line and writes into --out: best.npz (highest validation accuracy, ties broken by lower
validation loss), last.npz (every epoch; --resume continues from either), metrics.csv, summary.json,
curves.png and attention_layer{i}.png.
"""
import argparse
import csv
import io
import json
import math
import os
import shlex
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from .. import backend
from ..train import epochs as training
from .. import visualization as viz
from ..backend import to_numpy
from ..checkpoint import load_checkpoint, restore_optimizer, save_checkpoint
from ..errors import UserError
from ..generate import generate_tokens
from ..layers.activations import softmax
from .lm import add_lm_arguments, is_lm_checkpoint, run_lm
from ..layers.loss import CrossEntropyLoss
from ..models import ModelConfig, build_model
from ..optim.optimizers import Adam
from ..tasks import digits, sentences
from ..tokenizers import WordTokenizer

TASKS = ("digits", "sentences", "lm")
DEFAULT_EPOCHS = {"digits": 20, "sentences": 300}
METRIC_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]
EXIT_INTERRUPTED = 130


# ---------------------------------------------------------------- tasks: data, model, metrics

class DigitsTask:
    """Digit operations ("Max ( 5 3 9 )" -> 9): an encoder classifier, 80/10/10 split."""

    name = "digits"
    vocab = digits.VOCAB

    def __init__(self, size, seed, n_args=3, digit_range="0-9"):
        low, high = (int(d) for d in digit_range.split("-"))
        self.config = digits.DigitsConfig(size=size, n_args=n_args, low=low, high=high, seed=seed)
        self.data = {k: (backend.to_device(ids), backend.to_device(y), ops)
                     for k, (ids, y, ops) in digits.split(self.config).items()}

    def model_config(self):
        """The seed's medium configuration (2 post-LN blocks, 4 heads, d_model 64, FFN 256)."""
        return ModelConfig(vocab_size=len(self.vocab), kind="encoder_classifier", d_model=64,
                           n_heads=4, n_layers=2, d_ff=256, max_len=16, n_classes=10)

    def loss_fn(self):
        return CrossEntropyLoss()

    def n_train(self):
        return len(self.data["train"][0])

    def train_epoch(self, model, loss_fn, optimizer, batch_size, rng, on_batch):
        ids, y, _ = self.data["train"]
        return training.train_epoch(model, loss_fn, optimizer, ids, y, batch_size, rng, on_batch)

    def evaluate(self, model, loss_fn, split="val"):
        ids, y, _ = self.data[split]
        loss, acc, _ = training.evaluate(model, loss_fn, ids, y)
        return loss, acc

    def report(self, model, loss_fn):
        """Test loss and accuracy, overall and per operation."""
        ids, y, ops = self.data["test"]
        loss, acc, preds = training.evaluate(model, loss_fn, ids, y)
        per_op = training.accuracy_by_group(preds, to_numpy(y), ops, digits.OPERATIONS)
        return {"test_loss": loss, "test_accuracy": acc, "per_operation_accuracy": per_op}

    def walk_example(self):
        """The first training example: ids (1, T), target (1,)."""
        ids, y, _ = self.data["train"]
        return ids[:1], y[:1]

    def plot_example(self):
        """The first test example, ids (1, T), and its tokens."""
        ids = self.data["test"][0][:1]
        return ids, [self.vocab[i] for i in to_numpy(ids[0])]

    def tokenizer(self):
        return WordTokenizer(self.vocab[2:], specials=self.vocab[:2]).to_dict()

    def meta(self):
        return {"name": self.name, **self.config.to_dict(), "operations": digits.OPERATIONS}


class SentencesTask:
    """Next-word prediction on the 8 fixed sentences: a causal decoder; evaluated on the same 8."""

    name = "sentences"
    prompts = ["", "the", "a", "the dog", "a bird"]

    def __init__(self, size, seed):
        self.size, self.seed = size, seed
        self.vocab = sentences.vocabulary()
        x, y = sentences.dataset(self.vocab)
        self.ids, self.targets = backend.to_device(x), backend.to_device(y)

    def model_config(self):
        return ModelConfig(vocab_size=len(self.vocab), kind="decoder_lm", d_model=64, n_heads=4,
                           n_layers=2, d_ff=128, max_len=16)

    def loss_fn(self):
        return CrossEntropyLoss(ignore_index=sentences.PAD)

    def n_train(self):
        return len(self.ids)

    def train_epoch(self, model, loss_fn, optimizer, batch_size, rng, on_batch):
        return training.train_epoch(model, loss_fn, optimizer, self.ids, self.targets,
                                    batch_size, rng, on_batch, pad=sentences.PAD)

    def evaluate(self, model, loss_fn, split="val"):
        return training.evaluate_lm(model, loss_fn, self.ids, self.targets, pad=sentences.PAD)

    def report(self, model, loss_fn):
        """Next-word accuracy against the best possible one, and greedy continuations."""
        loss, acc = self.evaluate(model, loss_fn)
        return {"test_loss": loss, "test_accuracy": acc, "next_word_accuracy": acc,
                "best_possible_accuracy": sentences.best_possible_accuracy(),
                "samples": {p or "<START>": self.continue_prompt(model, p) for p in self.prompts}}

    def continue_prompt(self, model, prompt):
        """Greedy continuation of <START> + prompt until <END>, as words."""
        index = {w: i for i, w in enumerate(self.vocab)}
        ids = [sentences.START] + [index[w] for w in prompt.split()]
        new = generate_tokens(model, ids, max_new_tokens=model.config.max_len - len(ids), temperature=0,
                             eos_id=sentences.END)
        words = [self.vocab[i] for i in new if i != sentences.END]
        return " ".join(prompt.split() + words)

    def walk_example(self):
        """The first sentence: ids (1, T) from <START>, next-word targets (1, T)."""
        return self.ids[:1], self.targets[:1]

    def plot_example(self):
        ids = self.ids[:1]
        return ids, [self.vocab[i] for i in to_numpy(ids[0])]

    def tokenizer(self):
        return WordTokenizer(self.vocab[len(sentences.SPECIALS):], specials=sentences.SPECIALS).to_dict()

    def meta(self):
        return {"name": self.name, "size": self.size, "seed": self.seed,
                "sentences": sentences.SENTENCES, "pad": sentences.PAD, "start": sentences.START,
                "end": sentences.END}


TASK_CLASSES = {"digits": DigitsTask, "sentences": SentencesTask}


# ---------------------------------------------------------------- the walk-through

def vec(v, n=6):
    """The first n values of a vector, signed, 3 decimals."""
    v = to_numpy(v).ravel()
    more = " ..." if v.size > n else ""
    return "[" + " ".join(f"{x:+.3f}" for x in v[:n]) + more + "]"


def count_stages(model):
    """How many stages walk() prints for this model."""
    return 3 + 4 * len(model.blocks) + 5


def walk(model, ids, targets, vocab, loss_fn, optimizer, ask=input, out=sys.stdout):
    """Print each stage of one real forward pass, loss, backward pass and update; pause after each.

    ids (1, T); targets (1,) for a classifier, (1, T) for a language model. ask(prompt) returning
    "q" (or raising EOFError) skips to training. The update is undone afterwards, so the walk never
    changes the run. Returns the names of the stages shown.
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
    """Generator of (stage name, text); computes each stage with the model's own layers."""
    lm = model.config.kind == "decoder_lm"
    tokens = [vocab[i] for i in to_numpy(ids[0])]
    snapshot = _snapshot(model, optimizer)
    model.eval()                                            # dropout off: one deterministic pass
    try:
        yield "tokens", _tokens_text(tokens, ids, targets, vocab, lm)
        x = model.tok_emb.forward(ids)                      # (1, T, C)
        yield "embeddings", _embedding_text(model, tokens, x)
        x = model.pos.forward(x)
        yield "positions", _positions_text(model, tokens, x)
        x = model.drop.forward(x)
        for i, block in enumerate(model.blocks):
            x = yield from _block_stages(i, block, x, tokens, chars)
        if model.ln_f is not None:
            x = model.ln_f.forward(x)
        logits, text = _lm_head(model, x, tokens, vocab) if lm else _pool_head(model, x, tokens)
        yield ("LM head" if lm else "pooling + classifier head"), text
        ref = model.forward(ids)                            # the model's own pass: caches for backward
        yield "softmax", _softmax_text(ref, logits, targets, tokens, vocab, lm)
        yield "loss", _loss_text(loss_fn, ref, targets, lm)
        yield "backward", _backward_text(model, loss_fn, optimizer, chars)
        yield "optimizer update", _update_text(model, optimizer)
    finally:
        _restore(model, optimizer, snapshot)


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


def _block_stages(i, block, x, tokens, chars):
    """The four stages of one block (post-LN: LN(x + f(x)); pre-LN: x + f(LN(x)))."""
    pre = block.norm_first
    a = block.attn.forward(block.ln1.forward(x) if pre else x)           # (1, T, C)
    yield f"block {i} attention", _attention_text(i, block, a, tokens, chars, pre)
    r = x + block.drop1.forward(a)
    x_new = r if pre else block.ln1.forward(r)
    yield f"block {i} add & norm", _norm_text(r, x_new, tokens, pre, "attention", "ln1")
    x = x_new
    h = block.ln2.forward(x) if pre else x
    f1 = block.ffn.fc1.forward(h)                                         # (1, T, d_ff)
    g = block.ffn.act.forward(f1)
    f = block.ffn.fc2.forward(g)                                          # (1, T, C)
    yield f"block {i} feed-forward", _ffn_text(block, f1, g, f, tokens)
    r = x + block.drop2.forward(f)
    x_new = r if pre else block.ln2.forward(r)
    yield f"block {i} add & norm (after the FFN)", _norm_text(r, x_new, tokens, pre, "FFN", "ln2")
    return x_new


def _attention_text(i, block, a, tokens, chars, pre):
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


def _ffn_text(block, f1, g, f, tokens):
    active = float((to_numpy(g) > 0).mean())
    act = type(block.ffn.act).__name__
    return "\n".join([
        f"fc1: {tuple(f1.shape[:-1]) + (block.ffn.fc1.W.shape[0],)} -> {tuple(f1.shape)}, the same "
        "weights at every position",
        f"{act}: {active:.0%} of the {f1.shape[-1]} hidden values per token are > 0",
        f"fc2: back to {tuple(f.shape)}",
        f"token 0: hidden {vec(g[0, 0])}", f"token 0: output {vec(f[0, 0])}"])


def _pool_head(model, x, tokens):
    first = model.config.pooling == "first"
    pooled = x[:, 0] if first else x.mean(axis=1)           # (1, C)
    logits = model.head.forward(pooled)                     # (1, n_classes)
    how = (f"pooling=first: the vector of token 0 ('{tokens[0]}') stands for the whole sequence"
           if first else "pooling=mean: the average of the token vectors")
    return logits, "\n".join([
        how, f"pooled: shape {tuple(pooled.shape)} = (B, C) {vec(pooled[0])}",
        f"head: pooled @ W {tuple(model.head.W.shape)} + b -> logits {tuple(logits.shape)}",
        "logits: " + " ".join(f"{c}:{v:+.2f}" for c, v in enumerate(to_numpy(logits[0])))])


def _lm_head(model, x, tokens, vocab):
    logits = model.logits(x)                                # (1, T, V)
    tied = model.head is None
    lines = [f"LM head: logits = h @ {'tok_emb.W^T (tied to the embedding)' if tied else 'head.W'} "
             f"-> {tuple(logits.shape)} = (B, T, V): a score for every word at every position.",
             "highest-scoring next word per position:"]
    z = to_numpy(logits[0])
    lines += [f"  after {' '.join(tokens[:j + 1]):<40} {vocab[int(z[j].argmax())]:<8} "
              f"score {z[j].max():+.2f}" for j in range(len(tokens))]
    return logits, "\n".join(lines)


def _softmax_text(ref, logits, targets, tokens, vocab, lm):
    diff = float(np.abs(to_numpy(ref) - to_numpy(logits)).max())
    probs = to_numpy(softmax(ref))
    lines = [f"check: model.forward(ids) gives the same logits (largest difference {diff:.1e}).",
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
    lines = [f"cross-entropy: loss = -log p[target]" + (" averaged over the positions" if lm else ""),
             f"  by hand: {' '.join(f'{v:.3f}' for v in by_hand)}"
             + (f" -> mean {by_hand.mean():.4f}" if lm else ""),
             f"  {type(loss_fn).__name__}: {loss:.4f}",
             f"  (a uniform guess over {V} classes would give log {V} = {math.log(V):.3f})"]
    return "\n".join(lines)


def _backward_text(model, loss_fn, optimizer, chars):
    optimizer.zero_grad()
    dlogits = loss_fn.backward()
    model.backward(dlogits)
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
    if model.config.kind == "decoder_lm" and model.head is None:
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


# ---------------------------------------------------------------- flags

class Parser(argparse.ArgumentParser):
    """argparse that raises UserError instead of printing usage and exiting."""

    def error(self, message):
        raise UserError(f"{message} (see python train_step_by_step.py --help)")


def whole_number(minimum):
    """An argparse type: a whole number >= minimum, or a one-line error saying what is wrong."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} must be at least {minimum}")
        return value
    return parse


positive_int = whole_number(1)                          # epochs, batch size
seed_int = whole_number(0)


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} must be a positive finite number")
    return value


def digit_range(text):
    """'LOW-HIGH' with 0 <= LOW <= HIGH <= 9, e.g. '0-9' or '2-7'."""
    parts = text.split("-")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 1 for p in parts) or parts[0] > parts[1]:
        raise argparse.ArgumentTypeError(f"{text!r} is not a digit range LOW-HIGH within 0-9, "
                                         "e.g. 0-9 or 2-7")
    return text


def n_args_int(text):
    value = positive_int(text)
    if not 2 <= value <= 13:                            # Second needs 2; 13 + 3 tokens fill max_len 16
        raise argparse.ArgumentTypeError(f"{value} arguments: use 2 to 13")
    return value


def build_parser():
    p = Parser(prog="train_step_by_step.py", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=TASKS, help="digits (default): 'Max ( 5 3 9 )' -> 9 with an "
                   "encoder classifier; sentences: next-word prediction with a causal decoder; "
                   "lm: a language model on your --data (flags below)")
    p.add_argument("--size", choices=sorted(digits.SIZES), help="digits data set size: 2K / 10K "
                   "(default) / 50K examples; the sentences task always has its 8 sentences")
    p.add_argument("--n-args", type=n_args_int, help="digits: arguments per expression (default 3)")
    p.add_argument("--digits", type=digit_range, help="digits: range of the argument digits, "
                   "LOW-HIGH (default 0-9)")
    p.add_argument("--epochs", type=positive_int, help="total epochs (default: 20 for digits, 300 "
                   "for sentences; with --resume, the total to reach counting those already done)")
    p.add_argument("--batch-size", type=positive_int, help="examples per update (default 32)")
    p.add_argument("--lr", type=positive_float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--seed", type=seed_int, help="seed of the data and of the run's one random "
                   "generator (model init, dropout, shuffling) (default 0)")
    p.add_argument("--out", type=Path, help="run directory (default runs/<YYYYmmdd-HHMMSS>-<task>; "
                   "with --resume, the checkpoint's directory)")
    p.add_argument("--resume", type=Path, metavar="CHECKPOINT",
                   help="continue a run from its last.npz (or best.npz) exactly as if never stopped")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where to train: cpu (NumPy) or cuda (an NVIDIA GPU through CuPy)")
    p.add_argument("--no-interactive", action="store_true",
                   help="skip the stage-by-stage walk-through (it runs only when stdin is a terminal)")
    add_lm_arguments(p)                                 # --data, --tokenizer, --preset, ...
    return p


DEFAULTS = {"task": "digits", "size": "medium", "batch_size": 32, "lr": 1e-3, "seed": 0,
            "n_args": 3, "digits": "0-9"}


def resolve_settings(args):
    """The run's settings from flags, or from the checkpoint on --resume; (settings, checkpoint)."""
    if args.resume is None:
        settings = {k: d if getattr(args, k) is None else getattr(args, k)
                    for k, d in DEFAULTS.items()}
        settings["epochs"] = args.epochs or DEFAULT_EPOCHS[settings["task"]]
        return settings, None
    ckpt = load_checkpoint(args.resume)
    saved = ckpt.meta.get("extra", {}).get("run")
    if not saved or ckpt.meta.get("rng_state") is None or not ckpt.optimizer_state:
        raise UserError(f"{args.resume}: this checkpoint was not written by train_step_by_step.py "
                        "(no run settings, optimizer or RNG state): it cannot be resumed")
    for key in DEFAULTS:
        given = getattr(args, key)
        if given is not None and given != saved.get(key, DEFAULTS[key]):
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{flag} {given} differs from the resumed run's {saved[key]}: drop "
                            f"{flag} to continue {args.resume} as it was started")
    settings = {k: saved.get(k, DEFAULTS[k]) for k in DEFAULTS}   # older runs lack newer keys
    settings["epochs"] = args.epochs or saved["epochs"]
    done = ckpt.meta["extra"]["epoch"]
    if done >= settings["epochs"]:
        raise UserError(f"{args.resume} already has {done} epochs (the run asked for "
                        f"{settings['epochs']}): pass --epochs N with N > {done} to train more")
    return settings, ckpt


def resolve_out(args, task):
    """The run directory, created; UserError if it is a file or cannot be made."""
    if args.out is not None:
        out = args.out
    elif args.resume is not None:
        out = args.resume.parent
    else:
        out = Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{task}"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory: pass a directory path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create the run directory ({e.strerror or e})") from None
    return out


# ---------------------------------------------------------------- a run: model, optimizer, one RNG

class Run:
    """Everything one training run holds: the task, model, optimizer, its one Generator, history."""

    def __init__(self, settings, checkpoint=None, resume_path=None):
        self.settings = settings
        options = {} if settings["task"] != "digits" else \
            {"n_args": settings.get("n_args", 3), "digit_range": settings.get("digits", "0-9")}
        self.task = TASK_CLASSES[settings["task"]](settings["size"], settings["seed"], **options)
        self.rng = np.random.default_rng(settings["seed"])  # init, dropout and shuffling all draw here
        config = checkpoint.config if checkpoint else self.task.model_config()
        self.model = build_model(config, self.rng)
        self.loss_fn = self.task.loss_fn()
        self.optimizer = Adam(self.model.get_parameters(), lr=settings["lr"])
        self.epoch, self.history = 0, []
        self.best_acc, self.best_loss, self.best_epoch = -1.0, math.inf, 0
        self.resumed_from = None
        if checkpoint is not None:
            self._resume(checkpoint, resume_path)

    def _resume(self, ckpt, path):
        self.model.load_state_dict(ckpt.model.state_dict())
        restore_optimizer(self.optimizer, ckpt)
        self.rng.bit_generator.state = ckpt.meta["rng_state"]   # the same Generator the layers hold
        extra = ckpt.meta["extra"]
        self.epoch, self.history = extra["epoch"], [dict(r) for r in extra["history"]]
        self.best_acc, self.best_epoch = extra["best_val_acc"], extra["best_epoch"]
        self.best_loss = extra["best_val_loss"]
        self.resumed_from = str(path)

    def save(self, path, row):
        """A checkpoint of the run as it stands at the end of self.epoch."""
        extra = {"epoch": self.epoch, "run": self.settings, "history": self.history,
                 "best_val_acc": self.best_acc, "best_val_loss": self.best_loss,
                 "best_epoch": self.best_epoch}
        save_checkpoint(path, self.model, tokenizer=self.task.tokenizer(), task=self.task.meta(),
                        optimizer=self.optimizer, step=self.optimizer.t, rng=self.rng,
                        metrics=row, extra=extra)


# ---------------------------------------------------------------- progress line

def clock(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """A live line rewritten with \\r on a terminal; one plain line per epoch otherwise."""

    def __init__(self, out, live, epochs, n_batches, first_epoch):
        self.out, self.live, self.epochs, self.n_batches = out, live, epochs, n_batches
        self.first_epoch, self.epoch, self.start = first_epoch, first_epoch, time.perf_counter()
        self.last_draw, self.last_acc, self.width = 0.0, None, 0
        self.every = max(1, epochs // 25)                   # terminal: keep ~25 epoch lines

    def eta(self, batches_left):
        done = (self.epoch - self.first_epoch) * self.n_batches + self.batch
        rate = (time.perf_counter() - self.start) / max(done, 1)
        return clock(rate * batches_left)

    def begin(self, epoch):
        self.epoch, self.batch = epoch, 0

    def on_batch(self, i, n_batches, loss):
        self.batch = i + 1
        now = time.perf_counter()
        if not self.live or (now - self.last_draw < 0.1 and i + 1 < n_batches):
            return
        self.last_draw = now
        left = (self.epochs - self.epoch) * self.n_batches + n_batches - i - 1
        acc = "" if self.last_acc is None else f"  val acc {self.last_acc:.3f}"
        self._draw(f"epoch {self.epoch}/{self.epochs}  batch {i + 1}/{n_batches}  loss "
                   f"{float(loss):.4f}{acc}  ETA {self.eta(left)}")

    def _draw(self, text):
        print("\r" + text.ljust(self.width), end="", file=self.out, flush=True)
        self.width = len(text)

    def end_epoch(self, row, is_best):
        self.last_acc = row["val_acc"]
        left = (self.epochs - self.epoch) * self.n_batches
        text = (f"epoch {row['epoch']}/{self.epochs}  batch {self.n_batches}/{self.n_batches}  "
                f"loss {row['train_loss']:.4f}  acc {row['train_acc']:.3f}  |  val loss "
                f"{row['val_loss']:.4f}  acc {row['val_acc']:.3f}  |  {row['seconds']:.1f} s  "
                f"ETA {self.eta(left)}" + ("  *best" if is_best else ""))
        keep = not self.live or is_best or self.epoch % self.every == 0 or self.epoch == self.epochs
        if self.live:
            self._draw(text)
            if keep:
                print(file=self.out, flush=True)
                self.width = 0
        elif keep:
            print(text, file=self.out, flush=True)

    def close(self):
        if self.live and self.width:
            print(file=self.out, flush=True)
            self.width = 0


# ---------------------------------------------------------------- files

def write_text(path, text):
    """Write a text file atomically (temp + os.replace)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_metrics(path, rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def plot_run(run, out, model):
    """curves.png from the history, attention_layer{i}.png from `model` on a real test example."""
    files = []
    if run.history:
        files.append(viz.plot_curves(run.history, out / "curves.png"))
    ids, tokens = run.task.plot_example()
    model.eval()
    model.forward(ids)
    for i, block in enumerate(model.blocks):
        w = to_numpy(block.attn.last_attention_weights[0])  # (H, T, T)
        title = f"{run.task.name}: layer {i} attention on '{' '.join(tokens)}'"
        files.append(viz.plot_attention(w, tokens, out / f"attention_layer{i}.png", title))
    return files


# ---------------------------------------------------------------- training and the end of a run

def train(run, out, stream, live):
    """Epochs run.epoch+1 .. settings["epochs"]; best.npz, last.npz and metrics.csv after each.

    Returns True when Ctrl-C stopped it (the files hold the last finished epoch).
    """
    epochs, batch_size = run.settings["epochs"], run.settings["batch_size"]
    n_batches = -(-run.task.n_train() // batch_size)
    progress = Progress(stream, live, epochs, n_batches, run.epoch)
    try:
        while run.epoch < epochs:
            progress.begin(run.epoch + 1)
            start = time.perf_counter()
            train_loss, train_acc = run.task.train_epoch(run.model, run.loss_fn, run.optimizer,
                                                         batch_size, run.rng, progress.on_batch)
            val_loss, val_acc = run.task.evaluate(run.model, run.loss_fn)
            row = {"epoch": run.epoch + 1, "train_loss": round(train_loss, 6),
                   "train_acc": round(train_acc, 6), "val_loss": round(val_loss, 6),
                   "val_acc": round(val_acc, 6), "seconds": round(time.perf_counter() - start, 3)}
            run.epoch += 1
            run.history.append(row)
            is_best = (val_acc, -val_loss) > (run.best_acc, -run.best_loss)  # ties: lower loss
            if is_best:
                run.best_acc, run.best_loss, run.best_epoch = val_acc, val_loss, run.epoch
                run.save(out / "best.npz", row)
            run.save(out / "last.npz", row)
            write_metrics(out / "metrics.csv", run.history)
            progress.end_epoch(row, is_best)
    except KeyboardInterrupt:
        progress.close()
        print(f"\ninterrupted (Ctrl-C) during epoch {run.epoch + 1}: stopping; the files keep "
              f"epoch {run.epoch}.", file=stream)
        return True
    progress.close()
    return False


def carry_best(run, resume_path, out):
    """On --resume into another directory, bring the run's best.npz along (or restart the best)."""
    best = out / "best.npz"
    if best.exists():
        return
    source = resume_path.parent / "best.npz"
    if source.exists():
        tmp = best.with_name(best.name + ".tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, best)
    else:
        run.best_acc, run.best_loss, run.best_epoch = -1.0, math.inf, 0


def finish(run, out, interrupted, command):
    """Evaluate best.npz on the test data, draw the plots, write metrics.csv and summary.json."""
    write_metrics(out / "metrics.csv", run.history)
    best = out / "best.npz"
    report, plots = {}, []
    if best.exists():
        model = load_checkpoint(best).model
        report = run.task.report(model, run.loss_fn)
        plots = plot_run(run, out, model)
    elif run.history:
        plots = [viz.plot_curves(run.history, out / "curves.png")]
    summary = {
        "task": run.task.name, "command": command, "date": datetime.now().isoformat(timespec="seconds"),
        "interrupted": interrupted, "epochs_completed": run.epoch,
        "epochs_requested": run.settings["epochs"], "best_epoch": run.best_epoch or None,
        "best_val_accuracy": run.best_acc if run.best_acc >= 0 else None,
        "test_accuracy": report.get("test_accuracy"),
        **{k: v for k, v in report.items() if k != "test_accuracy"},
        "train_seconds": round(sum(r["seconds"] for r in run.history), 3),
        "resumed_from": run.resumed_from,
        "config": {"model": run.model.config.to_dict(), "task": run.task.meta(),
                   "training": {**run.settings, "optimizer": "Adam",
                                "device": "cuda" if backend.current() == "cupy" else "cpu"}},
        "files": sorted(p.name for p in out.iterdir() if p.suffix in (".npz", ".csv", ".png")),
    }
    summary["files"] = sorted(set(summary["files"]) | {"summary.json"})
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def print_summary(summary, out, stream):
    """The results and where the files are."""
    acc = summary["test_accuracy"]
    if acc is None:
        print("no epoch finished: nothing to evaluate.", file=stream)
    elif summary["task"] == "digits":
        per_op = "  ".join(f"{k} {v:.3f}" for k, v in summary["per_operation_accuracy"].items())
        print(f"test accuracy {acc:.4f} (best.npz, epoch {summary['best_epoch']}); per operation: "
              f"{per_op}", file=stream)
    else:
        print(f"next-word accuracy {acc:.4f} (best possible {summary['best_possible_accuracy']:.4f}; "
              f"best.npz, epoch {summary['best_epoch']})", file=stream)
        for prompt, text in summary["samples"].items():
            print(f"  {prompt:>9} -> {text}", file=stream)
    print(f"train time {summary['train_seconds']:.1f} s; files in {out}: "
          f"{', '.join(summary['files'])}", file=stream)
    if summary["epochs_completed"] and summary["epochs_completed"] < summary["epochs_requested"]:
        print(f"continue with: python train_step_by_step.py --resume {out / 'last.npz'}", file=stream)


def run_cli(args, argv, stream):
    backend.use(args.device)
    if args.task == "lm" or (args.task is None and is_lm_checkpoint(args.resume)):
        return run_lm(args, argv, stream, not args.no_interactive and sys.stdin.isatty())
    settings, ckpt = resolve_settings(args)
    out = resolve_out(args, settings["task"])
    run = Run(settings, ckpt, args.resume)
    if ckpt is not None:
        carry_best(run, args.resume, out)
    n_params = run.model.n_parameters()
    print(f"task {run.task.name}: {run.task.n_train()} training examples; "
          f"{type(run.model).__name__} with {n_params:,} parameters; run directory {out}"
          + (f"; resuming after epoch {run.epoch}" if ckpt else ""), file=stream)
    if not args.no_interactive and sys.stdin.isatty():
        ids, targets = run.task.walk_example()
        walk(run.model, ids, targets, run.task.vocab, run.loss_fn, run.optimizer, input, stream)
    interrupted = train(run, out, stream, live=stream.isatty())
    command = "python train_step_by_step.py " + shlex.join(argv)
    print_summary(finish(run, out, interrupted, command), out, stream)
    return EXIT_INTERRUPTED if interrupted else 0


def main(argv=None):
    """Parse flags, walk (on a terminal), train; exit 0, 2 on bad input, 130 on Ctrl-C."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return run_cli(build_parser().parse_args(argv), argv, sys.stdout)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:                                 # --help
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:
        print("\ninterrupted (Ctrl-C).", file=sys.stderr)
        return EXIT_INTERRUPTED
