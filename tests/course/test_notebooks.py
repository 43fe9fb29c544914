"""The course as Jupyter notebooks: `python -m glassformer.lessons notebook` writes every lesson as
lessons/notebooks/NN-*.ipynb; here each generated notebook runs under nbclient, in a fresh kernel, and
every code cell must print what the lesson's ```output block after it shows, by tests/test_lessons.py's
comparison (its tolerances, its `...` gaps). GPU (no-run) cells are tagged skip-execution and not run;
a cell that needs data which is absent is tagged so too, as test_lessons leaves that block out.

Skipped, with the reason, without the `course` extra (jupytext, nbclient, ipykernel).
"""
import io
import json
import os
import sys
from pathlib import Path

import pytest

COURSE = 'pip install -e ".[course]"'
for _name in ("jupytext", "nbclient", "ipykernel"):
    pytest.importorskip(_name, reason=f"the notebooks need {_name}: {COURSE}")

import glassformer  # noqa: E402
from glassformer.errors import run_main  # noqa: E402
from glassformer.cli.lessons import command as lessons_main  # noqa: E402
from glassformer.lessons.blocks import parse_blocks  # noqa: E402
from glassformer.lessons.notebooks import SKIP_TAG, notebook, write_notebooks  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import CellExecutionError  # noqa: E402
from test_lessons import FIGURE_LINK, LESSON_FILES, SHARED_DATA, lesson_id, lesson_needs, output_mismatch, \
    output_tolerance  # noqa: E402

CELL_SECONDS = 600                                          # one cell; the slowest lesson takes ~12 s


def meta(cell):
    """The cell's place in its lesson: {lesson, line, kind[, needs]} or {lesson, output_of}."""
    return cell.metadata.get("glassformer", {})


def expected_outputs(path):
    """{line of a run block: the ```output block right after it} for a lesson file."""
    blocks = parse_blocks(path)
    return {before["line"]: block for before, block in zip(blocks, blocks[1:])
            if before["kind"] == "run" and block["kind"] == "output"}


def printed(cell):
    """What an executed code cell wrote to stdout (not its displayed value, which exec() never shows)."""
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def leave_out_absent_data(nb):
    """Tag the cells whose data is not here skip-execution; return 'line N needs FILE' for each."""
    left_out = []
    for cell in nb.cells:
        needs = meta(cell).get("needs")
        if cell.cell_type == "code" and needs and not (SHARED_DATA / needs).is_file():
            cell.metadata.setdefault("tags", []).append(SKIP_TAG)
            left_out.append(f"line {meta(cell)['line']} needs {needs}")
    return left_out


def execute(nb, folder):
    """Run the notebook in a fresh python3 kernel whose working folder is `folder`; None, or why it stopped."""
    client = NotebookClient(nb, timeout=CELL_SECONDS, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}})
    try:
        client.execute()
    except CellExecutionError as e:
        for cell in nb.cells:
            for o in cell.get("outputs", []):
                if o.get("output_type") == "error":
                    return f"the cell of line {meta(cell).get('line')} raised {o['ename']}: {o['evalue']}"
        return f"a cell raised: {e}"
    return None


def notebook_failures(path, nb):
    """[(where, why)] for every executed code cell whose printout is not the lesson's output block."""
    expected, failures = expected_outputs(path), []
    for cell in nb.cells:
        m = meta(cell)
        if cell.cell_type != "code" or m.get("kind") != "run" or SKIP_TAG in cell.metadata.get("tags", []):
            continue
        block = expected.get(m["line"])
        if block is None:
            continue
        why = output_mismatch(block["code"], printed(cell), *output_tolerance(block["info"]))
        if why:
            failures.append((f"{path.name}, the cell of line {m['line']}", f"{why}\n--- printed ---\n{printed(cell)}"))
    return failures


def run_notebook(path, tmp_path, monkeypatch):
    """Generate the lesson's notebook into tmp_path, execute it there; (failures, left-out blocks)."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("GLASSFORMER_DATA", str(SHARED_DATA))          # the kernel inherits the environment
    source = str(Path(glassformer.__file__).resolve().parents[1])     # the kernel imports this glassformer
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])))
    [written] = write_notebooks([path], tmp_path)
    nb = notebook_from(written)
    left_out = leave_out_absent_data(nb)
    stopped = execute(nb, tmp_path)
    if stopped:
        return [(path.name, stopped)], left_out
    return notebook_failures(path, nb), left_out


def notebook_from(written):
    """The written .ipynb, read back as nbformat reads it (what Jupyter opens)."""
    import nbformat
    return nbformat.read(str(written), as_version=4)


@pytest.mark.parametrize("path", LESSON_FILES, ids=lesson_id)
def test_notebook_runs_and_prints_the_lessons_outputs(path, tmp_path, monkeypatch):
    """Execute the lesson's notebook with nbclient; every printed output matches the lesson's block."""
    for needed in lesson_needs(path):
        if not (SHARED_DATA / needed).is_file():
            pytest.skip(f"{path.name} needs {needed}: put it in {SHARED_DATA} with python -m glassformer.data fetch")
    failures, left_out = run_notebook(path, tmp_path, monkeypatch)
    if failures:
        pytest.fail("\n".join(f"{where}: {why}" for where, why in failures), pytrace=False)
    for name in FIGURE_LINK.findall(path.read_text(encoding="utf-8")):   # drawn beside the notebook
        assert (tmp_path / "figures" / name).is_file(), f"{path.name}'s notebook did not draw figures/{name}"
    if left_out:
        pytest.skip(f"{path.name}: every other cell matched; not run without the data: {'; '.join(left_out)}")


PLANTED = """# Lesson 1: planted

