"""What a run prints while it trains: numbers with SI prefixes, durations, one progress line that fits
the terminal's width."""


def format_seconds(s):
    s = int(max(s, 0))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def si(x, unit=""):
    """9.41e9, "FLOP/s" -> "9.41 GFLOP/s" (no unit: "9.41G"): three significant digits, a prefix up to P."""
    x = float(f"{x:.3g}")                                   # 999.9 -> 1000: "1 k", not "1e+03"
    prefixes = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
    scale, prefix = next(((f, p) for f, p in prefixes if abs(x) >= f), (1, ""))
    return f"{x / scale:.3g}{' ' if unit else ''}{prefix}{unit}"


def progress_line(parts, width):
    """(long, short) parts as one line of at most width columns: the long forms joined by ' | ' when they
    fit, else the short ones (None: left out) joined by spaces."""
    line = " | ".join(long for long, _ in parts)
    if len(line) > width:
        line = " ".join(short for _, short in parts if short)
    return line[:width]
