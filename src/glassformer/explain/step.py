"""One real training step, recorded: the forward pass, the backward pass stage by stage, the update.

record_step runs the model's own forward, loss, backward and optimizer arithmetic on one example
(dropout off, so the numbers are reproducible) and returns the page's stages; the model and the
optimizer are restored afterwards, so a training run that asks for the page is unchanged.
"""
import contextlib
import math

import numpy as np

from ..backend import to_numpy
from ..layers.dropout import Dropout
from ..layers.loss import cross_entropy_backward
from ..optim.optimizers import adam_step
from .code import ref
from .forward import forward_stages, host
from .island import Encoder
from .record import Pass, named_layers, recording


@contextlib.contextmanager
def preserved(model, optimizer, restore=True):
    """with preserved(model, optimizer): changes to the weights, moments, step count and mode undone
    (restore=False: a model used for nothing else, kept without the copies)."""
    if not restore:
        yield
        return
    state = optimizer.state_dict()
    saved = ({k: p.copy() for k, p in model.state_dict().items()}, state["t"], state["lr"],
             {k: a.copy() for k, a in state["arrays"].items()}, model.training)
    try:
        yield
    finally:
        params, t, lr, arrays, training = saved
        model.load_state_dict(params)
        optimizer.load_state_dict({"t": t, "lr": lr, "arrays": arrays})
        model.zero_grad()
        model.train(training)


def backward_stages(model, dlogits, calls):
    """The gradient arriving at each layer, in the order backward ran (dropout, off, left out)."""
    layers = dict(named_layers(model))
    yield {"id": "backward-loss", "title": "Backward: the loss's gradient", "phase": "backward",
           "formula": "&part;loss/&part;z = (softmax(z) &minus; onehot(target)) / N",
           "code": [ref(cross_entropy_backward)], "tensors": {"dloss/dz": rows(dlogits)},
           "axes": {"dloss/dz": ("token", "vocabulary id")}, "scalars": {}, "note": None}
    for call in calls:
        layer = layers[call.name]
        if isinstance(layer, Dropout) or layer.children():  # off; a container: its layers show it
            continue
        tensors = {"gradient arriving (dloss/d output)": rows(call.x)}
        leaving = {} if call.out is None else {"|gradient leaving| (dloss/d input)": float(
            np.linalg.norm(to_numpy(call.out).astype(np.float64)))}
        yield {"id": "backward-" + call.name.replace(".", "-"), "title": f"Backward: {call.name}",
               "phase": "backward", "formula": f"dloss/d input = {type(layer).__name__}.backward("
               "dloss/d output), the chain rule through this layer", "code": [ref(type(layer).backward)],
               "tensors": tensors, "axes": {n: ("token", "dim") for n in tensors}, "scalars": leaving,
               "note": None}


def rows(a):
    """The example's gradient as (tokens, features) or one row: (1, T, C) -> (T, C), (1, K) -> (1, K)."""
    h = host(a)
    return h[None] if h.ndim == 1 else h


