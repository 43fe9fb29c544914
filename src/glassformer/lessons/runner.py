"""Grade one lesson's exercise file: load it on its own, run every check, explain each failure."""
import contextlib
import importlib.util
import os
import signal
import sys
import threading
import traceback
import zlib
from pathlib import Path

import numpy as np

from .. import __file__ as PACKAGE_FILE
from ..errors import UserError
from ..inputs import check_size, stat_input
from . import checks  # noqa: F401  registers every lesson's checks
from .grading import CHECKS, Fail

# lesson number -> exercise file stem (lessons/NN-slug.md -> NN_slug_with_underscores.py)
LESSONS = {
    "01": "01_embeddings", "02": "02_attention", "03": "03_residual_norm_ffn",
    "04": "04_stacking_blocks", "05": "05_output_head", "06": "06_softmax_cross_entropy",
    "07": "07_backprop_by_hand", "08": "08_gradient_checking", "09": "09_training_loop",
    "10": "10_training_dynamics", "11": "11_decoders_generation", "12": "12_tokenization",
    "13": "13_gpu", "14": "14_looking_inside", "15": "15_init_dropout", "16": "16_char_model",
    "17": "17_encoder_decoder", "18": "18_gpt2_finetuning", "19": "19_data_parallel",
}
NOT_WRITTEN = "not written yet (it still raises NotImplementedError)"
CHECK_SECONDS = 20.0                    # a right answer's check takes well under a second


class TooSlow(BaseException):
    """The time limit passed inside student code (not an Exception: their `except Exception` lets it by)."""


@contextlib.contextmanager
def time_limit(seconds):
    """Stop the block with TooSlow after `seconds` (an endless loop); no limit off POSIX's main thread."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise TooSlow
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def too_slow(seconds):
    """The reason a check or a file that ran out of time fails."""
    return f"no answer within {seconds:g} s: an endless loop?"


def lesson_number(text):
    """'7', '07' or '07-backprop-by-hand' -> '07'; UserError for a lesson with no exercises."""
    head = str(text).split("-")[0].split("_")[0]
    key = f"{int(head):02d}" if head.isdigit() else head
    if key not in LESSONS:
        raise UserError(f"no exercises for lesson {text!r}: choose one of {', '.join(LESSONS)}")
    return key


def lessons_root(cwd=None):
    """./lessons when it holds exercises/, else the repository's lessons/ beside the installed package."""
    here = Path(cwd or Path.cwd()) / "lessons"
    if (here / "exercises").is_dir():
        return here
    return Path(PACKAGE_FILE).resolve().parents[2] / "lessons"


def exercise_folder(directory=None, solutions=False, cwd=None):
    """--dir DIR, else lessons/solutions (--solutions) or lessons/exercises; UserError if missing."""
    folder = Path(directory) if directory else lessons_root(cwd) / ("solutions" if solutions else "exercises")
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder of exercises; run from the repository root "
                        "(where lessons/exercises is) or pass --dir DIR")
    return folder


def exercise_file(folder, lesson):
    """The path of lesson NN's file in folder; UserError if it is not there."""
    path = Path(folder) / f"{LESSONS[lesson]}.py"
    if not os.path.lexists(path):
        raise UserError(f"{path}: not found; lesson {lesson}'s exercises live in a file of that name "
                        "(copy it from the repository's lessons/exercises/)")
    check_size(path, stat_input(path, "source").st_size, "source")   # a FIFO or folder: refused
    return path


def load_file(path):
    """Execute a lesson file as a fresh module of its own (never a package import); (module, error)."""
    name = f"glassformer_exercises_{Path(path).stem}_{zlib.crc32(str(path).encode()):08x}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        with time_limit(CHECK_SECONDS):
            spec.loader.exec_module(module)
    except TooSlow:
        return None, f"the file does not load: {too_slow(CHECK_SECONDS)}"
    except Exception as e:                                  # noqa: BLE001  the student's file
        return None, f"the file does not load: {describe(e, path)}"
    finally:
        sys.modules.pop(name, None)
    return module, None


def describe(error, source):
    """An exception from student code as one line: its type, message, and the line of their file."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if isinstance(error, SyntaxError) and error.lineno:
        return f"{text.splitlines()[0]}"
    if source is not None:
        frames = [f for f in traceback.extract_tb(error.__traceback__)
                  if Path(f.filename).resolve() == Path(source).resolve()]
        if frames:
            f = frames[-1]
            return f"{text} ({Path(source).name}, line {f.lineno}: {(f.line or '').strip()})"
    return text


def run_check(check, fn, source, seed, seconds=None):
    """(passed, reason) of one check on one function, stopped after `seconds` (CHECK_SECONDS)."""
    seconds = CHECK_SECONDS if seconds is None else seconds
    try:
        with time_limit(seconds):
            check(fn, np.random.default_rng(seed))
    except TooSlow:
        return False, too_slow(seconds)
    except Fail as e:
        return False, str(e)
    except NotImplementedError as e:
        return False, NOT_WRITTEN if not str(e) else f"{NOT_WRITTEN}: {e}"
    except Exception as e:                                  # noqa: BLE001  student code raised
        return False, describe(e, source)
    return True, ""


def grade(lesson, namespace, source=None):
    """[(name, passed, reason)] for every exercise of lesson NN, reading functions from namespace."""
    results = []
    for name, check in CHECKS[lesson].items():
        fn = getattr(namespace, name, None)
        if not callable(fn):
            where = Path(source).name if source else "the namespace"
            results.append((name, False, f"no function named {name} in {where}"))
            continue
        seed = zlib.crc32(f"{lesson}/{name}".encode())
        results.append((name, *run_check(check, fn, source, seed)))
    return results


def grade_file(lesson, path):
    """grade() on the functions of one file; a file that does not load fails every exercise."""
    module, error = load_file(path)
    if module is None:
        return [(name, False, error) for name in CHECKS[lesson]]
    return grade(lesson, module, path)
