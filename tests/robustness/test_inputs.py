"""glassformer.inputs on its own: the race open_input closes, stdin, and what the bounded readers let through."""
import io
import os
import stat
import sys

import pytest

from glassformer import inputs
from glassformer.errors import UserError


def test_a_fifo_swapped_in_after_the_stat_is_refused_not_waited_on(tmp_path, monkeypatch):
    """stat says regular file, then the path is a FIFO: the non-blocking open returns and fstat refuses it."""
    regular, fifo = tmp_path / "config.json", tmp_path / "fifo"
    regular.write_text("{}")
    os.mkfifo(fifo)
    real_stat = os.stat
    monkeypatch.setattr(inputs.os, "stat", lambda p, *a, **k: real_stat(regular if str(p) == str(fifo) else p))
    with pytest.raises(UserError, match="fifo: changed while it was opened .now a named pipe"):
        inputs.read_json(fifo)


def test_stdin_only_where_allowed(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Question: hi?\n"), "utf-8"))
    assert inputs.read_text("-", "prompt", allow_stdin=True) == "Question: hi?\n"
    with pytest.raises(UserError, match="-: stdin is not read here"):
        inputs.read_text("-", "prompt")


def test_a_stream_passes_only_where_the_caller_streams(tmp_path):
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    w = os.open(fifo, os.O_RDWR)                            # a writer end, so the reader's open returns
    try:
        os.write(w, b"abc")
        with inputs.open_input(fifo, "text", binary=True, allow_stream=True) as f:
            assert stat.S_ISFIFO(os.fstat(f.fileno()).st_mode) and f.read(3) == b"abc"
    finally:
        os.close(w)
    with pytest.raises(UserError, match="named pipe"):
        inputs.open_input(fifo, "text")


@pytest.mark.parametrize("text, depth", [('{"a": "[[[[", "b": [[1]]}', 3), ('"\\"[["', 0), ("[]" * 500, 1)])
def test_nesting_depth_skips_strings(text, depth):
    assert inputs.nesting_depth(text) == depth


def test_toml_strings_and_comments_do_not_count_as_nesting():
    deep = "[" * 200
    data = inputs.parse_toml(f"a = '{deep}'\nb = \"{deep}\"  # {deep}\nc = '''\n{deep}\n'''\n", "t.toml")
    assert data["a"] == deep and data["c"] == deep + "\n"


def test_numbers_a_json_file_may_hold():
    assert inputs.parse_json('{"seed": 18446744073709551615, "lr": 3e-4, "x": -0.0}', "c") == \
        {"seed": 2 ** 64 - 1, "lr": 3e-4, "x": -0.0}
    assert inputs.parse_json('{"best": Infinity}', "h", allow_nan=True) == {"best": float("inf")}
    with pytest.raises(UserError, match="h: Infinity is not a number allowed here"):
        inputs.parse_json('{"best": Infinity}', "h")


def test_csv_rows_name_the_line_a_row_ends_on_and_skip_blank_lines(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text('step,val_loss\n1,0.5\n\n"2\n",x\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"m.csv:5: val_loss: 'x' is not a number"):   # a quoted newline
        inputs.read_csv_rows(path)
    path.write_text("step,note\n1,hello\n\n2,\n", encoding="utf-8")
    assert inputs.read_csv_rows(path, numeric=("step",)) == [{"step": 1, "note": "hello"}, {"step": 2, "note": ""}]
