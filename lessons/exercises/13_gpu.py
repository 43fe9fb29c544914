"""Lesson 13 exercises: fp16 numbers and dynamic loss scaling (no GPU needed).

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 13
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.
"""
import math

import numpy as np


def fp16_spacing(x):
    """The gap between x and the next larger fp16 number (lesson 13, section 4).

    x: a positive float in fp16's normal range, 2^-14 <= x < 65504. fp16 has 10 fraction bits, so
    between 2^e and 2^(e+1) the numbers are 2^(e - 10) apart. Return that gap as a float, e.g.
    fp16_spacing(1.0) is 2^-10 and fp16_spacing(2048.0) is 2.0.
    """
    raise NotImplementedError


def unscale_grads(grads, scale):
    """Undo the loss scale, and look for overflow (lesson 13, section 6).

    grads: a list of arrays computed from loss * scale. Return (unscaled, found_inf): a new list
    with every gradient divided by scale, and a bool, True when any entry is inf or nan.
    """
    raise NotImplementedError


def loss_scaler_update(scale, good_steps, found_inf, growth_interval=2000, growth_factor=2.0,
                       backoff_factor=0.5):
    """The dynamic loss scale's rule after one step (lesson 13, section 6).

    scale: the current scale; good_steps: finite steps in a row so far; found_inf: this step
    overflowed (it was skipped). On overflow: scale * backoff_factor and good_steps back to 0.
    Otherwise good_steps + 1, and when that reaches growth_interval: scale * growth_factor and
    good_steps back to 0. Return (scale, good_steps).
    """
    raise NotImplementedError
