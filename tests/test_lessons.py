"""The course runs: every ```python block of every lesson executes, in order, one namespace per lesson.

Block kinds, by the fence's info string:
  ```python                 run (in a fresh namespace shared by the lesson's blocks, in order)
  ```python no-run          not run (GPU-only code); also a `<!-- no-run -->` line just before the fence
  ```python quote           an excerpt of glassformer's source; its first line names what it quotes
                            (functions, classes, methods or module-level constants):
                            `# src/glassformer/layers/positional.py: LearnedPositionalEmbedding.backward`
                            (several names: `# PATH: layer_norm_forward, LayerNorm.forward`)
  ```output [atol=A] [rtol=R]  what the run block just above it prints, compared with what it prints now
  ```output shape           the same, for output that cannot be stable (timings): compared by its shape,
                            the text and the integers exactly, any decimal number accepted
A lesson that needs public data it cannot ship (tinyshakespeare) says so in a line
`<!-- needs-data: tinyshakespeare/input.txt -->`; its run is skipped, with that message, when the
file is not in the data folder ($GLASSFORMER_DATA, or ../shared/data). A line
`<!-- block needs-data: FILE -->` just before one ```python block marks that block alone: without the
file, it and its ```output block are not run, the rest of the lesson is, and the test then skips,
naming the blocks it left out.
Other languages (```bash, ```text) are shown, not run; a ```text block may not follow a run block
(a printed result goes in an ```output block, so that it is checked).

A quote is split into chunks at its `...` lines. Each chunk must appear contiguously in the source,
every line of it inside the named functions or classes (found with `ast`), at one consistent indentation;
chunks come in file order, and every named function or class holds at least one chunk. Blank lines
and docstring lines of the source may be left out of a quote; runs of spaces count as one, so
re-aligning a trailing comment does not break it.

An output block is compared line by line (a `...` line stands for any number of lines). Text
between numbers must match, ignoring whitespace. Integers must match exactly; a number with a
decimal point or an exponent may differ by one unit of its last printed digit (rounding), or by
the block's stated `atol` / `rtol`.
"""
import ast
import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
from datapaths import DATA

from glassformer.lessons.blocks import parse_blocks                  # the one parser of the lessons

REPO = Path(__file__).resolve().parents[1]
LESSONS = REPO / "lessons"
LESSON_FILES = sorted(LESSONS.glob("[0-9][0-9]-*.md"))
MAX_NO_RUN = 5                      # GPU-only blocks in the whole course
QUOTE_HEADER = re.compile(r"#\s*(src/\S+\.py):\s*(.+?)\s*$")
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
FIGURE_LINK = re.compile(r"\]\(figures/([\w.-]+\.png)\)")
NEEDS_DATA = re.compile(r"^<!-- needs-data: (\S+) -->$", re.M)
SHARED_DATA = DATA                                    # $GLASSFORMER_DATA, or ../shared/data
LEFT_OUT = object()                                   # what a block left out "printed"
PRINT_DEFAULTS = np.get_printoptions()                # NumPy's own, before any lesson runs


def lesson_id(path):
    return path.stem


def exercise_file(path):
    """lessons/exercises/NN_slug.py for lessons/NN-slug.md."""
    return f"lessons/exercises/{path.stem.replace('-', '_')}.py"


# ---------------------------------------------------------------------------------------- outputs

def output_tolerance(info):
    """(atol, rtol) stated on an ```output fence, 0 where not stated; `shape` accepts any decimal."""
    found = dict(re.findall(r"(atol|rtol)=([0-9.eE+-]+)", info))
    atol = float("inf") if "shape" in info.split() else float(found.get("atol", 0.0))
    return atol, float(found.get("rtol", 0.0))


