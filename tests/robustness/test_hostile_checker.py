"""A hostile suite for `python -m glassformer.lessons check`: student files that try to end, hang or flood it.

Each case is a solution file with one hostile act added: at module level, inside the graded function, in
a thread that function starts, or in an atexit handler it registers. The act is one of ACTS (sys.exit,
os._exit, BaseException and its kin, an exception whose str() raises, a C-level endless loop, SIGALRM
ignored, a thread that never ends, 50 MB printed, 20 GB allocated, SIGKILL or SIGSEGV sent to itself, a
wrong-type return, a recursion 10**6 deep). Whatever it does, the checker must end within its bound with
exit status 1, bounded output, one clear FAIL line for the hostile exercise (every exercise, for a file
that does not load) and no traceback.

The checker runs in a forked copy of this process that ends the way `python -m` does (non-daemon threads
joined, atexit handlers run, then the exit status), WORKERS of them at once (most wait on a timeout), so
the suite fits its time; a few cases run the real command line too. --timeout is short here (SECONDS) so
that the endless cases cost little.
"""
import atexit
import io
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest

from glassformer.errors import run_main
from glassformer.cli.lessons import main
from glassformer.lessons.grading import CHECKS
from glassformer.lessons.runner import LESSONS
from hostile import WORKERS

REPO = Path(__file__).resolve().parents[2]
SECONDS = 0.5                               # --timeout of every case
SLACK = 6.0                                 # seconds of start-up and grading on a busy 2-core machine
KEPT = 1 << 20                              # bytes of the checker's output kept for the assertions
LESSONS_USED = ("10", "13")                 # three quick checks each
WHERE = ("module", "function", "thread", "atexit")
TIMEOUT = r"no answer within 0\.5 s"

HELPERS = '''

import atexit as _atexit
import os as _os
import signal as _signal
import sys as _sys
import threading as _threading
import time as _time


class _BadStr(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")


class _BadRepr(Exception):
    def __str__(self):
        return 42

    def __repr__(self):
        raise RuntimeError("no repr either")


class _Weird:
    def __array__(self, *args, **kwargs):
        raise RuntimeError("no array")

    def __len__(self):
        raise RuntimeError("no len")

    def __iter__(self):
        raise RuntimeError("no iter")

    def __eq__(self, other):
        raise RuntimeError("no eq")

    def __float__(self):
        raise RuntimeError("no float")

    def __repr__(self):
        raise RuntimeError("no repr")

    __str__ = __repr__


def _deep(n):
    return _deep(n + 1) + 1


def _hostile():
{act}
'''

