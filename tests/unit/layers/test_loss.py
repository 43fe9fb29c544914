"""Cross-entropy: the definition, ignore_index, stability, and its gradient."""
import numpy as np
import pytest

from glassformer.backend import to_numpy
from glassformer.layers.loss import CrossEntropyLoss


def manual_nll(logits, targets):
    """-log softmax(logits)[target] per row, written out directly in float64."""
    z = np.asarray(logits, np.float64)
    probs = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    return -np.log(np.take_along_axis(probs, targets[..., None], axis=-1)[..., 0])


def test_equals_minus_log_softmax_picked(xp, rng):
    logits = rng.standard_normal((2, 3, 5))
    targets = rng.integers(0, 5, (2, 3))
    loss = CrossEntropyLoss().forward(xp.asarray(logits), xp.asarray(targets))
    assert float(loss) == pytest.approx(manual_nll(logits, targets).mean(), rel=1e-12)


def test_gradient_is_softmax_minus_onehot_over_n(xp, rng):
    logits = rng.standard_normal((4, 6))
    targets = rng.integers(0, 6, 4)
    ce = CrossEntropyLoss()
    ce.forward(xp.asarray(logits), xp.asarray(targets))
    dlogits = to_numpy(ce.backward())
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    probs[np.arange(4), targets] -= 1.0
    np.testing.assert_allclose(dlogits, probs / 4, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(to_numpy(ce.backward(2.0)), 2 * probs / 4, rtol=1e-10, atol=1e-14)


def test_ignore_index_tokens_do_not_count(xp, rng):
    logits = rng.standard_normal((2, 4, 5))
    targets = np.array([[1, -100, 3, 4], [-100, -100, 0, 2]])
    ce = CrossEntropyLoss(ignore_index=-100)
    loss = float(ce.forward(xp.asarray(logits), xp.asarray(targets)))
    counted = targets != -100
    per_token = manual_nll(logits[counted], targets[counted])
    assert loss == pytest.approx(per_token.mean(), rel=1e-12)       # mean over the 5 counted ones
    dlogits = to_numpy(ce.backward())
    assert not dlogits[~counted].any()                             # ignored rows get no gradient
    assert np.abs(dlogits[counted]).sum() > 0
    np.testing.assert_allclose(dlogits[counted].sum(axis=-1), 0.0, atol=1e-12)


def test_ignoring_changes_nothing_for_other_tokens(rng):
    logits = rng.standard_normal((1, 3, 4))
    targets = np.array([[2, 0, 1]])
    full = float(CrossEntropyLoss().forward(logits[:, :2], targets[:, :2]))
    masked = float(CrossEntropyLoss(ignore_index=1).forward(logits, np.array([[2, 0, 1]])))
    assert masked == pytest.approx(full, rel=1e-12)


def test_all_ignored_gives_zero_not_nan():
    ce = CrossEntropyLoss(ignore_index=0)
    loss = float(ce.forward(np.ones((2, 3)), np.array([0, 0])))
    assert loss == 0.0
    assert not ce.backward().any()


def test_stable_for_huge_logits(xp):
    logits = xp.asarray([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4]], dtype=xp.float32)
    ce = CrossEntropyLoss()
    loss = float(ce.forward(logits, xp.asarray([0, 1])))
    assert np.isfinite(loss)
    assert loss == pytest.approx((0.0 + 1e4) / 2, rel=1e-6)        # -log p = 0 and 1e4
    d = to_numpy(ce.backward())
    assert np.isfinite(d).all()
    np.testing.assert_allclose(d, [[0, 0, 0], [0.5, -0.5, 0]], atol=1e-6)


def test_uniform_logits_give_log_v(xp):
    V = 7
    loss = CrossEntropyLoss().forward(xp.zeros((3, 2, V)), xp.asarray([[0, 6], [3, 3], [1, 2]]))
    assert float(loss) == pytest.approx(np.log(V), rel=1e-12)
