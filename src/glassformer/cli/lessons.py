"""python -m glassformer.lessons check NN | --all [--solutions | --dir DIR] [--timeout S]: grade;
`notebook [NN|all] [--out DIR]`: write the lessons as Jupyter notebooks (lessons/notebooks.py).

Exit status 0 when every check passes, 1 when one fails, 2 on bad usage (unknown lesson, missing
file, bad flag). The student's code runs in child processes (runner, sandbox): whatever it does,
sys.exit included, is a failed check, never the checker's own exit status.
"""
import sys
from pathlib import Path

from ..domains import Domain
from ..errors import Parser, run_main
from ..lessons import notebooks
from ..lessons.checks.lesson20 import TRAIN_SECONDS
from ..lessons.grading import CHECKS
from ..lessons.runner import CHECK_SECONDS, LESSONS, exercise_file, exercise_folder, grade_file, lesson_number

EXIT_STATUS = ("exit status: 0 every check passed, 1 a check failed, 2 the checker's own usage error "
               "(unknown lesson, missing file or folder, bad flag)")


SECONDS = Domain(float, 1e-3, 3600.0, meaning="seconds")   # --timeout of one check


def parse_args(argv):
    parser = Parser(prog="python -m glassformer.lessons", epilog=EXIT_STATUS,
                    description="Grade the course's exercises with behaviour tests.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="grade one lesson's exercise file (or --all)", epilog=EXIT_STATUS,
                           description="Grade a lesson's exercises. Loading the file and each check "
                                       "run in a child process of their own, stopped after --timeout.")
    check.add_argument("lesson", nargs="?", help="lesson number, e.g. 07")
    check.add_argument("--all", action="store_true", help="grade every lesson")
    where = check.add_mutually_exclusive_group()
    where.add_argument("--solutions", action="store_true",
                       help="grade the kept solutions in lessons/solutions (spoilers)")
    where.add_argument("--dir", help="folder holding the NN_name.py files (default lessons/exercises)")
    check.add_argument("--timeout", type=SECONDS, default=None, metavar="S",
                       help=f"stop a check (or the file's loading) after S seconds (default {CHECK_SECONDS:g}; "
                            f"lesson 20's two training checks: {TRAIN_SECONDS:g})")
    sub.add_parser("list", help="list every lesson's exercises")
    book = sub.add_parser("notebook", help="write lessons as Jupyter notebooks (the course extra)",
                          description="Write lessons/notebooks/NN-*.ipynb from the lessons' markdown.")
    book.add_argument("lesson", nargs="?", default="all", help="lesson number, e.g. 07, or all (the default)")
    book.add_argument("--out", metavar="DIR", help="folder for the notebooks (default lessons/notebooks)")
    args = parser.parse_args(argv)
    if args.command == "check" and bool(args.lesson) == bool(args.all):
        parser.error("give one lesson number or --all")
    return args


def shown(path):
    """path relative to the working directory when it lies below it, else as it is."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def print_lesson(lesson, path, results, out):
    """The lesson's header and one line per exercise: pass, or FAIL with the reason."""
    print(f"lesson {lesson}: {shown(path)}", file=out)
    for name, passed, reason in results:
        print(f"  pass  {name}" if passed else f"  FAIL  {name}: {reason}", file=out)


def command(argv=None, out=None):
    """Grade (or list) the exercises; exit status 1 when a check fails."""
    out = out or sys.stdout
    args = parse_args(argv)
    if args.command == "list":
        for lesson, stem in LESSONS.items():
            print(f"{stem}.py: {', '.join(CHECKS[lesson])}", file=out)
        return 0
    if args.command == "notebook":
        return notebooks.write_lessons(args.lesson, args.out, out)
    folder = exercise_folder(args.dir, args.solutions)
    lessons = list(LESSONS) if args.all else [lesson_number(args.lesson)]
    paths = {lesson: exercise_file(folder, lesson) for lesson in lessons}   # all found, or exit 2
    passed = failed = 0
    for lesson, path in paths.items():
        results = grade_file(lesson, path, args.timeout)
        print_lesson(lesson, path, results, out)
        passed += sum(ok for _, ok, _ in results)
        failed += sum(not ok for _, ok, _ in results)
    print(f"{passed} passed, {failed} failed", file=out)
    return 1 if failed else 0


def main(argv=None, out=None):
    """Entry point: the command inside the error boundary (one `error:` line, exit 2)."""
    return run_main(command, argv, out)