Prose before the first cell, with [the exercises](exercises/01_x.py) and ![a figure](figures/f.png).

```python
x = 6 * 7
print(x)
```

```output
42
```

<!-- no-run -->
```python
raise SystemExit("a GPU cell must not run")
```

<!-- block needs-data: no-such-folder/file.txt -->
```python
print(open("no-such-file").read())
```

```output
whatever
```

```python
print(x + 0.5, "and", x)
```

```output
42.5 and 43
```

## Exercises

```bash
python -m glassformer.lessons check 01
```
"""


def test_a_cell_that_prints_other_than_the_lesson_fails(tmp_path, monkeypatch):
    """A planted wrong output block (43 for 42) is caught; GPU and absent-data cells are not run."""
    lesson = tmp_path / "lesson" / "01-planted.md"
    lesson.parent.mkdir()
    lesson.write_text(PLANTED, encoding="utf-8")
    failures, left_out = run_notebook(lesson, tmp_path, monkeypatch)
    assert left_out == ["line 20 needs no-such-folder/file.txt"]
    assert [where for where, _ in failures] == ["01-planted.md, the cell of line 28"], failures
    assert "42 is not 43" in failures[0][1] and "printed '42.5 and 42'" in failures[0][1]


def test_the_notebook_holds_the_lesson_cell_by_cell(tmp_path):
    """Code cells are the run and no-run blocks; outputs, quotes, bash and the exercises are markdown."""
    lesson = tmp_path / "01-planted.md"
    lesson.write_text(PLANTED, encoding="utf-8")
    cells = notebook(lesson).cells
    code = [c for c in cells if c.cell_type == "code"]
    assert [meta(c)["line"] for c in code] == [5, 15, 20, 28]
    assert [c.metadata.get("tags", []) for c in code] == [[], [SKIP_TAG], [], []]
    assert code[0].source == "x = 6 * 7\nprint(x)" and meta(code[2])["needs"] == "no-such-folder/file.txt"
    outputs = [c for c in cells if "output_of" in meta(c)]
    assert [meta(c)["output_of"] for c in outputs] == [5, 20, 28]
    assert "```text\n42\n```" in outputs[0].source
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "](../exercises/01_x.py)" in text and "](figures/f.png)" in text
    assert cells[-1].source.startswith("## Exercises") and "```bash" in cells[-1].source


@pytest.mark.parametrize("path", LESSON_FILES, ids=lesson_id)
def test_every_python_block_is_a_cell_in_order(path):
    """No run block is lost or reordered on the way to the notebook (the kernel-free half of the check)."""
    blocks = [b for b in parse_blocks(path) if b["kind"] in ("run", "no-run")]
    code = [c for c in notebook(path).cells if c.cell_type == "code"]
    assert [(meta(c)["line"], c.source) for c in code] == [(b["line"], b["code"].rstrip()) for b in blocks]
    assert all((SKIP_TAG in c.metadata.get("tags", [])) == (meta(c)["kind"] == "no-run") for c in code)


def test_the_command_writes_one_lesson_or_says_what_exists(tmp_path, capsys):
    err = io.StringIO()
    assert run_main(lessons_main, ["notebook", "7", "--out", str(tmp_path)], stderr=err) == 0
    assert capsys.readouterr().out.strip().endswith("07-backprop-by-hand.ipynb")
    [written] = tmp_path.iterdir()
    assert written.name == "07-backprop-by-hand.ipynb"
    assert json.loads(written.read_text(encoding="utf-8"))["metadata"]["kernelspec"]["name"] == "python3"
    assert run_main(lessons_main, ["notebook", "99", "--out", str(tmp_path)], stderr=err) == 2
    assert err.getvalue().startswith("error: no lesson '99'") and "01, 02" in err.getvalue()


def test_without_jupytext_the_command_says_which_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "jupytext", None)                 # import jupytext now fails
    err = io.StringIO()
    assert run_main(lessons_main, ["notebook", "07", "--out", str(tmp_path)], stderr=err) == 2
    assert 'pip install -e ".[course]"' in err.getvalue() and not list(tmp_path.iterdir())