# act: (_hostile's body, the pattern of the reason, its kind): "raises" an exception, which the reason
# names after a prefix saying where (PREFIX); "ends" the process, hangs it or floods it; "value" is a wrong
# answer (at module level it replaces the function); "either" raises or ends, depending on the machine
ACTS = {
    "sys_exit_0": ("_sys.exit(0)", r"sys\.exit\(0\) was called", "raises"),
    "sys_exit_1": ("_sys.exit(1)", r"sys\.exit\(1\) was called", "raises"),
    "sys_exit_none": ("_sys.exit()", r"sys\.exit\(None\) was called", "raises"),
    "sys_exit_str": ("_sys.exit('goodbye')", r"sys\.exit\('goodbye'\) was called", "raises"),
    "raise_system_exit": ("raise SystemExit(3)", r"sys\.exit\(3\) was called", "raises"),
    "os_exit_0": ("_os._exit(0)", r"the process ended before the check finished", "ends"),
    "os_exit_7": ("_os._exit(7)", r"the process ended with exit status 7 before the check finished", "ends"),
    "raise_base_exception": ("raise BaseException('hostile')", r"BaseException: hostile", "raises"),
    "raise_generator_exit": ("raise GeneratorExit", r"GeneratorExit", "raises"),
    "raise_keyboard_interrupt": ("raise KeyboardInterrupt", r"KeyboardInterrupt", "raises"),
    "str_raises": ("raise _BadStr()", r"_BadStr: \(its message cannot be shown: str\(\) raised RuntimeError\)",
                   "raises"),
    "str_and_repr_raise": ("raise _BadRepr()",
                           r"_BadRepr: \(its message cannot be shown: str\(\) raised TypeError\)", "raises"),
    "c_loop": ("sum(range(10 ** 13))", TIMEOUT, "ends"),
    "sigalrm_ignored": ("_signal.signal(_signal.SIGALRM, _signal.SIG_IGN)\n"
                        "_signal.setitimer(_signal.ITIMER_REAL, 0)\nwhile True:\n    pass", TIMEOUT, "ends"),
    "thread_never_ends": ("_threading.Thread(target=_time.sleep, args=(10 ** 6,)).start()",
                          r"a thread it started \(Thread-\d+ \(sleep\)\) is still running", "ends"),
    "print_50_mb": ("for _ in range(25):\n    print('x' * 2_000_000)", r"it printed more than 1 MiB, so it was stopped",
                    "ends"),
    "write_fd_2_50_mb": ("for _ in range(25):\n    _os.write(2, b'y' * 2_000_000)",
                         r"it printed more than 1 MiB, so it was stopped", "ends"),
    "allocate_20_gb": ("import numpy as np\nreturn np.ones(20 * 10 ** 9, dtype=np.uint8)",
                       r"MemoryError: .*\(out of memory", "raises"),
    "sigkill_self": ("_os.kill(_os.getpid(), _signal.SIGKILL)", r"the process was killed by SIGKILL", "ends"),
    "sigsegv_self": ("_os.kill(_os.getpid(), _signal.SIGSEGV)", r"the process was killed by SIGSEGV", "ends"),
    "wrong_type_str": ("return 'not an array'", r"\S", "value"),
    "wrong_type_weird": ("return _Weird()", r"\S", "value"),
    "recursion_python": ("_sys.setrecursionlimit(10 ** 6 + 100)\nreturn _deep(0)",
                         rf"RecursionError|MemoryError|{TIMEOUT}", "either"),
    "recursion_c": ("_sys.setrecursionlimit(10 ** 6 + 100)\nx = []\nfor _ in range(10 ** 6):\n    x = [x]\n"
                    "return repr(x)", rf"the process was killed by SIGSEGV|RecursionError|{TIMEOUT}", "either"),
}
LINGERS = r"a thread it started \(Thread-\d+ \(_hostile\)\) is still running"
IN_A_THREAD = {"sigalrm_ignored": (r"ValueError: signal only works in main thread", "raises"),
               "recursion_python": (ACTS["recursion_python"][1] + "|" + LINGERS, "either"),
               "recursion_c": (ACTS["recursion_c"][1] + "|" + LINGERS, "either")}
PREFIX = {"module": "the file does not load: ", "function": "", "thread": "a thread it started died: ",
          "atexit": "an atexit handler failed: "}


def student_file(lesson, where, act):
    """The solution of lesson NN with the act added where asked (the graded function is the first)."""
    text = (REPO / "lessons" / "solutions" / f"{LESSONS[lesson]}.py").read_text(encoding="utf-8")
    text += HELPERS.format(act="\n".join("    " + line for line in ACTS[act][0].splitlines()))
    name = next(iter(CHECKS[lesson]))
    if where == "module":
        return text + f"\n\n_value = _hostile()\nif _value is not None:\n    {name} = _value\n"
    start = {"function": "_value = _hostile()",
             "thread": "_threading.Thread(target=_hostile).start()\n    _value = None",
             "atexit": "_atexit.register(_hostile)\n    _value = None"}[where]
    return text + (f"\n\n_right = {name}\n\n\ndef {name}(*args, **kwargs):\n    {start}\n"
                   f"    return _right(*args, **kwargs) if _value is None else _value\n")


def expected(where, act):
    """The pattern the hostile exercise's reason must match, from its start."""
    _, pattern, kind = ACTS[act]
    if where == "thread":
        pattern, kind = IN_A_THREAD.get(act, (pattern, kind))
    if where == "module" and kind == "value":
        return r"no function named"
    if where == "module":
        prefix = PREFIX[where]
    elif kind == "either":
        prefix = f"(?:{PREFIX[where]})?"
    else:
        prefix = PREFIX[where] if kind == "raises" else ""
    return f"{prefix}(?:{pattern})"


CASES = [(lesson, where, act) for lesson in LESSONS_USED for where in WHERE for act in ACTS
         if not (ACTS[act][2] == "value" and where in ("thread", "atexit"))]    # a value there is harmless


