"""The one exception a user's mistake becomes, and the boundary every entry point runs inside.

Standard library only (the bottom floor), so a wrapper script can install the boundary before it
imports NumPy or the rest of glassformer.
"""
import argparse
import contextlib
import difflib
import errno
import math
import os
import signal
import sys
import threading
import traceback
from dataclasses import fields

EXIT_USER_ERROR = 2                     # a user's mistake (or the machine's: disk, memory): one line
EXIT_BUG = 1                            # a bug in glassformer: the traceback, and where to report it
EXIT_INTERRUPTED = 130                  # Ctrl-C, as a shell reports SIGINT; SIGTERM too (handled alike)
REPORT = "this is a bug in glassformer: please report it with the command you ran and the traceback above"
# what to do about an OSError, by errno
OS_ADVICE = {errno.ENOSPC: "free some disk space (or write elsewhere, e.g. another --out) and run again",
             errno.EDQUOT: "your disk quota is full: free some space (or write elsewhere) and run again",
             errno.EACCES: "check the file's permissions, or choose another path",
             errno.EPERM: "check the file's permissions, or choose another path",
             errno.ENOENT: "check the path",
             errno.EROFS: "the file system is read-only: choose another path",
             errno.EISDIR: "give a file, not a folder",
             errno.ENOTDIR: "a part of the path is a file, not a folder: check the path"}


class UserError(Exception):
    """Bad input from a user (a file, a flag, a typed expression); CLIs print it without a traceback."""


class Parser(argparse.ArgumentParser):
    """The argparse of every command: a mistake is one UserError line (exit 2), not usage and a
    SystemExit, an unknown flag names the closest one (--stpes: did you mean --steps?), and --help
    states each number's domain."""

    def parse_known_args(self, args=None, namespace=None):
        """argparse's, keeping what it did not recognise for error() (parse_args refuses it there)."""
        self.unrecognized = []
        namespace, self.unrecognized = super().parse_known_args(args, namespace)
        return namespace, self.unrecognized

    def format_help(self):
        """argparse's help, each flag whose type states a domain (domains.Domain) showing it."""
        for action in self._actions:
            text = getattr(action.type, "domain_text", None)
            if text and action.help and text not in action.help:
                action.help = f"{action.help}; {text}"
        return super().format_help()

    see = None                          # the help to point to, when not `prog --help` (a sub-command's)

    def error(self, message):
        unknown = [a for a in getattr(self, "unrecognized", ()) if a.startswith("--") and a != "--"]
        run = "python " if self.prog.endswith(".py") else ""     # a script; a module's prog has it
        raise UserError(f"{message}{closest_flags(unknown, self)} (see {self.see or f'{run}{self.prog} --help'})")


def closest_flags(unknown, parser):
    """'; did you mean --steps?' for each unknown flag with a close spelling among parser's (and its
    sub-commands') flags; '' when none is close."""
    known = option_strings(parser)
    hints = []
    for flag in unknown:
        name = flag.split("=", 1)[0]
        match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if match:
            hints.append(f"did you mean {match[0]} (not {name})?" if len(unknown) > 1 else
                         f"did you mean {match[0]}?")
    return "; " + "; ".join(hints) if hints else ""


def option_strings(parser):
    """Every --flag the parser and its sub-commands' parsers accept."""
    flags = []
    for action in parser._actions:
        flags += [s for s in action.option_strings if s.startswith("--")]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags += option_strings(sub)
    return flags


# ---- KEY=VALUE settings (python -m glassformer.experiments NAME steps=600 lr=3e-3)

KINDS = {int: "a whole number, e.g. 3", float: "a number, e.g. 1e-3", bool: "true or false", str: "text"}


def parse_value(text):
    """'3' -> 3, '1e-3' -> 0.001, 'true' -> True, anything else stays a string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def field_kind(cls, name):
    """int, float, bool or str: the declared type of the dataclass cls's field `name`; None if unknown."""
    for f in fields(cls):
        if f.name == name:
            kind = {k.__name__: k for k in KINDS}.get(f.type) if isinstance(f.type, str) else f.type
            return kind if kind in KINDS else None
    return None


