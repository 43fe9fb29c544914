"""The lessons as Jupyter notebooks: lessons/NN-*.md -> lessons/notebooks/NN-*.ipynb, through jupytext.

blocks.py's parser cuts a lesson into its fenced blocks; this module writes them as jupytext's
markdown (a ```python fence or a region comment per cell) and lets jupytext read that into a notebook:
  ```python (run)      a code cell; metadata glassformer = {lesson, line, kind, needs}
  ```python no-run     a code cell tagged skip-execution (nbclient leaves it unrun), after a note
                       that it needs an NVIDIA GPU
  ```output            a markdown cell after its code cell: what the lesson printed, to compare.
                       Not the code cell's stored output: an output block is a pattern (`...`
                       lines, atol=), and a stored output would vanish the moment the cell runs
  prose, quotes, ```bash, ```text    markdown cells, cut at each `## ` heading, so the
                       exercises section (the exercise pointers) is a markdown cell of its own
Relative links gain `../` (the notebooks sit one folder down), except figures/, which the
notebook's own cells draw beside it, as a lesson's do.
"""
import json
import re
from pathlib import Path

from ..errors import UserError
from .blocks import parse_text
from .runner import lessons_root

KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}
SKIP_TAG = "skip-execution"                    # nbclient's NotebookClient.skip_cells_with_tag
GPU_NOTE = ("*The next cell needs an NVIDIA GPU and CuPy (`pip install -e \".[gpu]\"`); it is not "
            "run by the tests. On a CPU, skip it: run the cells after it one by one, or with "
            "\"Run All Below\".*")
RELATIVE_LINK = re.compile(r"\]\((?!figures/|[a-z]+:|#|/)([^)\s]+)\)")
LESSON_NAME = re.compile(r"^\d\d-[\w-]+\.md$")


def lesson_files(root=None):
    """Every lessons/NN-*.md, in order."""
    return sorted(p for p in Path(root or lessons_root()).glob("[0-9][0-9]-*.md") if LESSON_NAME.match(p.name))


def choose(which, root=None):
    """The lessons `which` names: 'all', or a number ('7', '07'); UserError for an unknown one."""
    files = lesson_files(root)
    if which in (None, "all"):
        return files
    head = str(which).split("-")[0]
    chosen = [p for p in files if head.isdigit() and p.name[:2] == f"{int(head):02d}"]
    if not chosen:
        raise UserError(f"no lesson {which!r} in {Path(root or lessons_root())}: choose 'all' or one of "
                        f"{', '.join(p.name[:2] for p in files)}")
    return chosen


def relink(markdown):
    """Point the lesson's relative links from lessons/notebooks/ (figures/ stays: the cells draw it)."""
    return RELATIVE_LINK.sub(lambda m: f"](../{m.group(1)})", markdown)


def region(text, metadata=None):
    """One markdown cell in jupytext's markdown, whatever fences it holds."""
    meta = f" glassformer={json.dumps(metadata)}" if metadata else ""
    return f"<!-- #region{meta} -->\n{text.strip()}\n<!-- #endregion -->\n"


def code_cell(block, lesson):
    """A lesson's ```python block as a jupytext code cell, its place in the lesson in the metadata."""
    meta = {"lesson": lesson, "line": block["line"], "kind": block["kind"]}
    if block["needs"]:
        meta["needs"] = block["needs"]
    tags = f' tags={json.dumps([SKIP_TAG])}' if block["kind"] == "no-run" else ""
    return f"```python{tags} glassformer={json.dumps(meta)}\n{block['code'].rstrip()}\n```\n"


def output_cell(block, lesson, run_line):
    """A lesson's ```output block as the markdown cell after its code cell."""
    stated = f" (checked with {block['info']})" if block["info"] else ""
    text = f"*The lesson printed{stated}:*\n\n```text\n{block['code'].rstrip()}\n```"
    return region(text, {"lesson": lesson, "output_of": run_line})


def prose_cells(lines):
    """The markdown between two code cells, as cells cut before each `## ` heading."""
    cells, current = [], []
    for line in lines:
        if line.startswith("## ") and any(s.strip() for s in current):
            cells.append(current)
            current = []
        current.append(line)
    cells.append(current)
    return [region(relink("\n".join(c))) for c in cells if any(s.strip() for s in c)]


def jupytext_markdown(text, name):
    """A lesson's markdown rewritten as jupytext's markdown: one region or fence per notebook cell.

    The cells in order: the prose up to each run, no-run or output block, then that block's cell.
    """
    lines, out, start, run_line = text.splitlines(), [], 0, None
    for block in parse_text(text, name):
        if block["kind"] not in ("run", "no-run", "output"):
            continue                                           # quotes, bash, text: stay in the prose
        out += prose_cells(lines[start:block["line"] - 1])
        if block["kind"] == "no-run":
            out.append(region(GPU_NOTE))
        if block["kind"] == "output":
            out.append(output_cell(block, name, run_line))
        else:
            out.append(code_cell(block, name))
            run_line = block["line"]
        start = block["end"]
    out += prose_cells(lines[start:])
    return "\n".join(out)


def notebook(path):
    """The notebook (an nbformat NotebookNode) of one lesson file."""
    import jupytext                                              # the `course` extra
    path = Path(path)
    nb = jupytext.reads(jupytext_markdown(path.read_text(encoding="utf-8"), path.name), fmt="md")
    nb.metadata = {"kernelspec": dict(KERNEL), "language_info": {"name": "python"},
                   "glassformer": {"lesson": path.name}}
    return nb


def write_notebooks(paths, folder):
    """Write each lesson's notebook into `folder` as NN-name.ipynb; return the paths written."""
    jupytext = need_course_extra()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        target = folder / (Path(path).stem + ".ipynb")
        jupytext.write(notebook(path), target, fmt="ipynb")
        written.append(target)
    return written


def need_course_extra():
    """jupytext, or a UserError that says how to install it."""
    try:
        import jupytext
    except ImportError:
        raise UserError("the notebooks need jupytext: pip install -e \".[course]\" (jupytext, nbclient, "
                        "ipykernel), from the repository root") from None
    return jupytext


def write_lessons(which="all", folder=None, out=None):
    """Write the notebooks of the lessons `which` names into `folder` (lessons/notebooks), naming each."""
    need_course_extra()
    chosen = choose(which)
    for path in write_notebooks(chosen, folder or lessons_root() / "notebooks"):
        print(f"wrote {path}", file=out)
    return 0
