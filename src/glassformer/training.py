"""Training loops: one epoch of mini-batch updates for a classifier, and evaluation."""
import numpy as np

from .backend import array_module, to_numpy


def train_epoch(model, loss_fn, optimizer, ids, targets, batch_size, rng, on_batch=None):
    """One pass over shuffled mini-batches; returns (mean loss, accuracy) over the epoch.

    ids (N, T) and targets (N,) live on the model's device; on_batch(i, n_batches, loss) is
    called after each update (for progress lines).
    """
    xp = array_module(ids)
    N = len(ids)
    order = xp.asarray(rng.permutation(N))
    n_batches = (N + batch_size - 1) // batch_size
    total_loss = xp.zeros((), dtype=xp.float64)
    correct = xp.zeros((), dtype=xp.int64)
    model.train()
    for i in range(n_batches):
        idx = order[i * batch_size:(i + 1) * batch_size]
        x, y = ids[idx], targets[idx]
        optimizer.zero_grad()
        logits = model.forward(x)                           # (B, n_classes)
        loss = loss_fn.forward(logits, y)
        model.backward(loss_fn.backward())
        optimizer.step()
        total_loss += loss * len(idx)                       # stays on the device: no sync
        correct += (logits.argmax(axis=-1) == y).sum()
        if on_batch is not None:
            on_batch(i, n_batches, loss)
    return float(total_loss) / N, float(correct) / N


def predict(model, ids, batch_size=512):
    """Class probabilities (N, n_classes) in eval mode, batch by batch."""
    from .layers.activations import softmax
    model.eval()
    out = [softmax(model.forward(ids[i:i + batch_size])) for i in range(0, len(ids), batch_size)]
    return array_module(ids).concatenate(out)


def evaluate(model, loss_fn, ids, targets, batch_size=512):
    """(mean loss, accuracy, predicted classes as a NumPy array) on a whole split, in eval mode."""
    xp = array_module(ids)
    probs = predict(model, ids, batch_size)
    loss = -xp.log(probs[xp.arange(len(targets)), targets] + 1e-12).mean()
    preds = probs.argmax(axis=-1)
    return float(loss), float((preds == targets).mean()), to_numpy(preds)


def accuracy_by_group(preds, targets, groups, names):
    """{name: accuracy} over the examples of each group (e.g. per digit operation)."""
    preds, targets, groups = map(np.asarray, (preds, targets, groups))
    return {name: float((preds[groups == g] == targets[groups == g]).mean())
            for g, name in enumerate(names) if (groups == g).any()}
