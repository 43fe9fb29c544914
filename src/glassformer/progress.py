"""What a long job prints while it works: the one progress meter (Meter: tokenising, BPE training,
evaluation, a training run's log lines), the one duration format, numbers with SI prefixes, and lines
that fit the terminal's width (wrapped setup lines, shell commands cut with backslashes).

Standard library and tqdm only (tqdm imported on first use), so every floor above may use it.
"""
import shutil
import sys
import textwrap
import time


def terminal_width():
    """Columns to fit in: the terminal's (or $COLUMNS), 80 when not a terminal, never under 40."""
    return max(40, shutil.get_terminal_size((80, 24)).columns)


def duration(seconds):
    """Seconds as 00:05, 01:23 or 1:02:03: tqdm's format, so the meter's ETA and every other duration
    read alike (the one duration format)."""
    from tqdm import tqdm
    return tqdm.format_interval(max(0.0, float(seconds)))




def si(x, unit=""):
    """9.41e9, "FLOP/s" -> "9.41 GFLOP/s" (no unit: "9.41G"): three significant digits, a prefix up to P."""
    x = float(f"{x:.3g}")                                   # 999.9 -> 1000: "1 k", not "1e+03"
    prefixes = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
    scale, prefix = next(((f, p) for f, p in prefixes if abs(x) >= f), (1, ""))
    return f"{x / scale:.3g}{' ' if unit else ''}{prefix}{unit}"


def step_line(step, steps, loss, lr, ms, rate, eta, width, flops=None, scale=None):
    """The Trainer's progress line: step, loss, lr, ms/it, tokens/s, model FLOP/s (flops: (FLOP/s,
    the machine's peak or None)), fp16's loss scale (scale: (scale, skipped steps)) and the ETA."""
    parts = [(f"step {step:>{len(str(steps))}}/{steps}",) * 2, (f"loss {loss:.4f}",) * 2,
             (f"lr {lr:.2e}", None), (f"{ms:.1f} ms/it", f"{ms:.1f}ms/it"),
             (f"{rate:,.0f} tok/s", f"{si(rate)} tok/s")]
    if flops is not None:                                   # model FLOP/s beside the machine's roof
        rate_flops, peak = flops
        text = si(rate_flops, "FLOP/s")
        if peak:
            share = f"{rate_flops / peak:.0%}"
            parts.append((f"{text} = {share} of {si(peak, 'FLOP/s')}", f"{text} {share}"))
        else:
            parts.append((text, text))
    if scale is not None:                                   # fp16: the loss scale, steps skipped
        parts.append((f"scale {scale[0]:g}, {scale[1]} skipped", f"x{scale[0]:g} {scale[1]}skip"))
    parts.append((f"ETA {duration(eta)}",) * 2)
    return progress_line(parts, width)


def progress_line(parts, width):
    """(long, short) parts as one line of at most width columns: the long forms joined by ' | ' when they
    fit, else the short ones (None: left out) joined by spaces."""
    line = " | ".join(long for long, _ in parts)
    if len(line) > width:
        line = " ".join(short for _, short in parts if short)
    return line[:width]


def first_fit(lines, width):
    """The first of the candidate lines (longest form first) that fits in width, else the last cut."""
    return next((line for line in lines if len(line) <= width), lines[-1][:width])


def wrap(text, width=None, indent="  "):
    """text with every line longer than width broken at spaces, continuations indented; a word
    (a path) is never cut, so copying it still works."""
    width = width or terminal_width()
    return "\n".join(line if len(line) <= width else
                     textwrap.fill(line, width, subsequent_indent=indent, break_long_words=False,
                                   break_on_hyphens=False)
                     for line in text.split("\n"))


def shell_wrap(text, width=None):
    """'continue with: python x.py --resume PATH' cut at spaces into lines ending ' \\', so the
    command pasted into a shell still runs as one."""
    width = width or terminal_width()
    if len(text) <= width:
        return text
    return " \\\n".join(textwrap.wrap(text, width - 2, subsequent_indent="    ", break_long_words=False,
                                      break_on_hyphens=False))


def fold(text, width=None):
    """Generated text with each line longer than width cut into pieces of width: every character kept."""
    width = width or terminal_width()
    return "\n".join(line[i:i + width] for line in text.split("\n")
                     for i in range(0, max(len(line), 1), width))


def key_values(params):
    """{"d_model": 64, "n_heads": 4} -> "d_model=64 n_heads=4": the KEY=VALUE form flags take."""
    return " ".join(f"{k}={v}" for k, v in params.items())


# ---- the progress meter ------------------------------------------------------------------------------------