def run_checker(argv, bound):
    """(exit status, output kept, bytes printed, seconds) of `python -m glassformer.lessons *argv`, forked.

    The fork ends as the interpreter would after `raise SystemExit(run_main(main))`; it is killed past bound."""
    return run_checkers({0: (argv, bound)})[0]


class Forked:
    """One forked checker: its pid, the read end of its output, what it printed, and how it ended."""

    def __init__(self, argv, bound):
        read, write = os.pipe()
        self.start, self.bound = time.monotonic(), bound
        self.pid = os.fork()
        if self.pid == 0:                                   # the checker: never returns into pytest
            os._exit(checker_process(argv, read, write))
        os.close(write)
        self.read, self.kept, self.printed, self.status, self.seconds = read, bytearray(), 0, None, None

    def drain(self):
        """Read what it printed (up to one block): the bytes read, 0 at the end of its output, None when
        nothing is ready."""
        if not select.select([self.read], [], [], 0)[0]:
            return None
        data = os.read(self.read, 1 << 16)
        self.kept += data[:KEPT - len(self.kept)]
        self.printed += len(data)
        return len(data)

    def poll(self):
        """True once it has ended (its output read to the end) or was killed past its bound."""
        done, wait_status = os.waitpid(self.pid, os.WNOHANG)
        if done:
            self.status, self.seconds = wait_status, time.monotonic() - self.start
            while self.drain():
                pass
        elif time.monotonic() - self.start > self.bound:
            self.seconds = time.monotonic() - self.start
            self.kill()
        else:
            return False
        os.close(self.read)
        return True

    def kill(self):
        for kill in (os.killpg, os.kill):
            try:
                kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        os.waitpid(self.pid, 0)

    def result(self):
        code = None if self.status is None else os.waitstatus_to_exitcode(self.status)
        return code, self.kept.decode("utf-8", errors="replace"), self.printed, self.seconds


def run_checkers(jobs, workers=WORKERS):
    """{key: run_checker's result} of jobs {key: (argv, bound)}, `workers` forked checkers at a time."""
    waiting, running, results = list(jobs.items()), {}, {}
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                key, (argv, bound) = waiting.pop(0)
                running[key] = Forked(argv, bound)
            ready = select.select([f.read for f in running.values()], [], [], 0.05)[0]
            for key, forked in list(running.items()):
                if forked.read in ready:
                    forked.drain()
                if forked.poll():
                    results[key] = forked.result()
                    del running[key]
    finally:
        for forked in running.values():                     # an error in this loop: no checker left behind
            forked.kill()
    return results


def checker_process(argv, read, write):
    """In the forked checker: stdout and stderr into the pipe, main(), then the interpreter's exit."""
    try:
        os.setpgid(0, 0)
        os.close(read)
        os.dup2(write, 1)
        os.dup2(write, 2)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
        atexit._clear()                                     # pytest's handlers are not the checker's
        try:
            code = run_main(main, argv)
        except SystemExit as e:                             # what the interpreter does with SystemExit
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else print(e.code, file=sys.stderr) or 1
        except BaseException:                               # noqa: BLE001  an uncaught exception: traceback, 1
            traceback.print_exc()
            code = 1
        threading._shutdown()                               # interpreter exit: join non-daemon threads,
        atexit._run_exitfuncs()                             # then atexit
        sys.stdout.flush(), sys.stderr.flush()
        return code
    except BaseException:                                   # noqa: BLE001
        return 99


def bound_of(lesson):
    """Seconds a checker of lesson may take: each check's timeout, one more, and SLACK."""
    return (len(CHECKS[lesson]) + 1) * SECONDS + SLACK


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """{case: run_checker's result} of every case, WORKERS checkers at a time, each in its own folder."""
    jobs = {}
    for lesson, where, act in CASES:
        folder = tmp_path_factory.mktemp(f"{lesson}-{where}-{act}")
        (folder / f"{LESSONS[lesson]}.py").write_text(student_file(lesson, where, act), encoding="utf-8")
        jobs[lesson, where, act] = (["check", lesson, "--dir", str(folder), "--timeout", str(SECONDS)],
                                    bound_of(lesson))
    return run_checkers(jobs)


