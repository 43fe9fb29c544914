"""Run a piece of a student's code in a child process of its own, so nothing it does ends the checker.

The child (os.fork: cheap, NumPy already loaded) gets a memory limit, its stdout and stderr in a pipe
and a wall-clock deadline enforced from outside by SIGKILL. After the task it ends as a program ends:
it waits for the threads the code started and runs its atexit handlers, then sends {"passed",
"reason"} back as JSON. sys.exit or os._exit, a signal, an endless loop in C, SIGALRM ignored, a
thread that never ends, 50 MB of print, 20 GB of arrays: each comes back as one failed check and a
line that says what happened. POSIX only (fork, process groups, resource limits).
"""
import atexit
import contextlib
import faulthandler
import fcntl
import io
import json
import os
import resource
import select
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

OUTPUT_SHOWN = 8 * 1024             # bytes of a failed check's output shown under its line
OUTPUT_LIMIT = 1024 * 1024          # a child that prints more is stopped there (a print in a loop?)
MEMORY_BYTES = 2 * 1024 ** 3        # address space a child may add to what it starts with
REASON_CHARS = 1000                 # a longer reason is cut
ANSWER_LIMIT = 64 * 1024            # a longer answer is garbled (the code wrote into the checker's pipe)
HINTS = {signal.SIGSEGV: " (a crash: a recursion too deep for the C stack?)",
         signal.SIGKILL: " (os.kill, or the system out of memory)",
         signal.SIGABRT: " (a C library aborted)",
         signal.SIGXCPU: " (it used up its CPU time: threads spinning?)"}


def run_isolated(task, seconds, source=None):
    """(passed, reason, output) of task() run in a forked child stopped after `seconds`.

    task() runs in the child and returns {"passed": bool, "reason": str}; output is what the child
    printed (at most OUTPUT_SHOWN bytes, with a note of how much more)."""
    for stream in (sys.stdout, sys.stderr):                 # nothing of ours is printed twice
        stream.flush()
    out_r, out_w = os.pipe()
    answer_r, answer_w = os.pipe()
    if hasattr(fcntl, "F_SETPIPE_SZ"):                      # Linux: 1 MiB of print in one read, not 16
        with contextlib.suppress(OSError):
            fcntl.fcntl(out_r, fcntl.F_SETPIPE_SZ, OUTPUT_LIMIT)
    pid = os.fork()
    if pid == 0:
        os.close(out_r), os.close(answer_r)
        child(task, seconds, source, out_w, answer_w)       # never returns
    os.close(out_w), os.close(answer_w)
    seen = Watched()
    try:
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)                            # the child does it too: no race with killpg
        watch(pid, out_r, answer_r, seconds, seen)
    finally:
        bury(pid, seen)
        os.close(out_r), os.close(answer_r)
    return verdict(seen)


# ---- the parent: read, time, kill ---------------------------------------------------------------------------

class Watched:
    """What the parent saw of a child: its output, its answer, and why it was stopped (if it was)."""
    def __init__(self):
        self.shown, self.printed, self.answer, self.stopped = bytearray(), 0, bytearray(), ""
        self.status = None                                  # the child's wait status, once reaped

    def take(self, fd, data, out_fd):
        """Keep a chunk read from the output or the answer pipe."""
        if fd != out_fd:
            self.answer += data[:ANSWER_LIMIT + 1 - len(self.answer)]
            return
        self.shown += data[:OUTPUT_SHOWN - len(self.shown)]
        self.printed += len(data)
        if self.printed > OUTPUT_LIMIT:
            self.stopped = (f"it printed more than {OUTPUT_LIMIT // 1024 ** 2} MiB, so it was stopped "
                            "(a print in a loop?)")


def watch(pid, out_r, answer_r, seconds, seen):
    """Read the child's pipes into seen until it exits, prints too much, or the deadline passes."""
    deadline, pipes, exited = time.monotonic() + seconds, {out_r, answer_r}, False
    for fd in pipes:
        os.set_blocking(fd, False)
    pidfd = None
    if hasattr(os, "pidfd_open"):                           # Linux: select() wakes when the child ends
        with contextlib.suppress(OSError):
            pidfd = os.pidfd_open(pid)
    try:
        while not exited and not seen.stopped:
            left = deadline - time.monotonic()
            if left <= 0:
                seen.stopped = too_slow(seconds)
                break
            waits = sorted(pipes) + ([pidfd] if pidfd is not None else [])
            ready = select.select(waits, [], [], left if pidfd is not None else min(left, 0.01))[0]
            pipes -= drain(pipes.intersection(ready), seen, out_r)
            exited = pidfd in ready if pidfd is not None else reaped(pid, seen)
        if exited and not seen.stopped:
            drain(pipes, seen, out_r)                       # what is still in the pipes
    finally:
        if pidfd is not None:
            os.close(pidfd)