def last_digit_unit(number):
    """One unit of the last printed digit of a decimal number ('0.21' -> 0.01); 0 for an integer."""
    mantissa, _, exponent = number.lower().partition("e")
    if "." not in mantissa and not exponent:
        return 0.0
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def line_mismatch(expected, actual, atol=0.0, rtol=0.0):
    """Why one printed line differs from the expected one, or None when they agree."""
    e_nums, a_nums = NUMBER.findall(expected), NUMBER.findall(actual)
    e_text = ["".join(t.split()) for t in NUMBER.split(expected)]
    a_text = ["".join(t.split()) for t in NUMBER.split(actual)]
    if e_text != a_text or len(e_nums) != len(a_nums):
        return "the text differs"
    for e, a in zip(e_nums, a_nums):
        unit = last_digit_unit(e)
        tol = max(1.0000001 * unit, atol, rtol * abs(float(e))) if unit else 0.0   # integers: exact
        if abs(float(e) - float(a)) > tol:
            return f"{a} is not {e} (tolerance {tol:g})"
    return None


def output_mismatch(expected, actual, atol=0.0, rtol=0.0):
    """The first disagreement between an ```output block and the printed text, or None.

    Lines are compared in order, blank lines ignored; an expected `...` line matches any number
    of printed lines (the next expected line is looked for further down).
    """
    want = [w for w in expected.splitlines() if w.strip()]
    got = [g for g in actual.splitlines() if g.strip()]
    return _match_lines(want, got, atol, rtol)


def _match_lines(want, got, atol, rtol):
    if not want:
        return None if not got else f"unexpected printed line {got[0]!r}"
    if want[0].strip() == "...":
        for skip in range(len(got) + 1):
            if _match_lines(want[1:], got[skip:], atol, rtol) is None:
                return None
        return f"nothing printed after the gap matches {want[1] if len(want) > 1 else '...'!r}"
    if not got:
        return f"{want[0]!r} was not printed (the output ended)"
    why = line_mismatch(want[0], got[0], atol, rtol)
    if why:
        return f"expected {want[0]!r}, printed {got[0]!r}: {why}"
    return _match_lines(want[1:], got[1:], atol, rtol)


def run_lesson(path, left_out=None):
    """Run every block of a lesson in order; return [(where, error)] for blocks that failed.

    A block that needs data which is not here is not run (nor its output compared): its
    "line N needs FILE" is appended to `left_out`. A block that prints with no ```output block
    right after it fails: every printed result is shown, and so checked.

    NumPy's print options start at their defaults, as in a fresh Python: a lesson's output must
    not depend on another lesson's np.set_printoptions.
    """
    with np.printoptions(**PRINT_DEFAULTS):
        return _run_blocks(path, [] if left_out is None else left_out)


def _run_blocks(path, left_out):
    namespace = {"__name__": f"lesson_{path.stem.replace('-', '_')}"}
    blocks, failures, printed, n_run = parse_blocks(path), [], None, 0
    for i, block in enumerate(blocks):
        if block["kind"] == "run" and block["needs"] and not (SHARED_DATA / block["needs"]).is_file():
            left_out.append(f"line {block['line']} needs {block['needs']}")
            printed = LEFT_OUT                              # its output block is not compared
            continue
        if block["kind"] == "run":
            n_run += 1
            where = f"{path.name}, python block {n_run} (line {block['line']})"
            buffer = io.StringIO()
            try:
                with contextlib.redirect_stdout(buffer):
                    exec(compile(block["code"], where, "exec"), namespace)
            except Exception as e:                          # report which block, then the cause
                return failures + [(where, f"{type(e).__name__}: {e}")]
            printed = buffer.getvalue()
            if printed.strip() and not shown_below(blocks, i):
                failures.append((where, f"it prints, but no ```output block follows it to show what "
                                        f"(add one, or ```output shape for timings)\n--- printed ---\n{printed}"))
        elif block["kind"] == "output":
            where = f"{path.name}, output block at line {block['line']}"
            if printed is LEFT_OUT:
                printed = None
                continue
            if printed is None:
                failures.append((where, "an ```output block must follow a ```python block it checks"))
                continue
            why = output_mismatch(block["code"], printed, *output_tolerance(block["info"]))
            if why:
                failures.append((where, f"{why}\n--- printed ---\n{printed}"))
            printed = None
        else:
            printed = None
    return failures


