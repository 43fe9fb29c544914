"""Lesson 20: your own GPT, checked against glassformer's DecoderLM, its Trainer and finite differences.

The student's functions are assembled from their own answers to lessons 1 to 9, so a bug planted in
any of those shows here too. A check that needs a second function of the file (a backward needs its
forward's cache) takes it from the same file: the first function's module globals.
"""
import io

import numpy as np

from ...data.corpus import lm_batches
from ...data.fetch import resolve_dataset
from ...errors import UserError
from ...gradcheck import central_difference
from ...layers.block import TransformerBlock
from ...layers.loss import CrossEntropyLoss, cross_entropy_backward, cross_entropy_forward
from ...models import build_model, lm_config
from ...tokenizers import CharTokenizer
from ...train.trainer import TrainConfig, Trainer
from ..grading import Fail, as_array, close, exercise, expect, randn, unpack

SMALL = dict(vocab_size=11, d_model=8, n_heads=2, n_layers=2, max_len=8)   # the exact checks' model
SHAKESPEARE = dict(d_model=32, n_heads=4, n_layers=2, max_len=32)          # the training checks' model
AGREE_STEPS, AGREE_TOL = 50, 1e-4          # (b): 50 steps beside DecoderLM + Trainer, losses within 1e-4
TARGET_STEPS, TARGET_LOSS, TARGET_LAST = 300, 2.5, 20   # (c): lessons/20-your-own-gpt.md states these
GRAD_TOL, H = 1e-5, 1e-5                   # (a): finite differences in float64
PER_TENSOR = 3                             # entries of each parameter checked by finite differences
TRAIN_SECONDS = 90.0                       # the training checks' time limit (the solution's train: ~9 s)


def settings(steps, lr=3e-3, warmup_steps=10, min_lr=3e-4, beta2=0.99):
    """The optimisation settings a student's train_step gets, and TrainConfig's of the same run."""
    mine = dict(n_heads=SHAKESPEARE["n_heads"], lr=lr, min_lr=min_lr, warmup_steps=warmup_steps,
                steps=steps, betas=(0.9, beta2), eps=1e-8, weight_decay=0.1, grad_clip=1.0)
    theirs = TrainConfig(steps=steps, lr=lr, min_lr=min_lr, warmup=warmup_steps, weight_decay=0.1,
                         beta1=0.9, beta2=beta2, grad_clip=1.0, log_interval=1, eval_interval=0, seed=0)
    return mine, theirs


def allow(seconds):
    """Give a check `seconds` instead of the checker's default (runner.CHECK_SECONDS): training takes longer."""
    def mark(check):
        check.seconds = seconds
        return check
    return mark


def partner(fn, name):
    """The student's function `name` from fn's own file (a backward needs its forward)."""
    other = getattr(fn, "__globals__", {}).get(name)
    if not callable(other):
        raise Fail(f"this check also runs your {name}: write it in the same file")
    return other


def small_model(rng):
    """A float64 DecoderLM with every parameter moved off its init (so every path carries gradient)."""
    config = lm_config("tiny", **SMALL, d_ff=4 * SMALL["d_model"], dtype="float64")
    model = build_model(config, rng)
    for _, (p, _) in model.named_parameters():
        p += 0.2 * randn(rng, *p.shape)
    return model


def copies(layer):
    """{name: a copy of the parameter}: the student's arrays, never the layer's own."""
    return {name: p.copy() for name, (p, _) in layer.named_parameters()}


def causality(forward, x, what):
    """Fail when changing the last position changes an earlier output: the causal mask is missing."""
    changed = x.copy()                                      # floats (B, T, C) or token ids (B, T)
    if x.dtype.kind == "f":                                 # not a constant: LayerNorm would remove it
        changed[:, -1] += np.linspace(-1.0, 1.0, x.shape[-1])
    else:
        changed[:, -1] = (x[:, -1] + 1) % SMALL["vocab_size"]
    before, after = as_array(forward(x), what), as_array(forward(changed), what)
    expect(np.allclose(before[:, :-1], after[:, :-1], rtol=1e-12, atol=1e-12),
           f"changing only the last position changes {what} at position 0: the future leaks in "
           "(is the causal mask missing?)")


