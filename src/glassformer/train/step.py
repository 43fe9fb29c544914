"""One optimisation step, shared by every training loop: forward, loss, backward, clip, update."""
from ..optim.clipping import clip_grad_norm


def train_step(model, loss_fn, optimizer, micro_batches, n_micro=1, grad_clip=0.0, scaler=None):
    """Zero the grads, run forward + loss + backward on each micro-batch, clip, step the optimizer.

    micro_batches yields (inputs tuple, targets) and is read lazily, so a batch may be drawn from
    the same generator as the dropout masks of the one before; n_micro is how many it yields
    (backward is scaled by 1/n_micro: the summed grads are the mean). grad_clip bounds the global
    norm (0: off); a LossScaler unscales, clips and skips inf/nan steps instead.
    Returns (mean loss as a device scalar, logits of the last micro-batch, pre-clip norm or None).
    """
    optimizer.zero_grad()
    loss_sum, logits = 0.0, None
    for inputs, y in micro_batches:
        logits = model.forward(*inputs)                     # (B, n_classes) or (B, T, V)
        loss_sum = loss_sum + loss_fn.forward(logits, y)    # mean over the counted targets
        model.backward(loss_fn.backward(1.0 / n_micro))     # grads add up across micro-batches
    if scaler is not None:
        return loss_sum / n_micro, logits, scaler.step(optimizer, optimizer.params, grad_clip)
    norm = clip_grad_norm(optimizer.params, grad_clip) if grad_clip > 0 else None
    optimizer.step()
    return loss_sum / n_micro, logits, norm
