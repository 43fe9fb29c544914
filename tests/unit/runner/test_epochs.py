"""runner/epochs.py: EpochTally is the task's loss (forward, exact backward) plus the epoch's tally;
Silent keeps nothing."""
import numpy as np
import pytest

from glassformer.gradcheck import numerical_grad
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.runner.epochs import EpochTally, Silent


def test_epoch_tally_backward_is_the_losss_and_matches_finite_differences_in_float64(rng):
    logits = rng.standard_normal((3, 4, 5))                 # (B, T, V), float64
    y = np.array([[1, 0, 4, 2], [3, 3, 0, 1], [2, 4, 4, 0]])
    tally, plain = EpochTally(CrossEntropyLoss(), pad=0), CrossEntropyLoss()
    assert float(tally.forward(logits, y)) == float(plain.forward(logits, y))
    dlogits = tally.backward(0.5)
    np.testing.assert_array_equal(dlogits, plain.backward(0.5))
    numeric = numerical_grad(lambda: 0.5 * float(plain.forward(logits, y)), logits)
    np.testing.assert_allclose(dlogits, numeric, atol=1e-9)


def test_epoch_tally_adds_up_loss_and_accuracy_over_the_counted_targets_then_resets():
    logits = np.log(np.array([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]],
                              [[0.2, 0.2, 0.6], [0.5, 0.25, 0.25]]]))
    y = np.array([[0, 2], [2, 1]])                            # correct, wrong, correct, wrong
    tally = EpochTally(CrossEntropyLoss())
    tally.forward(logits, y)
    loss, accuracy = tally.reset()
    assert loss == pytest.approx(-np.log([0.7, 0.1, 0.6, 0.25]).mean())
    assert accuracy == 0.5 and tally.reset() == (0.0, 0.0)   # the tally starts again
    padded = EpochTally(CrossEntropyLoss(ignore_index=2), pad=2)   # pad targets are not counted
    padded.forward(logits, y)
    assert padded.reset() == (pytest.approx(-np.log([0.7, 0.25]).mean()), 0.5)


def test_silent_keeps_nothing():
    stream = Silent()
    assert stream.write("step 1/10 loss 2.0\n") == 19 and stream.writable()
