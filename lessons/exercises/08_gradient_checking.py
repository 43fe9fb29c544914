"""Lesson 8 exercises: central differences, the relative error, and a whole gradient check.

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 08
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.
"""
import numpy as np


def numerical_grad(f, x, h=1e-5):
    """df/dx by central differences (lesson 8, section 1).

    f: a function of no arguments returning a float, that reads the array x; x: a float64 array.
    For every entry of x: set it to old + h, call f; set it to old - h, call f; put old back; the
    derivative is (f_plus - f_minus) / (2 h). Change x in place (f reads it), and leave it exactly
    as it was. Return an array shaped like x.
    """
    raise NotImplementedError


def rel_error(analytic, numeric):
    """The relative error of two gradients of one tensor (lesson 8, section 2).

    Return max|analytic - numeric| / max(max|analytic|, max|numeric|, 1e-3) as a float: relative
    to the tensor's largest gradient, with a floor so that gradients that are 0 in theory pass on
    rounding noise.
    """
    raise NotImplementedError


def gradient_check(forward, backward, x, rng, h=1e-5):
    """Check a backward against finite differences (lesson 8, sections 4 and 6).

    forward(x) returns an array y; backward(dout) returns dx for the last forward; x: float64.
    Draw a random dout shaped like y (with rng.standard_normal: never ones, see section 6), get the
    analytic dx = backward(dout) right after a forward(x), the numerical gradient of
    sum(forward(x) * dout) with respect to x, and return their rel_error (a float). Leave x unchanged.
    """
    raise NotImplementedError