def shown_below(blocks, i):
    """Whether the block after blocks[i] is the ```output block that shows what blocks[i] prints."""
    return i + 1 < len(blocks) and blocks[i + 1]["kind"] == "output"


@pytest.mark.parametrize("path", LESSON_FILES, ids=lesson_id)
def test_lesson_runs(path, tmp_path, monkeypatch):
    """Execute the lesson's python blocks in order and check every ```output block they print."""
    monkeypatch.chdir(tmp_path)                             # lessons may write checkpoints or plots
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("GLASSFORMER_DATA", str(SHARED_DATA))  # the lessons' data_home() is the tests' DATA
    blocks = parse_blocks(path)
    for needed in lesson_needs(path):
        if not (SHARED_DATA / needed).is_file():            # big public data is never committed
            pytest.skip(f"{path.name} needs {needed}: put it in {SHARED_DATA} with python -m "
                        "glassformer.data fetch (see the lesson)")
    assert any(b["kind"] == "run" for b in blocks), f"{path.name} has no runnable ```python block"
    left_out = []
    failures = run_lesson(path, left_out)
    if failures:
        pytest.fail("\n".join(f"{where}: {why}" for where, why in failures), pytrace=False)
    text = path.read_text(encoding="utf-8")
    for name in FIGURE_LINK.findall(text):                  # the lesson draws every figure it shows
        figure = tmp_path / "figures" / name
        assert figure.is_file() and figure.read_bytes()[:4] == b"\x89PNG", \
            f"{path.name} shows figures/{name}, but running it did not write that PNG"
    if left_out:
        pytest.skip(f"{path.name}: every other block passed; not run without the data: "
                    f"{'; '.join(left_out)} (python -m glassformer.data fetch)")


def lesson_needs(path):
    """The data files a whole lesson needs (its needs-data lines)."""
    return NEEDS_DATA.findall(path.read_text(encoding="utf-8"))


def test_a_block_that_needs_absent_data_is_left_out_with_its_output(tmp_path):
    """Only the marked block and its output are left out; a failing block elsewhere still fails."""
    lesson = tmp_path / "99-x.md"
    lesson.write_text("```python\nx = 1\nprint(x)\n```\n\n```output\n1\n```\n\n"
                      "<!-- block needs-data: no-such-folder/file.txt -->\n```python\nprint(open('nope').read())\n```\n\n"
                      "```output\nwhatever\n```\n\n```python\nprint(x + 1)\n```\n\n```output\n3\n```\n")
    left_out = []
    failures = run_lesson(lesson, left_out)
    assert left_out == ["line 11 needs no-such-folder/file.txt"]
    assert [where for where, _ in failures] == ["99-x.md, output block at line 23"]   # 2 is not 3
    assert lesson_needs(lesson) == []


def test_a_block_that_prints_without_an_output_block_fails(tmp_path):
    """Issue 28: a printed result is shown below its block. A silent block needs no output block; a
    printing one followed by prose, another block or nothing fails, naming the block and what it printed."""
    lesson = tmp_path / "99-x.md"
    lesson.write_text("```python\nx = 1\n```\n\n```python\nprint(x)\n```\n\n```output\n1\n```\n\n"
                      "```python\nprint(x + 1)\n```\n\nIt prints 2.\n\n```python\nprint(x + 2)\n```\n")
    failures = run_lesson(lesson)
    assert [where for where, _ in failures] == ["99-x.md, python block 3 (line 13)",
                                                "99-x.md, python block 4 (line 19)"]
    assert "no ```output block follows it" in failures[0][1] and failures[0][1].endswith("2\n")


def test_the_course_has_lessons():
    names = [p.name[:2] for p in LESSON_FILES]
    assert names == [f"{i:02d}" for i in range(1, len(names) + 1)], \
        f"lessons must be numbered 01, 02, ... without gaps, found {names}"
    assert len(names) >= 17