def typed_setting(key, text, cls=None, kind=None):
    """The value of KEY=TEXT, of the type of cls's field (or `kind`); a text that is not of it is one
    UserError naming the key, the value and the type. No known type: parse_value's guess."""
    kind = kind or (field_kind(cls, key.rpartition(".")[2]) if cls is not None else None)
    if kind is None or kind is str:
        return parse_value(text) if kind is None else text
    value = parse_value(text)
    value = float(value) if kind is float and type(value) is int else value
    if type(value) is not kind or (kind is float and not math.isfinite(value)):
        raise UserError(f"{key}={text}: {key} must be {KINDS[kind]}, not {text!r}")
    return value


def os_error_message(e):
    """An OSError as one line: the path, what went wrong, and what to do."""
    where = ": ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    what = e.strerror or str(e) or type(e).__name__
    advice = OS_ADVICE.get(e.errno, "check the path and the disk, then run again")
    return f"{where + ': ' if where else ''}{what}; {advice}"


def run_main(main, *args, stderr=None, interrupted="", says_mistakes=True, help_returns=False):
    """Exit status of main(*args), every failure turned into one line (a bug: the traceback too): the one
    error boundary, which every command's main() runs inside.

    UserError, OSError (disk full, permissions, a missing file), MemoryError: `error: ...`, exit 2;
    Ctrl-C or SIGTERM: exit 130 quietly, after the line `interrupted` (temp files removed on the way
    out), also when a clean-up on the way out raised an error of its own; a closed pipe (`... | head`): exit 0 quietly; anything else: the traceback and one line
    asking to report it, exit 1. SystemExit (--help) passes through, or with help_returns is returned
    as its exit status. says_mistakes=False prints no `error:` line for a UserError (mpiexec: every
    rank raised it, and rank 0 alone says it).
    """
    err = sys.stderr if stderr is None else stderr
    try:
        with term_as_interrupt():
            code = main(*args)
        if err is sys.stderr:
            sys.stdout.flush()                              # a closed pipe shows here, still inside
        return code
    except UserError as e:
        if says_mistakes:
            print(f"error: {e}", file=err)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(interrupted, file=err)
        return EXIT_INTERRUPTED
    except SystemExit as e:                                 # argparse's --help
        if not help_returns:
            raise
        return e.code if isinstance(e.code, int) else 0 if e.code is None else EXIT_USER_ERROR
    except BrokenPipeError:                                 # the reader went away: stop quietly
        quiet_stdout()
        return 0
    except OSError as e:
        print(f"error: {os_error_message(e)}", file=err)
        return EXIT_USER_ERROR
    except MemoryError:
        print("error: out of memory: try a smaller model, batch or context (or close other "
              "programs) and run again", file=err)
        return EXIT_USER_ERROR
    except Exception as e:                                  # noqa: BLE001  the boundary: a bug
        if raised_while_interrupted(e):                     # a clean-up's error on the way out
            print(interrupted, file=err)
            return EXIT_INTERRUPTED
        traceback.print_exc(file=err)
        print(REPORT, file=err)
        return EXIT_BUG


def raised_while_interrupted(error, depth=8):
    """True when error was raised while a Ctrl-C or SIGTERM unwound the program: one may land inside a
    library's clean-up (numpy.savez's zip file closing with a member still open raises ValueError
    over it), which is the interrupt's doing, not a bug."""
    for _ in range(depth):
        error = error.__context__
        if error is None:
            return False
        if isinstance(error, KeyboardInterrupt):
            return True
    return False


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as Ctrl-C is (so the same clean-up runs); a REPL stops for it, not just a reply."""


def interrupt(signum, frame):
    """A SIGTERM handler that stops the program as Ctrl-C does: Terminated where it runs."""
    raise Terminated


@contextlib.contextmanager
def term_as_interrupt():
    """SIGTERM inside is handled like Ctrl-C (KeyboardInterrupt), so `finally` and `except` blocks run
    and no temp file is left; only where SIGTERM still has its default action, in the main thread."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def stop_softly(first):
    """Inside, the first Ctrl-C or SIGTERM calls first() (finish the step, save, stop); a second one
    raises KeyboardInterrupt (stop at once). Outside the main thread signals cannot be caught: a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = []

    def handler(signum, frame):
        if seen:
            raise KeyboardInterrupt
        seen.append(signum)
        first()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(s, handler) for s in signals]
    try:
        yield
    finally:
        for s, p in zip(signals, previous):
            signal.signal(s, p)


def quiet_stdout():
    """Point stdout at /dev/null, so the flush at interpreter exit cannot fail on a closed pipe again."""
    if sys.stdout is not sys.__stdout__:                    # redirected (a test): leave it alone
        return
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
