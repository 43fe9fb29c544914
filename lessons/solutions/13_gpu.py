# ==================================================================================================
# SPOILER: the solutions of lesson 13's exercises (lessons/13-gpu.md).
# Write your own in lessons/exercises/13_gpu.py first, and check them with
#     python -m glassformer.lessons check 13
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 13 exercises: fp16 numbers and dynamic loss scaling (no GPU needed)."""
import math

import numpy as np


def fp16_spacing(x):
    """The gap between x and the next larger fp16 number (lesson 13, section 4).

    x: a positive float in fp16's normal range, 2^-14 <= x < 65504. fp16 has 10 fraction bits, so
    between 2^e and 2^(e+1) the numbers are 2^(e - 10) apart. Return that gap as a float, e.g.
    fp16_spacing(1.0) is 2^-10 and fp16_spacing(2048.0) is 2.0.
    """
    return 2.0 ** (math.floor(math.log2(x)) - 10)


def unscale_grads(grads, scale):
    """Undo the loss scale, and look for overflow (lesson 13, section 6).

    grads: a list of arrays computed from loss * scale. Return (unscaled, found_inf): a new list
    with every gradient divided by scale, and a bool, True when any entry is inf or nan.
    """
    unscaled = [g / scale for g in grads]
    return unscaled, not all(np.isfinite(g).all() for g in grads)


def loss_scaler_update(scale, good_steps, found_inf, growth_interval=2000, growth_factor=2.0,
                       backoff_factor=0.5):
    """The dynamic loss scale's rule after one step (lesson 13, section 6).

    scale: the current scale; good_steps: finite steps in a row so far; found_inf: this step
    overflowed (it was skipped). On overflow: scale * backoff_factor and good_steps back to 0.
    Otherwise good_steps + 1, and when that reaches growth_interval: scale * growth_factor and
    good_steps back to 0. Return (scale, good_steps).
    """
    if found_inf:
        return scale * backoff_factor, 0
    good_steps += 1
    if good_steps >= growth_interval:
        return scale * growth_factor, 0
    return scale, good_steps
