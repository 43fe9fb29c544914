"""Draw every figure of the course into lessons/figures/ by running the lessons that show one.

The figures are not drawn by hand and not committed: each lesson's own code block draws its
figure into `figures/` beside where it runs. This script runs, for every lesson that links a
`figures/NAME.png`, all of that lesson's ```python blocks in order (in a scratch folder, as the
tests do), then copies the PNGs it drew here. Usage, from the repository root:

    python lessons/figures/make_figures.py          # every lesson with a figure
    python lessons/figures/make_figures.py 07 16    # only these lessons
"""
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LESSONS = HERE.parent
FIGURE_LINK = re.compile(r"\]\(figures/([\w.-]+\.png)\)")
NEEDS_DATA = re.compile(r"^<!-- needs-data: (\S+) -->$", re.M)
SHARED_DATA = LESSONS.parent.parent / "shared" / "data"
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```$", re.M | re.S)
NO_RUN = "<!-- no-run -->"


def runnable_blocks(text):
    """The code of the lesson's ```python blocks that the tests run (not quotes, not no-run)."""
    blocks = []
    for match in FENCE.finditer(text):
        info = match.group(1).strip()
        before = [line for line in text[:match.start()].splitlines() if line.strip()]
        if info.startswith(("quote", "no-run")) or (before and before[-1].strip() == NO_RUN):
            continue
        blocks.append(match.group(2))
    return blocks


def draw(lesson):
    """Run one lesson in a scratch folder; copy the figures it links into lessons/figures/."""
    text = lesson.read_text(encoding="utf-8")
    names = FIGURE_LINK.findall(text)
    missing = [d for d in NEEDS_DATA.findall(text) if not (SHARED_DATA / d).is_file()]
    if missing:
        print(f"{lesson.name}: skipped, it needs {', '.join(missing)} (in {SHARED_DATA})")
        return []
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        try:
            namespace = {"__name__": f"lesson_{lesson.stem.replace('-', '_')}"}
            with open(os.devnull, "w") as quiet:
                stdout, sys.stdout = sys.stdout, quiet      # the lesson's prints are not wanted here
                try:
                    for i, code in enumerate(runnable_blocks(text), start=1):
                        exec(compile(code, f"{lesson.name}, python block {i}", "exec"), namespace)
                finally:
                    sys.stdout = stdout
            for name in names:
                shutil.copyfile(Path(scratch) / "figures" / name, HERE / name)
        finally:
            os.chdir(cwd)
    for name in names:
        print(f"{lesson.name}: lessons/figures/{name}")
    return names


def main(argv=None):
    os.environ.setdefault("MPLBACKEND", "Agg")
    wanted = set(sys.argv[1:] if argv is None else argv)
    lessons = [p for p in sorted(LESSONS.glob("[0-9][0-9]-*.md"))
               if FIGURE_LINK.search(p.read_text(encoding="utf-8")) and (not wanted or p.name[:2] in wanted)]
    drawn = [name for lesson in lessons for name in draw(lesson)]
    print(f"{len(drawn)} figures in {HERE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
