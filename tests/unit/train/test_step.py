"""The reference step (train/step.py): zero_grad, forward, loss and backward per micro-batch, clip, step;
and the wrapped step that reduces between the backward passes and the update."""
import pytest

from unit.train.test_trainer import make_trainer


def test_a_one_process_fp32_trainer_runs_the_plain_step_with_no_wrappers():
    """The reference step itself, nothing around it; fp16 composes the scaler's update instead."""
    from glassformer import precision
    from glassformer.train.step import WrappedStep, train_step
    tr = make_trainer()
    assert tr.step_fn is train_step and tr.wrappers == []
    with precision.policy("fp16"):
        tr16 = make_trainer()
    assert isinstance(tr16.step_fn, WrappedStep) and tr16.step_fn.update == tr16.scaler.step
    assert tr16.step_fn.reduce is None and tr16.wrappers == []


class Recorder:
    """A model, loss and optimizer in one that writes down the calls a step makes."""

    def __init__(self):
        self.calls, self.pairs = [], []

    def __getattr__(self, name):
        return lambda *args: self.calls.append(name) or 1.0


def test_train_step_is_zero_grad_forward_loss_backward_clip_step_and_nothing_else(monkeypatch):
    """The four calls in order, and no rank: the step never asks who its ranks are."""
    from glassformer.train import parallel, step
    monkeypatch.setattr(parallel.Communicator, "allreduce_mean",
                        lambda *a: pytest.fail("train_step all-reduced"))
    r = Recorder()
    loss, _, norm = step.train_step(r, r, r, [((1,), 2), ((3,), 4)], grad_accum=2)
    assert r.calls == ["zero_grad"] + ["forward", "forward", "backward", "backward"] * 2 + ["step"]
    assert loss == 1.0 and norm is None


def test_a_wrapped_step_reduces_between_backward_and_the_update():
    """WrappedStep: reduce(pairs, loss_sum) after the last backward, then update in place of clip
    and step; the reduced loss is the one returned."""
    from glassformer.train.step import WrappedStep
    r = Recorder()
    reduce = lambda pairs, loss: r.calls.append("reduce") or 10 * loss    # noqa: E731
    update = lambda opt, clip: r.calls.append(f"update {clip}") or "norm"  # noqa: E731
    loss, _, norm = WrappedStep(reduce, update)(r, r, r, [((1,), 2)], 1, 0.5)
    assert r.calls == ["zero_grad", "forward", "forward", "backward", "backward", "reduce",
                       "update 0.5"]
    assert (loss, norm) == (10.0, "norm")