def gradcheck(loss, params, grads, rng, must_cover=()):
    """Fail unless every gradient has its parameter's shape and agrees with finite differences on
    PER_TENSOR random entries (and the entries of must_cover: [(name, index)])."""
    missing = sorted(set(params) - set(grads))
    expect(not missing, f"no gradient for {', '.join(missing[:4])}: return one for every parameter")
    for name, p in params.items():
        g = as_array(grads[name], f"the gradient of {name}")
        expect(g.shape == p.shape, f"the gradient of {name} has shape {g.shape}, expected {p.shape}")
        picks = [tuple(int(i) for i in np.unravel_index(rng.integers(p.size), p.shape))
                 for _ in range(PER_TENSOR)] + [i for n, i in must_cover if n == name]
        scale = max(np.abs(g).max(), 1e-6)
        for index in picks:
            numeric = central_difference(loss, p, index, H)
            err = abs(g[index] - numeric) / scale
            expect(err <= GRAD_TOL, f"the gradient of {name} disagrees with finite differences at "
                   f"{index}: yours {g[index]:.6g}, numerical {numeric:.6g} (relative error {err:.1e}, "
                   f"tolerance {GRAD_TOL:g})")


@exercise("20")
def block_forward(fn, rng):
    C, H = SMALL["d_model"], SMALL["n_heads"]
    block = TransformerBlock(C, H, 4 * C, rng, norm_first=True, causal=True, activation="gelu",
                             dtype="float64")
    for _, (p, _) in block.named_parameters():
        p += 0.2 * randn(rng, *p.shape)
    x, p = randn(rng, 2, 5, C), copies(block)
    out, _ = unpack(fn(x.copy(), p, H), ("out", "cache"))
    causality(lambda x: fn(x, p, H)[0], x, "the block's output")
    close(out, block.forward(x), "the block's output (glassformer's pre-LN TransformerBlock gives the "
          "expected)", rtol=1e-8, atol=1e-10)


@exercise("20")
def block_backward(fn, rng):
    C, H = SMALL["d_model"], SMALL["n_heads"]
    forward = partner(fn, "block_forward")
    block = TransformerBlock(C, H, 4 * C, rng, norm_first=True, causal=True, activation="gelu",
                             dtype="float64")
    for _, (p, _) in block.named_parameters():
        p += 0.2 * randn(rng, *p.shape)
    x, dout, p = randn(rng, 2, 5, C), randn(rng, 2, 5, C), copies(block)
    _, cache = unpack(forward(x, p, H), ("out", "cache"))
    dx, grads = unpack(fn(dout.copy(), cache), ("dx", "grads"))
    expect(isinstance(grads, dict), f"grads should be a dict {{name: gradient}}, got {type(grads).__name__}")

    def loss():
        return float((as_array(forward(x, p, H)[0], "the block's output") * dout).sum())
    gradcheck(loss, dict(p, x=x), dict(grads, x=dx), rng)


@exercise("20")
def gpt_forward(fn, rng):
    model = small_model(rng)
    ids = rng.integers(0, SMALL["vocab_size"], (2, 6))      # T = 6 < max_len: P[:T] only
    logits, _ = unpack(fn(copies(model), ids.copy(), SMALL["n_heads"]), ("logits", "cache"))
    params = copies(model)
    causality(lambda ids: fn(params, ids, SMALL["n_heads"])[0], ids, "the logits")
    close(logits, model.forward(ids), "the logits (glassformer's DecoderLM gives the expected)",
          rtol=1e-8, atol=1e-10)


@exercise("20")
def gpt_backward(fn, rng):
    forward = partner(fn, "gpt_forward")
    params, V, H = copies(small_model(rng)), SMALL["vocab_size"], SMALL["n_heads"]
    ids, targets = rng.integers(0, V, (2, 6)), rng.integers(0, V, (2, 6))
    logits, cache = unpack(forward(params, ids, H), ("logits", "cache"))
    _, ce = cross_entropy_forward(as_array(logits, "the logits"), targets)
    grads = fn(cross_entropy_backward(1.0, ce), cache)
    expect(isinstance(grads, dict), f"should return a dict {{name: gradient}}, got {type(grads).__name__}")

    def loss():
        return float(cross_entropy_forward(as_array(forward(params, ids, H)[0], "the logits"), targets)[0])
    gradcheck(loss, params, grads, rng, must_cover=[("pos.P", (7, 0)), ("pos.P", (5, 3))])


def glassformer_run(model, batches, config):
    """The losses of glassformer's Trainer (AdamW, warm-up + cosine, clipping) over config.steps steps."""
    trainer = Trainer(model, CrossEntropyLoss(), batches, config, log=io.StringIO())
    trainer.fit()
    return [row["train_loss"] for row in trainer.history]


