"""What a check is made of: the registry it joins, the Fail it raises, and the comparisons it uses.

A check is a function (student_function, rng) -> None that raises Fail(reason) when the answer is
wrong; anything else the student's code raises is caught by the runner and reported there.
"""
import numpy as np

from ..gradcheck import numerical_grad

CHECKS = {}                 # {"07": {"attend_backward": check}}, in the order the lesson teaches them


class Fail(Exception):
    """A wrong answer; the message says what differs (what, where, by how much)."""


def exercise(lesson, name=None):
    """Register a check for the function `name` (default: the check's own name) of lesson NN."""
    def register(check):
        CHECKS.setdefault(lesson, {})[name or check.__name__] = check
        return check
    return register


def expect(condition, reason):
    """Fail(reason) unless condition holds."""
    if not condition:
        raise Fail(reason)


def as_array(value, what):
    """value as a float64 array, or Fail saying what came back instead."""
    if value is None:
        raise Fail(f"{what} is None: did the function forget to `return`?")
    try:
        out = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise Fail(f"{what} should be an array of numbers, got {type(value).__name__}") from None
    return out


def unpack(result, names):
    """A returned tuple of len(names) values, or Fail naming what was expected."""
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        got = f"a {type(result).__name__} of {len(result)}" if isinstance(result, (tuple, list)) \
            else f"one {type(result).__name__}"
        raise Fail(f"should return a tuple ({', '.join(names)}), got {got}")
    return result


def close(got, want, what, rtol=1e-6, atol=1e-8, hints=()):
    """Fail unless got matches want (same shape, every entry within atol + rtol |want|).

    hints: (slip, text) pairs, a classic mistake's value and what to say when got matches it."""
    got, want = as_array(got, what), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise Fail(f"{what} has shape {got.shape}, expected {want.shape}" + hint_lines(got, want, hints))
    bad = ~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=False)
    if bad.any():
        raise Fail(wrong_entry(got, want, bad, what, rtol, atol) + hint_lines(got, want, hints))


def wrong_entry(got, want, bad, what, rtol, atol):
    """'WHAT is wrong at index I: got G, expected W (...)' for the worst of the differing entries.

    Where the two print the same at 6 digits, more digits and the relative error are shown too."""
    with np.errstate(all="ignore"):
        excess = np.where(bad, np.abs(got - want) / (atol + rtol * np.abs(want)), -1.0)
    flat = int(np.nanargmax(np.where(np.isnan(excess), np.inf, excess)))
    idx = tuple(int(i) for i in np.unravel_index(flat, got.shape))
    g, w = got[idx], want[idx]
    where = f" at index {idx}" if idx else ""
    count = f"{int(bad.sum())} of {bad.size} entries differ" + (", the worst shown" if bad.sum() > 1 else "")
    if f"{g:.6g}" != f"{w:.6g}":
        return f"{what} is wrong{where}: got {g:.6g}, expected {w:.6g} ({count})"
    rel = abs(g - w) / max(abs(w), 1e-300)
    return (f"{what} is wrong{where}: got {g:.12g}, expected {w:.12g}, which print the same at 6 digits: "
            f"relative error {rel:.1e}, tolerance {rtol:g} ({count})")


def hint_lines(got, want, hints):
    """A 'hint:' line for each classic slip that got matches (a transpose is always looked for)."""
    found = [text for slip, text in hints if matches(got, slip)]
    if not found and got.ndim >= 2 and got.shape != want.shape and matches(got.swapaxes(-1, -2), want):
        found.append("this is the expected value transposed: a transpose missing or one too many")
    return "".join(f"\n        hint: {text}" for text in found)


def matches(got, slip):
    """True when got equals the slip's value (same shape, every entry close)."""
    slip = np.asarray(slip, dtype=np.float64)
    return got.shape == slip.shape and bool(np.allclose(got, slip, rtol=1e-6, atol=1e-10))


def same(got, want, what):
    """Fail unless got equals want exactly (ints, bools, lists, tuples)."""
    if isinstance(want, np.ndarray):
        if got is None:
            raise Fail(f"{what} is None: did the function forget to `return`?")
        got = np.asarray(got)
        if got.shape != want.shape:
            raise Fail(f"{what} has shape {got.shape}, expected {want.shape}")
        if not np.array_equal(got, want):
            show = lambda a, label: label + np.array2string(a, threshold=60, prefix=label)  # noqa: E731
            raise Fail(f"{what} is wrong:\n{show(want, '        expected ')}\n{show(got, '        got      ')}")
        return
    if got != want:
        raise Fail(f"{what}: got {got!r:.200}, expected {want!r:.200}")


def numeric_vjp(f, inputs, dout):
    """{name: d sum(f() * dout) / d inputs[name]} by central differences (inputs perturbed in place)."""
    loss = lambda: float((np.asarray(f(), dtype=np.float64) * dout).sum())   # noqa: E731
    return {name: numerical_grad(loss, x, h=1e-6) for name, x in inputs.items()}


def grad_close(got, numeric, what, tol=1e-6, hints=()):
    """Fail unless an analytic gradient matches central differences (CS231n's max relative error)."""
    got = as_array(got, what)
    if got.shape != numeric.shape:
        raise Fail(f"{what} has shape {got.shape}, expected {numeric.shape}" + hint_lines(got, numeric, hints))
    scale = max(np.abs(got).max(initial=0.0), np.abs(numeric).max(initial=0.0), 1e-3)
    err = float(np.abs(got - numeric).max(initial=0.0) / scale)
    if not err <= tol:
        idx = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(got - numeric)), got.shape))
        raise Fail(f"{what} disagrees with finite differences: relative error {err:.1e} "
                   f"(tolerance {tol:g}); worst at {idx}: yours {got[idx]:.6g}, "
                   f"numerical {numeric[idx]:.6g}" + hint_lines(got, numeric, hints))


def randn(rng, *shape):
    """A float64 standard-normal array."""
    return rng.standard_normal(shape)