def test_no_run_blocks_are_few_and_compile():
    counts = {p.name: sum(b["kind"] == "no-run" for b in parse_blocks(p)) for p in LESSON_FILES}
    total = sum(counts.values())
    assert total <= MAX_NO_RUN, f"{total} blocks are marked no-run (at most {MAX_NO_RUN}): {counts}"
    for p in LESSON_FILES:                                  # not run, but at least valid Python
        for b in parse_blocks(p):
            if b["kind"] == "no-run":
                compile(b["code"], f"{p.name} line {b['line']}", "exec")


@pytest.mark.parametrize("path", LESSON_FILES, ids=lesson_id)
def test_printed_results_are_checked(path):
    """A result shown after a run block is an ```output block (checked), never plain ```text."""
    blocks = parse_blocks(path)
    for before, block in zip(blocks, blocks[1:]):
        assert not (before["kind"] == "run" and block["lang"] == "text"), \
            f"{path.name} line {block['line']}: a printed result goes in an ```output block"
        if block["kind"] == "output":
            assert before["kind"] == "run", \
                f"{path.name} line {block['line']}: an ```output block must follow a run block"


# ----------------------------------------------------------------------------------------- quotes

def scopes(tree):
    """{dotted name: (first line, last line)} of every def, class and module constant (decorators in)."""
    found = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                found.setdefault(name, (first, child.end_lineno))
                visit(child, name + ".")
            elif isinstance(child, ast.Assign) and not prefix:     # a module-level constant
                for target in child.targets:
                    if isinstance(target, ast.Name):
                        found.setdefault(target.id, (child.lineno, child.end_lineno))

    visit(tree, "")
    return found


def docstring_lines(tree):
    """Line numbers of every docstring in a module."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def _indent(line):
    return len(line) - len(line.lstrip(" "))


def _squeeze(line):
    return " ".join(line.split())


def match_chunk(chunk, source, start, skippable):
    """Indices of the source lines `chunk` matches contiguously from source[start], or None."""
    i, offset, matched = start, None, []
    for q in chunk:
        while i < len(source) and i in skippable and _squeeze(source[i]) != _squeeze(q):
            i += 1                                          # blank lines and docstrings may be left out
        if i >= len(source) or _squeeze(source[i]) != _squeeze(q):
            return None
        shift = _indent(source[i]) - _indent(q)
        if offset is None:
            offset = shift
        elif shift != offset:
            return None                                     # the quote re-indented part of it
        matched.append(i)
        i += 1
    return matched


def split_chunks(lines):
    """The quote's non-blank lines, cut into contiguous chunks at its `...` lines."""
    chunks, current = [], []
    for q in lines:
        if q.strip() == "...":
            chunks.append(current)
            current = []
        elif q.strip():
            current.append(q)
    return [c for c in chunks + [current] if c]


def quote_problem(code, repo=REPO):
    """Why a ```python quote block does not quote its named code faithfully, or None."""
    lines = code.splitlines()
    header = QUOTE_HEADER.match(lines[0].strip()) if lines else None
    if not header:
        return "the first line must name the source: `# src/PATH.py: Class.method, function`"
    path, names = header.group(1), [n.strip() for n in header.group(2).split(",")]
    source_file = repo / path
    if not source_file.is_file():
        return f"{path} does not exist"
    text = source_file.read_text(encoding="utf-8")
    tree, source = ast.parse(text), text.splitlines()
    spans = scopes(tree)
    unknown = [n for n in names if n not in spans]
    if unknown:
        return f"{path} defines no {', '.join(unknown)}"
    skippable = {n - 1 for n in docstring_lines(tree)} | {i for i, s in enumerate(source) if not s.strip()}

    def owner(i):                                           # the named scope holding source line i
        return next((n for n in names if spans[n][0] - 1 <= i < spans[n][1]), None)

    chunks = split_chunks(lines[1:])
    if not chunks:
        return "the quote is empty"
    pos, used = 0, set()
    for chunk in chunks:
        for start in range(pos, len(source)):
            matched = match_chunk(chunk, source, start, skippable)
            if matched and all(owner(i) for i in matched):
                break
        else:
            return (f"the lines from {chunk[0].strip()!r} are not, contiguously and in this order, "
                    f"in {' or '.join(names)} of {path}")
        used.update(owner(i) for i in matched)
        pos = matched[-1] + 1
    idle = [n for n in names if n not in used]
    return f"nothing quoted comes from {', '.join(idle)}" if idle else None


