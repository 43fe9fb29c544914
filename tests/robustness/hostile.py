"""The hostile suite's one judge: how a command met a hostile input, and the tally CI prints.

Every generated hostile case ends in one outcome. Two are right: "refused" (exit 2, one `error:`
line, no traceback) and "ok" (the input was legitimate and the command did its job). The others are
the failures the suite exists to find: a "traceback" (or any crash), a "hang" (killed at its time
bound), a "silent" acceptance (exit 0 where the input must be refused), a "data loss" (a file that
existed, or was written, no longer loads), "unbounded" memory; "failed" counts a case that asserted
in its own words and failed. conftest.py prints the tally by cause.
"""
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

GOOD = ("refused", "ok")
BAD = ("traceback", "hang", "silent", "data loss", "unbounded", "failed")   # failed: a case's own assert
TALLY = Counter()                                  # (cause, outcome) -> cases
EXIT_USER_ERROR, EXIT_INTERRUPTED = 2, 130
WORKERS = 3                                        # subprocess cases at once (CI has 2 cores; they mostly wait)
ERROR_LINE = re.compile(r"^error: \S", re.M)


def outcome(rc, stderr="", *, must_refuse, hung=False, lost=False, unbounded=False,
            exits_ok=(0,), exits_refused=(EXIT_USER_ERROR,)):
    """The one outcome of a case: rc and stderr of the command, and what the test saw around it."""
    if hung:
        return "hang"
    if unbounded:
        return "unbounded"
    if lost:
        return "data loss"
    if "Traceback (most recent call last)" in stderr or rc not in (*exits_ok, *exits_refused):
        return "traceback"
    if rc in exits_refused:
        return "refused" if len(ERROR_LINE.findall(stderr)) == 1 else "traceback"
    return "silent" if must_refuse else "ok"


def judge(cause, rc, stderr="", **how):
    """Record the case's outcome under its root cause and assert it is a good one."""
    result = outcome(rc, stderr, **how)
    TALLY[cause, result] += 1
    assert result in GOOD, f"{cause}: {result} (exit {rc})\n{stderr[-2000:]}"
    return result


def summary():
    """One line for the end of the run: inputs in all, by cause, and each bad outcome's count."""
    if not TALLY:
        return None
    causes = Counter()
    for (cause, _), n in TALLY.items():
        causes[cause] += n
    bad = {b: sum(n for (_, r), n in TALLY.items() if r == b) for b in BAD}
    return (f"hostile suite: {sum(causes.values()):,} generated inputs "
            f"({', '.join(f'{c} {n}' for c, n in sorted(causes.items()))}); "
            + ", ".join(f"{b} {n}" for b, n in bad.items()))


_EARLY = {}                                        # a module's builder -> {key: Future} of its jobs
_POOL = []                                         # the session's one pool, made on first use


def early(build, tmp_path_factory):
    """{key: Future} of build(tmp_path_factory)'s jobs {key: job}, submitted once to the session's pool of
    WORKERS threads: conftest starts the collected modules' builders at the session's start, so their
    subprocesses (each with its own timeout) run on the other core while in-process tests run here; a
    test's future.result() waits for its job and re-raises what it raised, in that test only."""
    if build not in _EARLY:
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(WORKERS, thread_name_prefix="hostile"))
        _EARLY[build] = {key: _POOL[0].submit(job) for key, job in build(tmp_path_factory).items()}
    return _EARLY[build]


def start_early(items, tmp_path_factory):
    """Submit the EARLY builders ({fixture name: builder} of a module) whose fixture a collected test uses,
    the module with the most EARLY_SECONDS (its jobs' worker-seconds, about) first: the longest chain first."""
    modules = {}
    for item in items:
        modules.setdefault(item.module, set()).update(getattr(item, "fixturenames", ()))
    for module in sorted(modules, key=lambda m: -getattr(m, "EARLY_SECONDS", 0)):
        for name, build in getattr(module, "EARLY", {}).items():
            if name in modules[module]:
                early(build, tmp_path_factory)


def stop_early():
    """At the session's end: drop the jobs not started (a run stopped early by -x or Ctrl-C), wait for the running ones
    (each bounded by its own timeout), drop the pool."""
    for pool in _POOL:
        pool.shutdown(wait=True, cancel_futures=True)
    _POOL.clear()
    _EARLY.clear()