COUNTED = "{desc}: {n:,.Df}/{total:,.Df}{unit} ({percentage:.0f}%), {rate_noinv_fmt}, {elapsed}, ETA {remaining}"
OPEN_ENDED = "{desc}: {n:,.Df}{unit}, {rate_noinv_fmt}, {elapsed}"


class Meter:
    """The one progress meter: `desc: done/total unit (%), rate, elapsed, ETA` on stderr (or `stream`).

    On a terminal tqdm redraws it in place (at most 4 times a second, cut to the width); in a pipe or
    a log it is a plain line each tenth of the total (every `every_s` seconds when the total is not
    known) and a last one at close, so a log stays readable and 80 columns wide. Counts are given in
    their own units and shown times `scale` (bytes as MB: unit " MB", scale 1e-6) with `digits`
    decimals; `initial`: the count it starts from (a resumed run's step), left out of the rate.
    pipe_lines=False: in a pipe the meter prints no line of its own, only write()'s (a training run's
    log lines are its record there). A training run's log lines go through write(), above the bar:

        meter = Meter("train", total=max_steps, unit=" steps", stream=log, initial=start_step)
        for step in ...: meter.set(step + 1)    # or meter.update(1), meter.set(done, note="loss 1.23")
        meter.write(line)                       # a log line that stays, above the meter
        meter.close()                           # the last state stays too
    """

    def __init__(self, desc, total=None, unit="", stream=None, live=None, scale=1, digits=0, initial=0,
                 every_s=30.0, pipe_lines=True):
        self.stream = sys.stderr if stream is None else stream
        self.live = is_terminal(self.stream) if live is None else live
        self.total, self.scale = total or None, scale       # 0 or None: no total, no ETA
        form = (COUNTED if self.total else OPEN_ENDED).replace(".D", f".{digits}") + "{postfix}"
        self.options = dict(desc=desc, unit=unit, unit_scale=True, bar_format=form,
                            total=self.total * scale if self.total else None, initial=initial * scale)
        self.n, self.note, self.every_s, self.printed = initial, "", every_s, None
        self.initial, self.pipe_lines = initial, pipe_lines
        self.tenth = int(10 * initial // self.total) if self.total else 0
        self.start = self.last = time.perf_counter()
        self.bar = self._tqdm() if self.live else None
        self.closed = False

    def _tqdm(self):
        from tqdm import tqdm
        return tqdm(file=self.stream, mininterval=0.25, ncols=terminal_width() - 1, leave=True, position=0,
                    **self.options)                         # position 0: one meter at a time, never nested

    def update(self, n=1, note=None):
        """n more done (in the counts' own units: merges, bytes, tokens)."""
        self.set(self.n + n, note)

    def set(self, done, note=None):
        """done so far, with an optional note after the figures (e.g. '1,234 tokens')."""
        step, self.n = done - self.n, done
        self.note = self.note if note is None else note
        if self.bar is not None:
            if note is not None:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(step * self.scale)
        elif self.pipe_lines and self._due():
            self._print()

    def _due(self):
        """In a pipe: has the next tenth of the total (or every_s seconds) been reached?"""
        if self.total:
            tenth = int(10 * self.n // self.total)
            due = self.tenth < tenth < 10
            self.tenth = max(self.tenth, tenth)
            return due
        now = time.perf_counter()
        due = now - self.last >= self.every_s
        self.last = now if due else self.last
        return due

    def remaining(self):
        """Seconds left at the mean rate since the start (counts from `initial` on); None without a total."""
        if not self.total:
            return None
        done = self.n - self.initial
        return (time.perf_counter() - self.start) / max(done, 1) * (self.total - self.n)

    def line(self):
        """The meter as one line of text, cut to the width."""
        from tqdm import tqdm
        return tqdm.format_meter(self.n * self.scale, elapsed=time.perf_counter() - self.start,
                                 ncols=terminal_width(), prefix=self.options["desc"], postfix=self.note or None,
                                 **{k: v for k, v in self.options.items() if k != "desc"})

    def _print(self):
        print(self.line(), file=self.stream, flush=True)
        self.printed = (self.n, self.note)

    def write(self, text):
        """A line of its own (training's log line), printed above the meter, which is redrawn."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self):
        """The last state as a line that stays (in a pipe: unless the last line printed says it)."""
        if self.closed:
            return
        if self.bar is not None:
            self.bar.close()
        elif self.pipe_lines and self.printed != (self.n, self.note):
            self._print()
        self.closed = True


def is_terminal(stream):
    """True when stream is a terminal (a live meter is redrawn in place there)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):                   # closed, or not a file
        return False