GLUED_FENCE = re.compile(r"\S.*```[\w-]*( [\w-]+)?\s*$")   # text, then a fence that opens a block


def glued_fences(text):
    """Line numbers where a fence ends a line of prose: markdown does not open a block there, so the
    code after it is neither run nor checked, and every later fence pairs with the wrong one."""
    return [n for n, line in enumerate(text.splitlines(), start=1) if GLUED_FENCE.match(line)]


@pytest.mark.parametrize("path", LESSON_FILES, ids=lesson_id)
def test_fences_open_on_their_own_line(path):
    assert glued_fences(path.read_text(encoding="utf-8")) == [], f"{path.name}: a fence after text"


def test_glued_fence_check_fails_on_lesson_3s_old_line():
    """The line lesson 3 once had (its He-init block and LayerNorm quote went unchecked) must fail;
    a fence named inside a sentence, as lessons/README.md does, must not."""
    assert glued_fences("initialisation closely): ```python\nx = 1\n```") == [1]
    assert glued_fences("paste its ```python blocks in order,") == []
    assert glued_fences("```python quote\n```") == []


@pytest.mark.parametrize("path", LESSON_FILES, ids=lesson_id)
def test_quotes_match_the_code(path):
    """Every ```python quote block quotes real, contiguous lines of the function or class it names."""
    for block in parse_blocks(path):
        if block["kind"] == "quote":
            problem = quote_problem(block["code"])
            assert problem is None, f"{path.name} line {block['line']}: {problem}"


# -------------------------------------------------------------------------- exercises, the walk

@pytest.mark.parametrize("path", LESSON_FILES, ids=lesson_id)
def test_lesson_ends_with_exercises_and_has_walk_section(path):
    """The last section is `## Exercises`: the lesson's exercise file, each exercise in it, the command."""
    text = path.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.M)
    assert sections[-1].startswith("Exercises"), f"{path.name}: the last section must be '## Exercises'"
    last = sections[-1]
    assert exercise_file(path) in last, f"{path.name}: the exercises section must name {exercise_file(path)}"
    assert f"python -m glassformer.lessons check {path.name[:2]}" in last, \
        f"{path.name}: the exercises section must give `python -m glassformer.lessons check {path.name[:2]}`"
    exercises = REPO / exercise_file(path)
    if exercises.is_file():                                 # the section lists what the file asks
        asked = [node.name for node in ast.parse(exercises.read_text(encoding="utf-8")).body
                 if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]
        unlisted = [name for name in asked if f"`{name}`" not in last]
        assert not unlisted, f"{path.name}: the exercises section does not list {unlisted}"
    assert not re.search(r"^### Exercise", text, flags=re.M), \
        f"{path.name}: exercises live in {exercise_file(path)}, not as solved blocks in the lesson"
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


# ------------------------------------------------------------------------- the checkers themselves