def reaped(pid, seen):
    """Whether the child has ended (no pidfd: polled); its status goes into seen."""
    done, status = os.waitpid(pid, os.WNOHANG)
    if done == pid:
        seen.status = status
    return done == pid


def drain(ready, seen, out_r):
    """Read what is there on the ready pipes (non-blocking: a grandchild may hold them); those at their end."""
    ended = set()
    for fd in ready:
        while not seen.stopped:
            try:
                data = os.read(fd, OUTPUT_LIMIT)
            except BlockingIOError:
                break
            if not data:
                ended.add(fd)
                break
            seen.take(fd, data, out_r)
    return ended


def bury(pid, seen):
    """Kill the child's process group (grandchildren too) and reap the child, keeping its status."""
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(OSError):
            kill(pid, signal.SIGKILL)
    if seen.status is None:
        seen.status = os.waitpid(pid, 0)[1]


def verdict(seen):
    """(passed, reason, output): the child's answer, or the one line that says how it ended."""
    output = shown_output(seen)
    if seen.stopped:
        return False, seen.stopped, output
    if os.WIFSIGNALED(seen.status):
        sig = os.WTERMSIG(seen.status)
        return False, f"the process was killed by {signal_name(sig)}{HINTS.get(sig, '')}", output
    code = os.WEXITSTATUS(seen.status)
    answer = parse_answer(bytes(seen.answer))
    if code != 0 or answer is None:
        ended = f"ended with exit status {code}" if code else "ended"
        return False, f"the process {ended} before the check finished (os._exit()?)", output
    return answer["passed"], clean(answer["reason"]), output


def parse_answer(data):
    """The child's {"passed", "reason"}, or None when there is none or it is garbled."""
    if not data or len(data) > ANSWER_LIMIT:
        return None
    try:
        answer = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    ok = isinstance(answer, dict) and isinstance(answer.get("passed"), bool) \
        and isinstance(answer.get("reason"), str)
    return answer if ok else None


def signal_name(number):
    """SIGSEGV for 11; 'signal 99' for a number with no name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def too_slow(seconds):
    """The reason a check or a file that ran out of time fails."""
    return f"no answer within {seconds:g} s: an endless loop?"


def shown_output(seen):
    """The kept output as text, with the count of bytes not kept."""
    text = clean(bytes(seen.shown).decode("utf-8", errors="replace"), limit=None)
    more = seen.printed - len(seen.shown)
    return text + (f"\n... {more} bytes more" if more > 0 else "")


def clean(text, limit=REASON_CHARS):
    """Printable text: control characters escaped (a \\x1b cannot clear the terminal), cut to limit."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + " ..."
    if not text.isprintable():
        text = "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


# ---- the child: limits, capture, the task, the end of a program ---------------------------------------------

def child(task, seconds, source, out_w, answer_w):
    """In the forked child: set up, run task(), end as a program ends, answer; never returns."""
    try:
        os.setpgid(0, 0)
        deadline = time.monotonic() + seconds
        confine(out_w, seconds)
        thread_errors = catch_thread_errors()
        answer = task()
        if answer["passed"]:
            answer = at_exit(deadline - min(0.5, seconds / 4), source, thread_errors) or answer
        flush_quietly()
        data = json.dumps({"passed": answer["passed"], "reason": answer["reason"][:REASON_CHARS]}).encode()
        while data:
            data = data[os.write(answer_w, data):]
        status = 0
    except BaseException:                                   # noqa: BLE001  the parent reports "ended"
        status = 3
    os._exit(status)