@pytest.mark.parametrize("lesson, where, act", CASES, ids=[f"{lesson}-{where}-{act}" for lesson, where, act in CASES])
def test_a_hostile_student_file_is_one_failed_check(checked, lesson, where, act):
    names = list(CHECKS[lesson])
    code, out, printed, seconds = checked[lesson, where, act]
    assert code is not None, f"the checker did not end within {bound_of(lesson):g} s"
    assert code == 1, f"exit status {code}: {out[-2000:]}"
    assert printed < (len(names) + 1) * 12_000, f"{printed} bytes of output: {out[:300]}"
    assert "Traceback" not in out, out[-2000:]
    fails = [line for line in out.splitlines() if line.startswith("  FAIL  ")]
    hostile = names[0]
    if where == "module" and ACTS[act][2] != "value":
        assert [line.split(":")[0] for line in fails] == [f"  FAIL  {n}" for n in names], out[-2000:]
        assert len({line.split(": ", 1)[1] for line in fails}) == 1, fails   # the one reason, for each
        assert out.splitlines()[-1] == f"0 passed, {len(names)} failed"
    else:
        assert len(fails) == 1 and fails[0].startswith(f"  FAIL  {hostile}: "), out[-2000:]
        assert out.splitlines()[-1] == f"{len(names) - 1} passed, 1 failed", out[-2000:]
    reason = fails[0].split(": ", 1)[1]
    assert re.match(expected(where, act), reason), (expected(where, act), reason)


# ---- the real command line, the output shown, the flag ------------------------------------------------------

@pytest.mark.parametrize("where, act", [("module", "sys_exit_0"), ("function", "os_exit_0"),
                                        ("thread", "thread_never_ends")])
def test_the_real_command_line_survives_too(tmp_path, where, act):
    """`python -m glassformer.lessons check` itself: exit status 1, the one FAIL line, no traceback."""
    (tmp_path / f"{LESSONS['13']}.py").write_text(student_file("13", where, act), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"),
                                                                     os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "glassformer.lessons", "check", "13", "--dir", str(tmp_path),
                           "--timeout", str(SECONDS)], capture_output=True, text=True, env=env, timeout=60)
    fails = [line for line in done.stdout.splitlines() if line.startswith("  FAIL  ")]
    assert done.returncode == 1 and done.stderr == "", done.stdout + done.stderr
    assert re.match(expected(where, act), fails[0].split(": ", 1)[1]), fails


def test_what_a_failed_check_printed_is_shown_under_it_cut(tmp_path):
    """A failed check's output: its first 8 KiB, indented under the FAIL line, then how much more there was."""
    lines = "".join(f"debug line {i}\n" for i in range(2000))
    (tmp_path / f"{LESSONS['10']}.py").write_text(
        f"def majority_baseline(labels, n_classes):\n    print({lines!r}, end='')\n    return -1.0\n",
        encoding="utf-8")
    code, out, printed, _ = run_checker(["check", "10", "--dir", str(tmp_path), "--timeout", "5"], 30)
    body = out.splitlines()
    at = next(i for i, line in enumerate(body) if line.startswith("  FAIL  majority_baseline: "))
    assert code == 1 and body[at + 1] == "        | debug line 0"
    shown = [line for line in body if line.startswith("        | debug line ")]
    assert 500 < len(shown) < 800, len(shown)                 # 8 KiB of 14-byte lines
    more = next(line for line in body[at + 1:] if not line.startswith("        | debug"))
    assert more == f"        | ... {len(lines) - 8192} bytes more", more
    assert printed < 16_000                                  # 8 KiB and the prefixes


def test_the_output_of_a_passing_check_is_not_shown(tmp_path):
    text = (REPO / "lessons" / "solutions" / f"{LESSONS['10']}.py").read_text(encoding="utf-8")
    (tmp_path / f"{LESSONS['10']}.py").write_text(text + "\nprint('hello from the module')\n", encoding="utf-8")
    code, out, _, _ = run_checker(["check", "10", "--dir", str(tmp_path), "--timeout", "5"], 30)
    assert code == 0 and "hello" not in out, out


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "1e9"])
def test_a_bad_timeout_is_a_usage_error(tmp_path, value):
    code, out, _, _ = run_checker(["check", "10", "--timeout", value], 30)
    assert code == 2 and "--timeout" in out and "seconds" in out and "Traceback" not in out, out


def test_help_says_what_each_exit_status_means():
    code, out, _, _ = run_checker(["check", "--help"], 30)
    assert code == 0 and "0 every check passed, 1 a check failed, 2 the checker's own usage" in " ".join(out.split())
