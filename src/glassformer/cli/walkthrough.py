"""The walk-through of train_step_by_step.py: one real example, stage by stage, with its real numbers.

The model runs forward once, with every sub-layer's forward wrapped so that its input and output are
recorded (explain/record.py's Pass, which the browser page of python -m glassformer.explain reads
too); each stage is printed from those records and the layers' own caches, and the loss,
backward and update stages reuse that same pass. So a post-LN and a pre-LN block both show what their
own forward did, in the order it did it. The texts themselves are in cli/stages.py.
"""
import sys

from .. import visualization as viz
from ..backend import to_numpy
from ..errors import UserError
from ..explain.record import Call, Pass, named_layers, recording  # noqa: F401  (the recorder's home)
from . import stages


# ---------------------------------------------------------------- whether to walk

SKIPPED = "the walk-through is skipped: stdin is not a terminal (--walk forces it)"


def add_walk_arguments(p):
    """--walk, --no-pause and --no-walk (also spelled --no-interactive): whether the walk runs, and how."""
    p.add_argument("--walk", action="store_true",
                   help="walk through the stages even when stdin is not a terminal (Enter reads stdin)")
    p.add_argument("--no-pause", action="store_true",
                   help="walk through the stages without waiting for Enter (implies --walk; for a script)")
    p.add_argument("--no-walk", "--no-interactive", dest="no_interactive", action="store_true",
                   help="skip the stage-by-stage walk-through (by default it runs when stdin is a terminal)")


def walk_choice(args, stdin, out, alone=True):
    """(walk or not, ask) from --walk/--no-pause/--no-walk and stdin; says so when no terminal skips it.

    alone: False under mpiexec -n N (N > 1), where no rank walks (one cannot own the terminal)."""
    forced = args.walk or args.no_pause
    if forced and args.no_interactive:
        raise UserError("--walk or --no-pause asks for the walk-through and --no-walk skips it: keep one")
    ask = no_pause if args.no_pause else input
    if forced or args.no_interactive or not alone:
        return forced and alone, ask
    if is_terminal(stdin):
        return True, ask
    if not args.resume:                                     # a resumed run has had its walk anyway
        print(SKIPPED, file=out)
    return False, ask


def is_terminal(stream):
    """stream.isatty(), False for a stream without one (None, a closed or replaced stdin)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def no_pause(prompt):
    """The ask() of --no-pause: Enter, at once, at every stage."""
    return ""


# ---------------------------------------------------------------- the walk

def count_stages(model):
    """How many stages walk() prints for this model."""
    return 3 + 4 * len(model.blocks) + 5


def walk(model, ids, targets, vocab, loss_fn, optimizer, ask=input, out=sys.stdout, lr_at=None):
    """Print every stage of one forward, loss, backward and update, pausing; returns the stage names.

    ids (1, T); targets (1,) for a classifier, (1, T) for an LM. ask() returning "q" (or raising
    EOFError) skips to training. lr_at(step) is the learning-rate schedule (None: the optimizer's lr
    is the step's). Lines fit the terminal (stages.terminal_width). The model and optimizer are
    restored after, so the run is unchanged.
    """
    shades, masked = viz.shade_chars(out)
    look = stages.Look(stages.terminal_width(), shades, masked, stages.unit_of(vocab))
    texts = _stages(model, ids, targets, vocab, loss_fn, optimizer, look, lr_at)
    total, shown = count_stages(model), []
    try:
        for k, (name, text) in enumerate(texts, 1):
            print(f"\n=== stage {k}/{total}: {name} ===", file=out)
            print(stages.fit(text, look.width), file=out)
            shown.append(name)
            if _wants_to_quit(ask, k == total):
                print("skipping the rest of the walk-through: on to training.", file=out)
                break
    finally:
        texts.close()                                       # runs the restore in _stages
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


def _stages(model, ids, targets, vocab, loss_fn, optimizer, look, lr_at):
    """Generator of (stage name, text), all read from one recorded forward pass of the model."""
    lm = model.config.kind == "decoder_lm"
    tokens = [vocab[i] for i in to_numpy(ids[0])]
    snapshot = _snapshot(model, optimizer)
    model.eval()                                            # dropout off: one deterministic pass
    try:
        run = Pass(model, ids)                              # the one forward; caches for backward
        yield "tokens", stages.tokens_text(tokens, ids, targets, vocab, lm, look)
        yield "embeddings", stages.embedding_text(model, tokens, run["tok_emb"].out, look)
        yield "positions", stages.positions_text(model, tokens, run["pos"].out, look)
        for i, block in enumerate(model.blocks):
            v = run.block(i)
            yield f"block {i} attention", stages.attention_text(block, v["attn"], tokens, look, v["pre"])
            yield f"block {i} add & norm", stages.norm_text(v["r1"], v["x1"], tokens, not v["normed1"],
                                                            "attention", "ln1", look)
            yield f"block {i} feed-forward", stages.ffn_text(block, v, look)
            yield (f"block {i} add & norm (after the FFN)",
                   stages.norm_text(v["r2"], v["x2"], tokens, not v["normed2"], "FFN", "ln2", look))
        if lm:
            yield "LM head", stages.lm_head_text(model, run.logits, tokens, vocab, look)
        else:
            yield "pooling + classifier head", stages.pool_head_text(model, run, tokens, look)
        yield "softmax", stages.softmax_text(run.logits, targets, tokens, vocab, lm, look)
        yield "loss", stages.loss_text(loss_fn, run.logits, targets, lm)
        yield "backward", stages.backward_text(model, loss_fn, optimizer, look)
        yield "optimizer update", stages.update_text(model, optimizer, lr_at, look)
    finally:
        _restore(model, optimizer, snapshot)
