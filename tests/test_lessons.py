"""The course runs: every ```python block of every lesson executes, in order, one namespace per lesson.

Block kinds, by the fence's info string:
  ```python                 run (in a fresh namespace shared by the lesson's blocks, in order)
  ```python no-run          not run (GPU-only code); also a `<!-- no-run -->` line just before the fence
  ```python quote PATH      an excerpt of PATH: every line (except `...`) must exist there, in order
Other languages (```bash, ```text) are shown, not run.
"""
import re
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LESSONS = REPO / "lessons"
LESSON_FILES = sorted(LESSONS.glob("[0-9][0-9]-*.md"))
MAX_NO_RUN = 5                      # GPU-only blocks in the whole course
NO_RUN_COMMENT = "<!-- no-run -->"


def parse_blocks(path):
    """[{"kind", "code", "line", "info"}] for every fenced block of a markdown file, in order."""
    return parse_text(path.read_text(encoding="utf-8"), path.name)


def parse_text(text, name):
    """parse_blocks on markdown text; `name` only labels the error for an unclosed block."""
    out, block, previous = [], None, ""
    for n, line in enumerate(text.splitlines(), start=1):
        if block is None:
            if line.startswith("```"):
                lang, _, info = line[3:].strip().partition(" ")
                block = {"lang": lang, "info": info.strip(), "line": n, "lines": [],
                         "marked": previous.strip() == NO_RUN_COMMENT}
            elif line.strip():
                previous = line
        elif line.rstrip() == "```":
            out.append(finish(block))
            block, previous = None, ""
        else:
            block["lines"].append(line)
    assert block is None, f"{name}: the block opened on line {block['line']} is never closed"
    return out


def finish(block):
    """Classify a parsed block as run / no-run / quote / other."""
    kind = "other"
    if block["lang"] == "python":
        if block["info"].startswith("quote"):
            kind = "quote"
        elif block["info"].startswith("no-run") or block["marked"]:
            kind = "no-run"
        else:
            kind = "run"
    return {"kind": kind, "code": "\n".join(block["lines"]) + "\n", "line": block["line"],
            "info": block["info"]}


def lesson_id(path):
    return path.stem


def test_the_course_has_lessons():
    names = [p.name[:2] for p in LESSON_FILES]
    assert names == [f"{i:02d}" for i in range(1, len(names) + 1)], \
        f"lessons must be numbered 01, 02, ... without gaps, found {names}"
    assert len(names) >= 14


@pytest.mark.parametrize("path", LESSON_FILES, ids=lesson_id)
def test_lesson_runs(path, tmp_path, monkeypatch):
    """Execute the lesson's python blocks in order; a failure names the lesson and block number."""
    monkeypatch.chdir(tmp_path)                             # lessons may write checkpoints or plots
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": f"lesson_{path.stem.replace('-', '_')}"}
    runnable = [b for b in parse_blocks(path) if b["kind"] == "run"]
    assert runnable, f"{path.name} has no runnable ```python block"
    for i, block in enumerate(runnable, start=1):
        where = f"{path.name}, python block {i} (line {block['line']})"
        try:
            exec(compile(block["code"], where, "exec"), namespace)
        except Exception as e:                              # report which block, then the cause
            pytest.fail(f"{where} failed: {type(e).__name__}: {e}", pytrace=False)


def test_no_run_blocks_are_few_and_compile():
    counts = {p.name: sum(b["kind"] == "no-run" for b in parse_blocks(p)) for p in LESSON_FILES}
    total = sum(counts.values())
    assert total <= MAX_NO_RUN, f"{total} blocks are marked no-run (at most {MAX_NO_RUN}): {counts}"
    for p in LESSON_FILES:                                  # not run, but at least valid Python
        for b in parse_blocks(p):
            if b["kind"] == "no-run":
                compile(b["code"], f"{p.name} line {b['line']}", "exec")


def quoted_lines_found(quote, source_lines):
    """The first quoted line not found in the source in order, or None when all are there.

    Runs of spaces count as one, so re-aligning a trailing comment does not break a quote.
    """
    squeezed = [" ".join(s.split()) for s in source_lines]
    pos = 0
    for q in quote.splitlines():
        q = " ".join(q.split())
        if not q or q == "...":
            continue
        try:
            pos = squeezed.index(q, pos) + 1
        except ValueError:
            return q
    return None


@pytest.mark.parametrize("path", LESSON_FILES, ids=lesson_id)
def test_quotes_match_the_code(path):
    """Every ```python quote PATH block quotes real lines of PATH, in order."""
    for block in parse_blocks(path):
        if block["kind"] != "quote":
            continue
        parts = block["info"].split()
        assert len(parts) == 2, f"{path.name} line {block['line']}: write ```python quote PATH"
        source = REPO / parts[1]
        assert source.is_file(), f"{path.name} line {block['line']}: {parts[1]} does not exist"
        missing = quoted_lines_found(block["code"], source.read_text(encoding="utf-8").splitlines())
        assert missing is None, \
            f"{path.name} line {block['line']}: {missing!r} is not in {parts[1]} (in this order)"


@pytest.mark.parametrize("path", LESSON_FILES, ids=lesson_id)
def test_lesson_has_exercises_and_walk_section(path):
    """Two or more exercises, each with a runnable block that asserts; a train_step_by_step section."""
    text = path.read_text(encoding="utf-8")
    sections = re.split(r"^### ", text, flags=re.M)
    exercises = [s for s in sections[1:] if s.startswith("Exercise")]
    assert len(exercises) >= 2, f"{path.name}: {len(exercises)} exercises (### Exercise ...), want >= 2"
    for ex in exercises:
        asserts = [b for b in parse_text(ex, path.name) if b["kind"] == "run" and "assert" in b["code"]]
        assert asserts, f"{path.name}: {ex.splitlines()[0]!r} has no runnable block with an assert"
    assert re.search(r"^## .*train_step_by_step", text, flags=re.M), \
        f"{path.name}: no '## ... train_step_by_step ...' section"


def test_readme_lists_every_lesson_with_a_time():
    readme = (LESSONS / "README.md").read_text(encoding="utf-8")
    for p in LESSON_FILES:
        rows = [line for line in readme.splitlines() if f"({p.name})" in line]
        assert rows, f"lessons/README.md does not link {p.name}"
        assert re.search(r"\d+\s*(h|min)", rows[0]), f"lessons/README.md: no time for {p.name}"
    linked = re.findall(r"\]\(([0-9][0-9]-[^)]+\.md)\)", readme)
    assert all((LESSONS / name).is_file() for name in linked), f"a linked lesson is missing: {linked}"


def test_parser_kinds(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("```python\na = 1\n```\n<!-- no-run -->\n\n```python\nb\n```\n"
                  "```python no-run\nc\n```\n```python quote src/x.py\nd\n```\n```bash\ne\n```\n")
    assert [b["kind"] for b in parse_blocks(md)] == ["run", "no-run", "no-run", "quote", "other"]
    assert quoted_lines_found("x = 1\n...\n  y = 2", ["x = 1", "z", "    y = 2"]) is None
    assert quoted_lines_found("y = 2\nx = 1", ["x = 1", "y = 2"]) == "x = 1"   # order matters
    assert quoted_lines_found("a = 1  # c", ["a = 1        # c"]) is None       # alignment is free
    assert quoted_lines_found("a = 2", ["a = 1"]) == "a = 2"
