"""The hostile suite's tally, printed at the end of every run that ran any of it.

A case that calls hostile.judge() records its own outcome. Every other test in a hostile file
(test_hostile_*.py, test_signals.py) counts as one input of its file's cause: a pass as a good
outcome, a failure as "failed", so the tally covers the suites that assert in their own words.

The subprocess cases of the collected tests (their modules' EARLY builders) start when the session starts,
in a pool of threads: see hostile.early.
"""
import pytest

from hostile import TALLY, start_early, stop_early, summary

SELF_TESTS = {"test_hostile_judge"}


def cause_of(item):
    """checker for test_hostile_checker.py, signals for test_signals.py; None outside the suite."""
    stem = item.path.stem
    if stem in SELF_TESTS or not stem.startswith(("test_hostile_", "test_signals")):
        return None
    return stem.removeprefix("test_hostile_").removeprefix("test_")


def pytest_collection_finish(session):
    """Remember the hostile tests that will run (after -k and deselection): only their jobs start early."""
    session.hostile_items = [item for item in session.items if cause_of(item)]


@pytest.fixture(scope="session", autouse=True)
def early_jobs(request, tmp_path_factory):
    """Start the collected hostile modules' subprocess cases now, so they overlap the in-process ones."""
    start_early(getattr(request.session, "hostile_items", ()), tmp_path_factory)
    yield
    stop_early()


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
