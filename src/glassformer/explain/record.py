"""One recorded pass: every sub-layer's forward (and, on request, backward) seen with its numbers.

The walk-through of train_step_by_step.py (cli/walkthrough.py) prints its stages from a Pass, and
`python -m glassformer.explain` draws its page from one; both see what the model's own layers did,
in the order they did it, without the layers knowing they are watched.
"""
import contextlib
from dataclasses import dataclass


@dataclass
class Call:
    """One sub-layer call seen during the pass: its dotted name, first argument and output.

    For a recorded backward, x is the gradient arriving (dout) and out the one leaving (dx).
    """
    name: str
    x: object
    out: object = None


def named_layers(layer, prefix=""):
    """(dotted name, layer) for every sub-layer under `layer`, depth first, in children() order."""
    for name, child in layer.children().items():
        yield prefix + name, child
        yield from named_layers(child, prefix + name + ".")


def _recorded(name, method, calls):
    """method, appending a Call (in the order the calls start) with what it was given and returned."""
    def recorded(*args, **kwargs):
        call = Call(name, args[0] if args else None)
        calls.append(call)
        call.out = method(*args, **kwargs)
        return call.out
    return recorded


@contextlib.contextmanager
def recording(model, method="forward"):
    """with recording(model) as calls: every sub-layer's `method` ("forward" or "backward") appends a
    Call; unwrapped afterwards. Two recordings of different methods may be nested."""
    calls, wrapped = [], []
    try:
        for name, layer in named_layers(model):
            if any(layer is w for w, _ in wrapped):         # a layer reachable twice: record it once
                continue
            own = layer.__dict__.get(method)                # an instance attribute someone else set
            setattr(layer, method, _recorded(name, getattr(layer, method), calls))
            wrapped.append((layer, own))
        yield calls
    finally:
        for layer, own in wrapped:
            if own is None:
                delattr(layer, method)                      # back to the class's method
            else:
                setattr(layer, method, own)


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
