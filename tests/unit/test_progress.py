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


class Terminal(io.StringIO):
    """A stream that says it is a terminal: the meter draws its bar there."""

    def isatty(self):
        return True


def small_trainer(log):
    """A Trainer of a tiny char LM, a log line each step, on the given log stream."""
    import numpy as np
    from glassformer.data import lm_batches
    from glassformer.layers.loss import CrossEntropyLoss
    from glassformer.models import build_model, lm_config
    from glassformer.train import TrainConfig, Trainer
    model = build_model(lm_config("tiny", 11, d_model=8, n_heads=2, n_layers=1, max_len=8),
                        np.random.default_rng(0))
    config = TrainConfig(steps=3, warmup=1, log_interval=1, eval_interval=0)
    return Trainer(model, CrossEntropyLoss(), lm_batches(np.arange(200) % 11, 2, 8), config, log=log)


def test_in_a_pipe_pipe_lines_false_prints_only_the_written_lines():
    out = io.StringIO()
    meter = Meter("train", total=10, unit=" steps", stream=out, pipe_lines=False)
    for step in range(1, 11):
        meter.set(step)
        if step % 5 == 0:
            meter.write(f"step {step}")
    meter.close()
    assert out.getvalue() == "step 5\nstep 10\n"
    assert meter.remaining() == 0.0 and Meter("x").remaining() is None


def test_the_trainer_logs_through_the_meter():
    pipe, terminal = io.StringIO(), Terminal()
    small_trainer(pipe).fit()
    small_trainer(terminal).fit()
    heads = ["step 1/3", "step 2/3", "step 3/3"]
    assert [line.split(" | ")[0] for line in pipe.getvalue().splitlines()] == heads   # a pipe: as before
    text = terminal.getvalue()                                  # a terminal: the same lines, the bar below
    assert [line.split(" | ")[0] for line in lines_of(text) if line.startswith("step ")] == heads
    assert "\rtrain: " in text and lines_of(text)[-1].startswith("train: 3/3 steps (100%)")
    assert "loss " in lines_of(text)[-1]
