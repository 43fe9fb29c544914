"""The lessons' fenced blocks: the one parser of lessons/NN-*.md, read by tests/test_lessons.py
(which runs and checks the blocks) and by notebooks.py (which turns them into notebook cells).

Kinds, by the fence's info string (tests/test_lessons.py's docstring says what each means):
run (```python), no-run (```python no-run, or a `<!-- no-run -->` line just before the fence),
quote (```python quote), output (```output ...), other (any other language).
"""
import re
from pathlib import Path

from ..errors import UserError

NO_RUN_COMMENT = "<!-- no-run -->"
BLOCK_NEEDS_DATA = re.compile(r"^<!-- block needs-data: (\S+) -->$")


def parse_blocks(path):
    """[{"kind", "code", "line", "end", "info", "lang", "needs"}] for every fenced block of a markdown file."""
    return parse_text(Path(path).read_text(encoding="utf-8"), Path(path).name)


def parse_text(text, name):
    """parse_blocks on markdown text; `name` only labels the error for an unclosed block."""
    out, block, previous = [], None, ""
    for n, line in enumerate(text.splitlines(), start=1):
        if block is None:
            if line.startswith("```"):
                lang, _, info = line[3:].strip().partition(" ")
                needs = BLOCK_NEEDS_DATA.match(previous.strip())
                block = {"lang": lang, "info": info.strip(), "line": n, "lines": [],
                         "marked": previous.strip() == NO_RUN_COMMENT,
                         "needs": needs.group(1) if needs else None}
            elif line.strip():
                previous = line
        elif line.rstrip() == "```":
            out.append(finish(block, end=n))
            block, previous = None, ""
        else:
            block["lines"].append(line)
    if block is not None:
        raise UserError(f"{name}: the block opened on line {block['line']} is never closed: "
                        "end it with a line of three backticks")
    return out


def finish(block, end=None):
    """Classify a parsed block as run / no-run / quote / output / other; `end` is its closing fence's line."""
    kind = "other"
    if block["lang"] == "python":
        if block["info"].startswith("quote"):
            kind = "quote"
        elif block["info"].startswith("no-run") or block["marked"]:
            kind = "no-run"
        else:
            kind = "run"
    elif block["lang"] == "output":
        kind = "output"
    return {"kind": kind, "code": "\n".join(block["lines"]) + "\n", "line": block["line"], "end": end,
            "info": block["info"], "lang": block["lang"], "needs": block["needs"]}
