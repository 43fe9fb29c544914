"""The checker teaches (issue 28, section 5): a near miss shows its relative error and where, and each classic
slip the checks catch is named in a `hint:` line. Each slip is planted into the kept solutions."""
import re
import types
from pathlib import Path

import numpy as np
import pytest

from glassformer.lessons.grading import Fail, close
from glassformer.lessons.runner import LESSONS, load_file, run_check
from test_exercises import adam_with_l2, adamw_without_bias_correction   # the planted slips, once

SOLUTIONS = Path(__file__).resolve().parents[2] / "lessons" / "solutions"


def reason_with(lesson, name, fn):
    """The checker's reason for exercise `name` of `lesson` answered by fn (the rest: the solutions)."""
    module, error = load_file(SOLUTIONS / f"{LESSONS[lesson]}.py")
    assert module is not None, error
    namespace = types.SimpleNamespace(**vars(module))
    setattr(namespace, name, fn)
    _, passed, reason = run_check(lesson, name, lambda: namespace)
    assert not passed, f"the planted slip in {name} passed"
    return reason


# ---- the near miss ----------------------------------------------------------------------------------------

def test_values_that_print_the_same_show_the_relative_error_and_the_worst_index():
    want = np.array([[0.5, -0.43248], [1.0, 2.0]])
    got = want * np.array([[1 + 3e-7, 1 + 6e-8], [1.0, 1.0]])
    with pytest.raises(Fail) as e:
        close(got, want, "x", rtol=1e-8)
    text = str(e.value)
    assert "at index (0, 0)" in text and "print the same" in text and "relative error 3.0e-07" in text, text
    assert "got 0.50000015, expected 0.5," in text, text     # enough digits to see the difference


def layer_norm_without_eps(x, gamma, beta, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True)) * gamma + beta


def test_layer_norm_without_eps_reports_its_worst_entry():
    """Not the first differing entry (it printed `got 1.0651, expected 1.06511`), but the worst one, where
    the missing eps shows: an entry near 0, already at the 4th significant digit."""
    reason = reason_with("03", "layer_norm_forward", layer_norm_without_eps)
    got, expected = re.search(r"got (\S+), expected (\S+?),? ", reason).groups()
    assert "at index (0, 1, 2)" in reason and "the worst shown" in reason, reason
    assert got != expected, reason


# ---- the slips --------------------------------------------------------------------------------------------

def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attention_without_scale(q, k, v, allowed=None):
    s = q @ k.swapaxes(-1, -2)                              # forgets / sqrt(D)
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    att = softmax(s)
    return att @ v, att


def attend_backward_without_scale(dy, q, k, v, att):
    datt = dy @ v.swapaxes(-1, -2)
    dscores = att * (datt - (datt * att).sum(-1, keepdims=True))     # forgets / sqrt(D)
    return dscores @ k, dscores.swapaxes(-1, -2) @ q, att.swapaxes(-1, -2) @ dy


def ce_grad(logits, targets, ignore_index, divide_by):
    keep = np.ones(len(targets), bool) if ignore_index is None else targets != ignore_index
    p = softmax(logits)
    p[np.arange(len(targets)), np.where(keep, targets, 0)] -= 1
    return p * keep[:, None] / {"nothing": 1, "all": len(targets), "count": keep.sum()}[divide_by]


def cross_entropy_sum(logits, targets, ignore_index=None):
    keep = np.ones(len(targets), bool) if ignore_index is None else targets != ignore_index
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-(logp[np.arange(len(targets)), np.where(keep, targets, 0)] * keep).sum())   # no / count


def linear_backward_dx_without_transpose(x, W, dout):
    C = x.shape[-1]
    return dout @ W, x.reshape(-1, C).T @ dout.reshape(-1, W.shape[1]), dout.reshape(-1, W.shape[1]).sum(0)


def linear_backward_dw_transposed(x, W, dout):
    C = x.shape[-1]
    d2 = dout.reshape(-1, W.shape[1])
    return dout @ W.T, d2.T @ x.reshape(-1, C), d2.sum(0)


SLIPS = [
    ("09", "adamw_step", adamw_without_bias_correction, "hint: this is the step without bias correction"),
    ("02", "attention_forward", attention_without_scale, "hint: the scores look unscaled"),
    ("07", "attend_backward", attend_backward_without_scale, "hint: the 1/sqrt(D) of the scores is missing"),
    ("06", "cross_entropy_grad", lambda z, t, i=None: ce_grad(z, t, i, "nothing"),
     "hint: the gradient is not divided by the count"),
    ("06", "cross_entropy_grad", lambda z, t, i=None: ce_grad(z, t, i, "all"),
     "hint: the gradient is divided by all 6 rows"),
    ("06", "cross_entropy", cross_entropy_sum, "hint: the loss is not divided by the count"),
    ("07", "linear_backward", linear_backward_dx_without_transpose, "is a transpose missing?"),
    ("07", "linear_backward", linear_backward_dw_transposed, "hint: this is the expected value transposed"),
]


@pytest.mark.parametrize("lesson, name, slip, hint", SLIPS, ids=[f"{s[1]}-{i}" for i, s in enumerate(SLIPS)])
def test_a_classic_slip_gets_its_hint(lesson, name, slip, hint):
    reason = reason_with(lesson, name, slip)
    assert hint in reason, reason


def test_linear_backward_on_a_square_w_names_the_missing_transpose():
    """A square W keeps dout @ W the right shape: the value itself is recognised."""
    from glassformer.lessons.checks.lesson07 import linear_backward

    def solution_then_slip(x, W, dout):
        return linear_backward_dx_without_transpose(x, W, dout) if W.shape[0] == W.shape[1] else \
            (dout @ W.T, x.reshape(-1, x.shape[-1]).T @ dout.reshape(-1, W.shape[1]), dout.reshape(-1, W.shape[1]).sum(0))
    with pytest.raises(Fail, match="hint: a transpose is missing"):
        linear_backward(solution_then_slip, np.random.default_rng(0))


def test_another_mistake_gets_no_wrong_hint():
    reason = reason_with("09", "adamw_step", adam_with_l2)
    assert "hint" not in reason, reason
