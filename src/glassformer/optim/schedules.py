"""Learning-rate schedules: linear warm-up, then cosine decay to a floor."""
import math


def warmup_cosine(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
    """lr at `step` (0-based): linear from 0 over warmup_steps, then cosine from max_lr to min_lr."""
    if warmup_steps and step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))
