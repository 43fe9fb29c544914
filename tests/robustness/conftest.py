"""The hostile suite's tally, printed at the end of every run that ran any of it.

A case that calls hostile.judge() records its own outcome. Every other test in a hostile file
(test_hostile_*.py, test_signals.py) counts as one input of its file's cause: a pass as a good
outcome, a failure as "failed", so the tally covers the suites that assert in their own words.
"""
import pytest

from hostile import TALLY, summary

SELF_TESTS = {"test_hostile_judge"}


def cause_of(item):
    """checker for test_hostile_checker.py, signals for test_signals.py; None outside the suite."""
    stem = item.path.stem
    if stem in SELF_TESTS or not stem.startswith(("test_hostile_", "test_signals")):
        return None
    return stem.removeprefix("test_hostile_").removeprefix("test_")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    item.judged_before = sum(TALLY.values())
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    cause = cause_of(item)
    if report.when == "call" and cause and sum(TALLY.values()) == getattr(item, "judged_before", -1):
        TALLY[cause, "ok" if report.passed else "failed"] += 1


def pytest_terminal_summary(terminalreporter):
    line = summary()
    if line:
        terminalreporter.write_line(line)
