"""The walk-through of train_step_by_step.py: one real example, stage by stage, with its real numbers.

The model runs forward once, with every sub-layer's forward wrapped so that its input and output are
recorded (Pass); each stage is printed from those records and the layers' own caches, and the loss,
backward and update stages reuse that same pass. So a post-LN and a pre-LN block both show what their
own forward did, in the order it did it. The texts themselves are in cli/stages.py.
"""
import contextlib
import sys
from dataclasses import dataclass

from .. import visualization as viz
from ..backend import to_numpy
from . import stages


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