def student_run(fn, params, batches, mine):
    """The losses of the student's train_step over mine["steps"] steps of the same batches."""
    state, draw, losses = {}, np.random.default_rng(0), []   # seed 0: the Trainer's batch generator
    for _ in range(mine["steps"]):
        x, y = batches(draw)
        losses.append(float(as_array(fn(params, state, x, y, mine), "the loss train_step returned")))
    return losses


def shakespeare_tokens():
    """tinyshakespeare as character ids, from the data folder; Fail saying how to fetch it."""
    try:
        path = resolve_dataset("tinyshakespeare", flag="lesson 20's check")
    except UserError as e:
        raise Fail(str(e)) from None
    text = path.read_text(encoding="utf-8")
    return np.array(CharTokenizer.from_text(text).encode(text), dtype=np.int64)


def shakespeare_model(tokens, seed):
    """A float64 DecoderLM for the characters of tinyshakespeare, GPT-2's init from seed."""
    config = lm_config("tiny", int(tokens.max()) + 1, d_ff=4 * SHAKESPEARE["d_model"], dtype="float64",
                       **SHAKESPEARE)
    return build_model(config, np.random.default_rng(seed))


@exercise("20")
@allow(TRAIN_SECONDS)
def train_step(fn, rng):
    model = small_model(rng)                                 # one step, random tokens: no data needed
    V, params = SMALL["vocab_size"], copies(model)
    batch = (rng.integers(0, V, (3, 8)), rng.integers(0, V, (3, 8)))
    mine, theirs = settings(1, beta2=0.999)                 # Adam's default: no bias correction is
    mine["n_heads"] = SMALL["n_heads"]                       # then 0.1 / sqrt(0.001) = 3.2 times off
    got = student_run(fn, params, lambda _: batch, mine)
    want = glassformer_run(model, lambda _: batch, theirs)
    close(got[0], want[0], "the loss of step 1 (the forward and the cross-entropy, before the update)",
          rtol=1e-8)
    for name, (p, _) in model.named_parameters():
        close(params[name], p, f"{name} after step 1 (glassformer's AdamW gives the expected)",
              rtol=1e-7, atol=1e-10)
    tokens = shakespeare_tokens()                            # (b): 50 steps on the real text
    batches = lm_batches(tokens, 8, SHAKESPEARE["max_len"])
    model = shakespeare_model(tokens, seed=1)
    mine, theirs = settings(AGREE_STEPS)
    got = student_run(fn, copies(model), batches, mine)
    want = glassformer_run(model, batches, theirs)
    for step, (a, b) in enumerate(zip(got, want), start=1):
        expect(abs(a - b) <= AGREE_TOL, f"the loss of step {step} on tinyshakespeare is {a:.6f}, "
               f"glassformer's DecoderLM + Trainer gives {b:.6f} from the same weights and batches "
               f"(tolerance {AGREE_TOL:g})")


def losses_of(fn, params, batches, mine):
    """The student's train(params, batches, mine) as an array of one loss per step, or Fail."""
    losses = fn(params, batches, mine)
    expect(isinstance(losses, (list, tuple)) and len(losses) == mine["steps"],
           f"should return a list of {mine['steps']} losses (one per step), got {type(losses).__name__}")
    return as_array(losses, "the losses")


@exercise("20")
@allow(TRAIN_SECONDS)
def train(fn, rng):
    V, mine = SMALL["vocab_size"], settings(2)[0]           # two steps on random tokens first: no data
    mine["n_heads"] = SMALL["n_heads"]
    losses_of(fn, copies(small_model(rng)), lambda: tuple(rng.integers(0, V, (2, 8)) for _ in "xy"), mine)
    tokens = shakespeare_tokens()
    batches, draw = lm_batches(tokens, 16, SHAKESPEARE["max_len"]), np.random.default_rng(2)
    params = copies(shakespeare_model(tokens, seed=3))
    mine, _ = settings(TARGET_STEPS, lr=1e-2, warmup_steps=20, min_lr=1e-3)
    last = float(np.mean(losses_of(fn, params, lambda: batches(draw), mine)[-TARGET_LAST:]))
    expect(last < TARGET_LOSS, f"after {TARGET_STEPS} steps the mean loss of the last {TARGET_LAST} is "
           f"{last:.3f}, not below {TARGET_LOSS} as the lesson states")