def test_parser_kinds(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("```python\na = 1\n```\n<!-- no-run -->\n\n```python\nb\n```\n"
                  "```python no-run\nc\n```\n```python quote\nd\n```\n```bash\ne\n```\n"
                  "```output\n1\n```\n")
    assert [b["kind"] for b in parse_blocks(md)] == ["run", "no-run", "no-run", "quote", "other", "output"]


POSITIONAL = "# src/glassformer/layers/positional.py: "
LEARNED_BACKWARD = ("def backward(self, dout):  # dout: (B, T, C)\n    a, b = self.span\n"
                    "    self.dP[a:b] += dout.sum(axis=0)\n    return dout\n")


def test_quote_checker_accepts_a_faithful_quote():
    assert quote_problem(POSITIONAL + "LearnedPositionalEmbedding.backward\n" + LEARNED_BACKWARD) is None
    assert quote_problem(POSITIONAL + "LearnedPositionalEmbedding\n" + LEARNED_BACKWARD) is None


def test_quote_checker_fails_on_the_wrong_function():
    """Lesson 1's old quote: the same lines named as another class's backward must fail."""
    problem = quote_problem(POSITIONAL + "SinusoidalPositionalEncoding.backward\n" + LEARNED_BACKWARD)
    assert problem and "not, contiguously" in problem


def test_quote_checker_fails_on_a_gap_without_dots():
    head = "def backward(self, dout):  # dout: (B, T, C)\n"
    gapped = head + "    self.dP[a:b] += dout.sum(axis=0)\n"                   # skips a line
    assert quote_problem(POSITIONAL + "LearnedPositionalEmbedding.backward\n" + gapped)
    dotted = head + "    ...\n    self.dP[a:b] += dout.sum(axis=0)\n"
    assert quote_problem(POSITIONAL + "LearnedPositionalEmbedding.backward\n" + dotted) is None


def test_quote_checker_fails_on_names_order_and_indentation():
    assert "defines no" in quote_problem(POSITIONAL + "LearnedPositionalEmbedding.backwards\n"
                                         + LEARNED_BACKWARD)
    assert "first line" in quote_problem(LEARNED_BACKWARD)
    swapped = LEARNED_BACKWARD.splitlines()[0] + "\n    ...\n    return dout\n    ...\n    a, b = self.span\n"
    assert quote_problem(POSITIONAL + "LearnedPositionalEmbedding.backward\n" + swapped)
    flat = LEARNED_BACKWARD.replace("    a, b", "a, b")                   # indentation changed
    assert quote_problem(POSITIONAL + "LearnedPositionalEmbedding.backward\n" + flat)
    two = POSITIONAL + "LearnedPositionalEmbedding.backward, sinusoidal_table\n" + LEARNED_BACKWARD
    assert "nothing quoted comes from sinusoidal_table" in quote_problem(two)


def test_output_checker():
    assert output_mismatch("accuracy 0.21\n", "accuracy 0.22\n") is None          # last digit
    assert output_mismatch("accuracy 0.21\n", "accuracy 0.09\n")
    assert output_mismatch("accuracy 0.21\n", "accuracy 0.09\n", atol=0.15) is None
    assert output_mismatch("loss 2.30\n", "loss 2.3\n") is None
    assert output_mismatch("(1, 6, 8)\n", "(1, 6, 9)\n")                          # integers exact
    assert output_mismatch("18,058 parameters\n", "18,059 parameters\n", atol=0.5)   # even with atol
    assert output_mismatch("loss  1.5e+03\n", "loss 1.6e+03\n") is None
    assert output_mismatch("loss 1.5e+03\n", "lost 1.5e+03\n")                    # text exact
    assert output_mismatch("a\n...\nd\n", "a\nb\nc\nd\n") is None                 # a gap
    assert output_mismatch("a\nd\n", "a\nb\nd\n")
    assert output_mismatch("[0.76 0.59]\n", "[ 0.76  0.59 ]\n") is None           # spacing is free
    assert output_mismatch("a\n", "a\nextra\n")                                   # nothing extra
    assert output_tolerance("atol=0.05 rtol=1e-2") == (0.05, 0.01)
    shape = output_tolerance("shape")                                             # timings
    assert output_mismatch("T 128: 0.3 ms\n", "T 128: 236.8 ms\n", *shape) is None
    assert output_mismatch("T 128: 0.3 ms\n", "T 129: 0.3 ms\n", *shape)          # integers exact
    assert output_mismatch("T 128: 0.3 ms\n", "T 128: 0.3 s\n", *shape)           # text exact
