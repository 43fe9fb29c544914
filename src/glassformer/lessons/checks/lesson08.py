"""Lesson 8: gradient checking."""
import numpy as np

from ...gradcheck import rel_error as reference_rel_error
from ...layers import GELU
from ..grading import Fail, close, exercise, expect, grad_close, randn


@exercise("08")
def numerical_grad(fn, rng):
    x, w = randn(rng, 2, 3, 4), randn(rng, 2, 3, 4)
    before = x.copy()
    f = lambda: float((np.sin(x) * w).sum() + (x ** 3).sum() / 3)   # noqa: E731
    got = fn(f, x, 1e-5)
    close(x, before, "x after numerical_grad (must be restored)", rtol=0, atol=1e-12)
    grad_close(got, np.cos(x) * w + x ** 2, "numerical_grad of sum(sin(x) w + x^3 / 3)", tol=1e-8)


@exercise("08")
def rel_error(fn, rng):
    a = randn(rng, 5, 3)
    cases = [(a, a + 1e-3 * randn(rng, 5, 3)), (a, a), (np.zeros(4), np.full(4, 1e-9)),
             (np.array([100.0, 0.0]), np.array([99.0, 0.0])), (np.array([0.1]), np.array([-0.1]))]
    for analytic, numeric in cases:
        close(fn(analytic.copy(), numeric.copy()), reference_rel_error(analytic, numeric),
              f"rel_error({np.array2string(analytic[:2], precision=3)}..., "
              f"{np.array2string(numeric[:2], precision=3)}...)")


@exercise("08")
def gradient_check(fn, rng):
    x = randn(rng, 3, 5)
    before = x.copy()
    err = fn(np.tanh, lambda dout: dout * (1 - np.tanh(x) ** 2), x, rng)
    expect(isinstance(err, (float, np.floating)), f"should return a float, got {type(err).__name__}")
    close(x, before, "x after the check (must be unchanged)", rtol=0, atol=1e-12)
    expect(err < 1e-7, f"a correct tanh backward got error {err:.1e}; expected below 1e-7")
    err = fn(np.tanh, lambda dout: 1 - np.tanh(x) ** 2, x, rng)     # ignores dout: right only for ones
    if not err > 1e-3:
        raise Fail(f"a backward that ignores dout got error {err:.1e}: is dout random (not ones)?")
    gelu = GELU()

    def sloppy(dout):                                       # GELU with d(x^3)/dx written as x^2
        t, c = gelu.t, np.sqrt(2 / np.pi)
        return dout * (0.5 * (1 + t) + 0.5 * gelu.x * (1 - t * t) * c * (1 + 0.044715 * gelu.x ** 2))
    x2 = 2 * randn(rng, 4, 3)
    err = fn(gelu.forward, sloppy, x2, rng)
    expect(err > 1e-3, f"a GELU backward with a bug got error {err:.1e}; it should be caught (> 1e-3)")
    err = fn(gelu.forward, gelu.backward, x2, rng)
    expect(err < 1e-7, f"the correct GELU backward got error {err:.1e}; expected below 1e-7")