def row_blocks(p, most=1 << 20):
    """Slices of p's first axis holding at most `most` numbers each (one slice for a 0-d or small p):
    adam_step is element-wise, so a 124M-parameter model's embedding steps in blocks, not whole."""
    if p.ndim == 0 or p.size <= most:
        return [Ellipsis]
    n = max(1, most // max(1, p.size // p.shape[0]))
    return [slice(i, i + n) for i in range(0, p.shape[0], n)]


def update_stages(model, optimizer, lr):
    """The optimizer's own arithmetic (adam_step), one parameter tensor at a time, with its numbers."""
    names = [n for n, _ in model.named_parameters()]
    b1, b2, eps, decoupled = optimizer.beta1, optimizer.beta2, optimizer.eps, optimizer.decoupled
    t0 = optimizer.t
    t = t0 + 1
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    for k, (p, g) in enumerate(optimizer.params):
        wd = optimizer.weight_decay if optimizer.decay[k] else 0.0
        before = np.array(to_numpy(p))
        for rows_ in row_blocks(p):                         # element-wise: the same numbers, less memory
            adam_step([(p[rows_], g[rows_])], [optimizer.m[k][rows_]], [optimizer.v[k][rows_]], t0,
                      (lr, b1, b2, eps, decoupled, [wd]))
        step = np.array(to_numpy(p)) - before
        ratio = float(np.linalg.norm(step) / max(np.linalg.norm(before), 1e-30))
        del before
        yield {"id": "update-" + names[k].replace(".", "-"), "title": f"Update: {names[k]}",
               "phase": "update", "code": [ref(adam_step)], "axes": {}, "note": None,
               "formula": adam_formula(decoupled, wd),
               "tensors": {"gradient g": to_numpy(g), "m (first moment)": to_numpy(optimizer.m[k]),
                           "v (second moment)": to_numpy(optimizer.v[k]), "step (after - before)": step},
               "derived": {"m (first moment)": ("scale", [g], 1 - b1),     # the first step's moments
                           "v (second moment)": ("scale_square", [g], 1 - b2)},   # (from 0), if so
               "scalars": {"t": t, "lr": lr, "beta1": b1, "beta2": b2, "eps": eps,
                           "1 - beta1^t": c1, "1 - beta2^t": c2, "weight decay": wd,
                           "|step| / |weight|": ratio}}
    optimizer.t = t


def adam_formula(decoupled, wd):
    """The update of one tensor, in plain HTML."""
    text = ("m = &beta;<sub>1</sub> m + (1 &minus; &beta;<sub>1</sub>) g; &nbsp; v = &beta;<sub>2</sub> v + "
            "(1 &minus; &beta;<sub>2</sub>) g<sup>2</sup>; &nbsp; m&#770; = m / (1 &minus; &beta;<sub>1</sub>"
            "<sup>t</sup>), v&#770; = v / (1 &minus; &beta;<sub>2</sub><sup>t</sup>); &nbsp; "
            "w = w &minus; lr &middot; m&#770; / (&radic;v&#770; + &epsilon;)")
    if wd and decoupled:
        text += " &nbsp; after w = w (1 &minus; lr &middot; wd) (AdamW's decoupled decay)"
    elif wd:
        text += " &nbsp; with g = g + wd &middot; w first (Adam's L2 decay)"
    return text


def record_step(model, ids, targets, loss_fn, optimizer, lr=None, restore=True):
    """(stages, facts) of one training step on ids (1, T) -> targets; the model and optimizer restored
    unless restore=False. facts: {"loss", "logits" (host array), "lr"}; lr None: the optimizer's own."""
    lr = optimizer.lr if lr is None else lr
    with preserved(model, optimizer, restore):
        model.eval()                                        # dropout off: one deterministic pass
        optimizer.zero_grad()
        run = Pass(model, ids)
        run.layers = dict(named_layers(model))
        loss = float(to_numpy(loss_fn.forward(run.logits, targets)))
        log_probs, t = to_numpy(loss_fn.cache[0]), to_numpy(loss_fn.cache[1])
        counted = to_numpy(loss_fn.cache[2])
        per_token = -log_probs[np.arange(len(t)), t] * counted   # (N,): -log p[target], 0 if ignored
        encode = Encoder().stage                            # one table: each array stored once
        stages = [encode(s) for s in forward_stages(model, run, run.logits, targets, loss, per_token)]
        with recording(model, "backward") as calls:
            dlogits = loss_fn.backward()
            model.backward(dlogits)
        stages += [encode(s) for s in backward_stages(model, dlogits, calls)]
        del calls
        stages += [encode(s) for s in update_stages(model, optimizer, lr)]   # each encoded at once:
        return stages, {"loss": loss if math.isfinite(loss) else None,             # its arrays change next
                        "logits": host(run.logits), "lr": lr}