def confine(out_w, seconds):
    """The child's limits: memory, CPU time, no core file, no stdin, stdout and stderr into the pipe."""
    atexit._clear()                                         # the checker's own handlers are not ours to run
    if faulthandler.is_enabled():                           # a crash is reported by its signal
        faulthandler.disable()
    limit(resource.RLIMIT_CORE, 0)
    limit(resource.RLIMIT_CPU, int(2 * seconds) + 2)        # a busy child outlives no dead checker for long
    if hasattr(resource, "RLIMIT_AS"):
        limit(resource.RLIMIT_AS, address_space() + MEMORY_BYTES)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    os.close(null), os.close(out_w)
    sys.stdin = open(0, closefd=False)                      # noqa: SIM115  (input() -> EOFError)
    sys.stdout = sys.__stdout__ = text_stream(1)
    sys.stderr = sys.__stderr__ = text_stream(2)


def limit(kind, value):
    """Lower a resource limit, soft and hard (so the code cannot raise it again); never raise it."""
    soft, hard = resource.getrlimit(kind)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))


def address_space():
    """This process's virtual size in bytes (Linux), 0 where it cannot be read."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def text_stream(fd):
    """A line-buffered UTF-8 text stream on fd."""
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8",
                            errors="backslashreplace", line_buffering=True)


def catch_thread_errors():
    """A list that collects the exceptions the code's threads die of (SystemExit included)."""
    errors = []
    threading.excepthook = lambda args: errors.append(args.exc_value or args.exc_type())
    return errors


def flush_quietly():
    """Flush what the code printed (it may have closed or replaced sys.stdout: never mind)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()


def at_exit(until, source, thread_errors):
    """After a passed check, what a program's end would reveal, by `until`: {"passed", "reason"} or None."""
    failure = lingering(until) or run_atexit(source) or lingering(until)
    if not failure and thread_errors:
        failure = f"a thread it started died: {describe(thread_errors[0], source)}"
    return {"passed": False, "reason": failure} if failure else None


def lingering(until):
    """The reason a non-daemon thread still runs at `until`, or None when they all ended."""
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        thread.join(max(0.0, until - time.monotonic()))
        if thread.is_alive():
            return (f"a thread it started ({thread.name}) is still running when the check ends: "
                    "join every thread you start, or make it a daemon")
    return None


def run_atexit(source):
    """Run the code's atexit handlers as an exiting program would; the reason if one raised."""
    raised = []
    sys.unraisablehook = lambda info: raised.append(info.exc_value or info.exc_type())
    atexit._run_exitfuncs()
    atexit._clear()
    return raised and f"an atexit handler failed: {describe(raised[-1], source)}"


# ---- an exception as one line --------------------------------------------------------------------------------

def describe(error, source):
    """An exception from student code as one line: its type, message, and the line of their file."""
    text = f"{name_of(error)}: {message(error)}" if message(error) else name_of(error)
    if isinstance(error, SystemExit):
        text = f"sys.exit({message_of_exit(error)}) was called"
    elif isinstance(error, ValueError) and "matmul" in text:
        text = f"{text} (hint: the shapes of a matrix product disagree: is a transpose missing?)"
    elif isinstance(error, MemoryError):
        text = f"{text} (out of memory: a check may use {MEMORY_BYTES // 1024 ** 3} GiB more)"
    if isinstance(error, SyntaxError):
        return text
    line = last_line_in(error, source)
    return f"{text} ({Path(source).name}, line {line[0]}: {line[1]})" if line else text


def name_of(error):
    """The exception's class name (whatever its metaclass does)."""
    try:
        return str(type(error).__name__)
    except BaseException:                                   # noqa: BLE001
        return "an exception"


def message(error):
    """str(error) on one line, cut; a note when str() itself raises."""
    try:
        text = str(error)
    except BaseException as e:                              # noqa: BLE001  their __str__ raised
        return f"(its message cannot be shown: str() raised {name_of(e)})"
    first, *rest = text.splitlines() or [""]
    return (first[:300] + " ..." if len(first) > 300 or rest else first) if text else ""


def message_of_exit(error):
    """The argument sys.exit() got, as repr shows it (safely)."""
    try:
        return repr(error.code)[:100]
    except BaseException:                                   # noqa: BLE001
        return "..."


def last_line_in(error, source):
    """(line number, source text) of the deepest frame of the traceback in `source`, or None."""
    if source is None:
        return None
    wanted, found, tb, known = str(Path(source).resolve()), None, error.__traceback__, {}
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename not in known:
            known[filename] = str(Path(filename).resolve()) == wanted
        if known[filename]:
            found = tb
        tb = tb.tb_next
    if found is None:
        return None
    frame = traceback.FrameSummary(found.tb_frame.f_code.co_filename, found.tb_lineno, "")
    return found.tb_lineno, (frame.line or "").strip()
