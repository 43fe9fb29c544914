"""The one progress meter (progress.Meter) and the one duration format (progress.duration)."""
import io
import re

from glassformer import progress
from glassformer.progress import Meter, duration


def lines_of(text):
    return [line for line in re.split(r"[\r\n]", text) if line.strip()]


def test_duration_is_the_one_format_everywhere():
    assert [duration(s) for s in (0, 5.4, 83, 3723, -2)] == ["00:00", "00:05", "01:23", "1:02:03", "00:00"]
    assert not hasattr(progress, "format_seconds")              # one name for it
    from glassformer.cli import common
    assert not hasattr(common, "clock")                         # the second formatter is gone


def test_in_a_pipe_a_line_each_tenth_and_the_last_one_once():
    out = io.StringIO()
    meter = Meter("scored", total=1_115_393, unit=" tokens", stream=out)
    for done in range(0, 1_115_394, 4096):
        meter.set(done)
    meter.set(1_115_393)
    meter.close()
    meter.close()                                               # closing twice prints nothing more
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and 10 <= len(lines) <= 11, lines
    assert all(len(line) <= 80 and line.startswith("scored: ") and "tokens/s" in line and "ETA" in line
               for line in lines), lines
    assert lines[-1].startswith("scored: 1,115,393/1,115,393 tokens (100%)"), lines[-1]


def test_scaled_counts_with_a_note_and_no_total():
    out = io.StringIO()
    meter = Meter("tokenising", unit=" MB", scale=1e-6, digits=1, stream=out)
    meter.update(2_500_000)
    meter.update(0, note="1,234 tokens")
    assert out.getvalue() == ""                                 # no total: a line every 30 s, and at close
    meter.close()
    assert re.fullmatch(r"tokenising: 2\.5 MB, [\d.]+(k)? MB/s, 00:00, 1,234 tokens\n", out.getvalue()), out.getvalue()


def test_on_a_terminal_tqdm_redraws_one_line_and_log_lines_go_above():
    out = io.StringIO()
    meter = Meter("train", total=100, unit=" steps", stream=out, live=True, initial=40)
    for step in range(41, 101):
        meter.set(step, note="loss 1.50")
    meter.write("step 100 | loss 1.5000")
    meter.close()
    text = out.getvalue()
    assert "\r" in text and text.endswith("\n") and "step 100 | loss 1.5000\n" in text
    assert lines_of(text)[-1].startswith("train: 100/100 steps (100%)") and "loss 1.50" in lines_of(text)[-1]
    assert all(len(line) < 80 for line in lines_of(text))


def test_a_narrow_terminal_cuts_the_line(monkeypatch):
    monkeypatch.setattr(progress, "terminal_width", lambda: 40)
    meter = Meter("a long description of the job", total=10, unit=" things", stream=io.StringIO())
    meter.set(10)
    assert len(meter.line()) == 40
