"""The learning-rate schedule (optim/schedules.py): linear warm-up, then cosine decay to the floor."""
import pytest

from glassformer.optim.schedules import warmup_cosine


def test_warmup_cosine_schedule():
    lr = [warmup_cosine(s, max_lr=1.0, warmup_steps=10, total_steps=100, min_lr=0.1)
          for s in range(101)]
    assert lr[0] == pytest.approx(0.1)                     # (0 + 1) / 10 of max_lr
    assert lr[4] == pytest.approx(0.5)
    assert lr[9] == pytest.approx(1.0)                     # warm-up ends at max_lr
    assert lr[10] == pytest.approx(1.0)                    # cosine starts at max_lr
    assert all(a < b for a, b in zip(lr[:10], lr[1:10]))   # warm-up rises
    assert all(a > b for a, b in zip(lr[10:], lr[11:]))    # then strictly decays
    assert lr[55] == pytest.approx(0.55)                   # halfway: the mean of max and min
    assert lr[100] == pytest.approx(0.1)
    assert warmup_cosine(500, 1.0, 10, 100, 0.1) == 0.1    # past the end: the floor
    assert warmup_cosine(0, 1.0, 0, 100) == pytest.approx(1.0)   # no warm-up
