"""What a run prints while it trains: numbers with SI prefixes, durations, lines that fit the
terminal's width (the progress line, wrapped setup lines, shell commands cut with backslashes)."""
import shutil
import textwrap


def terminal_width():
    """Columns to fit in: the terminal's (or $COLUMNS), 80 when not a terminal, never under 40."""
    return max(40, shutil.get_terminal_size((80, 24)).columns)


def format_seconds(s):
    s = int(max(s, 0))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


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
    parts.append((f"ETA {format_seconds(eta)}",) * 2)
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
