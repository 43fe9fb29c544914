"""The judge itself: each bad outcome is caught, so a green hostile suite means something."""
import pytest

from hostile import TALLY, judge, outcome

ONE = "error: x.txt: not a text file; give a .txt file\n"


@pytest.mark.parametrize("rc, stderr, how, want", [
    (2, ONE, {"must_refuse": True}, "refused"),
    (0, "", {"must_refuse": False}, "ok"),
    (0, "", {"must_refuse": True}, "silent"),
    (1, "Traceback (most recent call last):\n  ...\nValueError: x\n", {"must_refuse": True}, "traceback"),
    (2, ONE + ONE, {"must_refuse": True}, "traceback"),
    (2, "oops\n", {"must_refuse": True}, "traceback"),
    (-9, "", {"must_refuse": True, "hung": True}, "hang"),
    (139, "", {"must_refuse": True}, "traceback"),
    (0, "", {"must_refuse": False, "lost": True}, "data loss"),
    (2, ONE, {"must_refuse": True, "unbounded": True}, "unbounded"),
])
def test_each_outcome_is_told_apart(rc, stderr, how, want):
    assert outcome(rc, stderr, **how) == want


def test_judge_fails_a_bad_outcome():
    with pytest.raises(AssertionError, match="silent"):
        judge("judge-self-test", 0, "", must_refuse=True)
    assert TALLY.pop(("judge-self-test", "silent")) == 1      # recorded, then kept out of the tally
