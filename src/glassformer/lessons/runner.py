"""Grade one lesson's exercise file: load it on its own, run every check, explain each failure.

The student's code never runs in the checker's process: loading the file and each check run in a
child process of their own (sandbox.run_isolated), so whatever the code does ends as one failed
check with one line that says what happened.
"""
import importlib.util
import os
import sys
import zlib
from pathlib import Path

import numpy as np

from .. import __file__ as PACKAGE_FILE
from ..errors import UserError
from ..inputs import check_size, stat_input
from . import checks  # noqa: F401  registers every lesson's checks
from .grading import CHECKS, Fail
from .sandbox import describe, message, run_isolated

# lesson number -> exercise file stem (lessons/NN-slug.md -> NN_slug_with_underscores.py)
LESSONS = {
    "01": "01_embeddings", "02": "02_attention", "03": "03_residual_norm_ffn",
    "04": "04_stacking_blocks", "05": "05_output_head", "06": "06_softmax_cross_entropy",
    "07": "07_backprop_by_hand", "08": "08_gradient_checking", "09": "09_training_loop",
    "10": "10_training_dynamics", "11": "11_decoders_generation", "12": "12_tokenization",
    "13": "13_gpu", "14": "14_looking_inside", "15": "15_init_dropout", "16": "16_char_model",
    "17": "17_encoder_decoder", "18": "18_gpt2_finetuning", "19": "19_data_parallel",
    "20": "20_your_own_gpt",
}
NOT_WRITTEN = "not written yet (it still raises NotImplementedError)"
CHECK_SECONDS = 5.0     # per check and per file load; the solutions' slowest check takes 0.11 s
                        # (a check with a `seconds` attribute gets that instead: lesson 20's training)
OUTPUT_PREFIX = "        | "                                # what a failed check printed, under its line


def lesson_number(text):
    """'7', '07' or '07-backprop-by-hand' -> '07'; UserError for a lesson with no exercises."""
    head = str(text).split("-")[0].split("_")[0]
    key = f"{int(head):02d}" if head.isascii() and head.isdigit() and len(head) < 4 else head
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


def exec_file(path):
    """Execute a lesson file as a fresh module of its own (never a package import); the module."""
    name = f"glassformer_exercises_{Path(path).stem}_{zlib.crc32(str(path).encode()):08x}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def load_file(path):
    """(module, None), or (None, why) when the file raises: in this process, for a trusted file."""
    try:
        return exec_file(path), None
    except Exception as e:                                  # noqa: BLE001  the file's own error
        return None, f"the file does not load: {describe(e, path)}"


def outcome(call, source):
    """{"passed", "reason"} of call(), run in a child: whatever it raises becomes the reason."""
    try:
        call()
    except Fail as e:
        reason = message(e) if type(e) is not Fail else str(e)
    except NotImplementedError as e:
        reason = f"{NOT_WRITTEN}: {message(e)}" if message(e) else NOT_WRITTEN
    except BaseException as e:                              # noqa: BLE001  anything student code does
        reason = describe(e, source)
    else:
        return {"passed": True, "reason": ""}
    return {"passed": False, "reason": reason}


def with_output(reason, output):
    """The reason, then what the code printed, indented under it."""
    if not output:
        return reason
    return "\n".join([reason] + [OUTPUT_PREFIX + line for line in output.splitlines()])


def run_check(lesson, name, namespace, source=None, seconds=None):
    """(name, passed, reason) of one check on namespace().name, run in a child process of its own."""
    check = CHECKS[lesson][name]
    seconds = getattr(check, "seconds", CHECK_SECONDS) if seconds is None else seconds
    rng = np.random.default_rng(zlib.crc32(f"{lesson}/{name}".encode()))   # made here: each child
                                                                            # would import numpy.random

    def call():
        fn = getattr(namespace(), name, None)
        if not callable(fn):
            raise Fail(f"no function named {name} in {Path(source).name if source else 'the namespace'}")
        check(fn, rng)
    passed, reason, output = run_isolated(lambda: outcome(call, source), seconds, source)
    return name, passed, "" if passed else with_output(reason, output)


def grade(lesson, namespace, source=None, seconds=None):
    """[(name, passed, reason)] for every exercise of lesson NN, reading functions from namespace."""
    return [run_check(lesson, name, lambda: namespace, source, seconds) for name in CHECKS[lesson]]


def grade_file(lesson, path, seconds=None):
    """grade() on the functions of one file; a file that does not load fails every exercise.

    The file is loaded once in a child to see that it loads, then again in each check's child."""
    load_seconds = CHECK_SECONDS if seconds is None else seconds
    loads, reason, output = run_isolated(lambda: outcome(lambda: exec_file(path), path), load_seconds, path)
    if not loads:
        reason = f"the file does not load: {reason}"
        return [(name, False, with_output(reason, output) if i == 0 else reason)
                for i, name in enumerate(CHECKS[lesson])]
    return [run_check(lesson, name, lambda: exec_file(path), path, seconds) for name in CHECKS[lesson]]
