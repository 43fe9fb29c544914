"""Training loops: one epoch of mini-batch updates (classifier or next-token), and evaluation."""
import math

import numpy as np

from ..backend import array_module, to_numpy
from .step import Diverged, DivergenceGuard, all_finite, check_finite, quiet, train_step


def train_epoch(model, loss_fn, optimizer, ids, targets, batch_size, rng, on_batch=None, pad=None):
    """One pass over shuffled mini-batches; returns (mean loss, accuracy) over the counted targets.

    targets are (N,) classes for a classifier or (N, T) next tokens for a language model; targets
    equal to `pad` are not counted (the loss must ignore them too: CrossEntropyLoss(ignore_index=pad)).
    ids and targets live on the model's device; on_batch(i, n_batches, loss) runs after each update.
    A NaN or inf loss, or weights, raise Diverged (a UserError) naming the optimizer step.
    """
    xp = array_module(ids)
    N = len(ids)
    order = xp.asarray(rng.permutation(N))
    n_batches = (N + batch_size - 1) // batch_size
    counted = xp.ones(targets.shape, dtype=bool) if pad is None else targets != pad
    total_loss = xp.zeros((), dtype=xp.float64)
    correct = xp.zeros((), dtype=xp.int64)
    guard, step0 = DivergenceGuard(), getattr(optimizer, "t", 0)
    model.train()
    for i in range(n_batches):
        idx = order[i * batch_size:(i + 1) * batch_size]
        x, y, real = ids[idx], targets[idx], counted[idx]
        loss, logits, _ = train_step(model, loss_fn, optimizer, [((x,), y)])
        guard.update(step0 + i + 1, loss)                   # a NaN/inf loss: Diverged
        total_loss += loss * real.sum()                     # stays on the device: no sync
        correct += ((logits.argmax(axis=-1) == y) & real).sum()
        if on_batch is not None:
            on_batch(i, n_batches, loss)
    guard.check()
    if not all_finite(model):                               # the last update overflowed
        raise Diverged(step0 + n_batches, "an update made the weights NaN or inf")
    n = max(int(counted.sum()), 1)
    return float(total_loss) / n, float(correct) / n


def predict(model, ids, batch_size=512):
    """Class probabilities (N, n_classes) in eval mode, batch by batch."""
    from ..layers.activations import softmax
    model.eval()
    with quiet():                                           # a diverged model: Diverged says so
        out = [softmax(model.forward(ids[i:i + batch_size])) for i in range(0, len(ids), batch_size)]
    return array_module(ids).concatenate(out)


def evaluate(model, loss_fn, ids, targets, batch_size=512):
    """(mean loss, accuracy, predicted classes as a NumPy array) on a whole split, in eval mode;
    Diverged when the loss is NaN or inf."""
    xp = array_module(ids)
    probs = predict(model, ids, batch_size)
    loss = float(-xp.log(probs[xp.arange(len(targets)), targets] + 1e-12).mean())
    check_finite(None, validation_loss=loss)                # a NaN model is never "best"
    preds = probs.argmax(axis=-1)
    return loss, float((preds == targets).mean()), to_numpy(preds)


def accuracy_by_group(preds, targets, groups, names):
    """{name: accuracy} over the examples of each group (e.g. per digit operation)."""
    preds, targets, groups = map(np.asarray, (preds, targets, groups))
    return {name: float((preds[groups == g] == targets[groups == g]).mean())
            for g, name in enumerate(names) if (groups == g).any()}


def evaluate_lm(model, loss_fn, ids, targets, pad=0):
    """(mean loss, next-token accuracy) over the non-pad targets, in eval mode, one batch."""
    model.eval()
    with quiet():
        logits = model.forward(ids)                         # (N, T, V)
        loss = float(loss_fn.forward(logits, targets))
    check_finite(None, validation_loss=loss)
    real = targets != pad
    acc = float(((logits.argmax(axis=-1) == targets) & real).sum()) / max(int(real.sum()), 1)
    return loss, acc


def perplexity(loss):
    """exp(mean cross-entropy in nats): the effective number of equally likely next tokens."""
    return math.exp(min(loss, 700.0))


def estimate_loss(model, loss_fn, batches, n_batches, rng):
    """Mean loss over n_batches batches in eval mode (no dropout); one host sync at the end."""
    was_training = model.training
    model.eval()
    xp = array_module(model.get_parameters()[0][0])
    total = 0.0
    try:
        for _ in range(n_batches):
            x, y = batches(rng)
            total = total + loss_fn.forward(model.forward(xp.asarray(x)), xp.asarray(y))
    finally:
        model.train(was_training)
    return float(total) / n_batches
