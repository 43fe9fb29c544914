# ==================================================================================================
# SPOILER: the solutions of lesson 9's exercises (lessons/09-training-loop.md).
# Write your own in lessons/exercises/09_training_loop.py first, and check them with
#     python -m glassformer.lessons check 09
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 9 exercises: optimizer steps, clipping and the learning-rate schedule."""
import math

import numpy as np


def sgd_momentum_step(p, g, velocity, lr, momentum):
    """One step of SGD with momentum (lesson 9, section 2).

    p, g, velocity: arrays of one shape. velocity = momentum * velocity + g, then p = p - lr * velocity.
    Return new arrays (p, velocity); do not modify the arguments.
    """
    velocity = momentum * velocity + g
    return p - lr * velocity, velocity


def adamw_step(p, g, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """One AdamW step (lesson 9, sections 3 and 4).

    p, g, m, v: arrays of one shape (m, v the moments, zeros before the first step); t: this step's
    number, 1 for the first. Start from what each part is for: m and v are running averages of g and
    g^2 (rates b1, b2), started at 0, so after t steps their weights add up to 1 - b^t, not 1: correct
    for that. The decay is decoupled: it shrinks p itself by the factor (1 - lr * weight_decay), first,
    and never goes through m or v. The step divides the corrected m by sqrt of the corrected v (+ eps).
    Return new arrays (p, m, v); do not modify the arguments.
    """
    b1, b2 = betas
    p = p * (1 - lr * weight_decay)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def clip_grad_norm(grads, max_norm):
    """Clip a list of gradients to a global L2 norm (lesson 9, section 6).

    grads: a list of arrays. The global norm is sqrt of the sum of every entry squared, over all the
    arrays. Scale every gradient by min(1, max_norm / (norm + 1e-6)). Return (clipped, norm): a new
    list of arrays, and the norm before clipping as a float.
    """
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
    scale = min(1.0, max_norm / (norm + 1e-6))
    return [g * scale for g in grads], norm


def warmup_cosine(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
    """The learning rate at a 0-based step (lesson 9, section 5).

    Linear warm-up: max_lr * (step + 1) / warmup_steps while step < warmup_steps. Then cosine decay,
    min_lr + 0.5 (max_lr - min_lr) (1 + cos(pi * progress)) with
    progress = (step - warmup_steps) / (total_steps - warmup_steps), and min_lr from total_steps on.
    Return a float.
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))
