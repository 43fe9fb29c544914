"""Pictures of a model: terminal heatmaps, loss/accuracy curves and attention maps (PNG)."""
import os
from pathlib import Path

import numpy as np

SHADES = " ░▒▓█"                    # light to dark; Unicode block elements
ASCII_SHADES = " .:*#"               # the same five levels for terminals without Unicode
MASKED = "·"                         # an exactly-zero weight (e.g. above the causal diagonal)


def shade_chars(stream):
    """(shades, masked mark) that `stream` can print: Unicode when its encoding allows it."""
    encoding = getattr(stream, "encoding", None)
    if encoding is None:                                    # io.StringIO: text, any character
        return SHADES, MASKED
    try:
        (SHADES + MASKED).encode(encoding)
        return SHADES, MASKED
    except (UnicodeEncodeError, LookupError):
        return ASCII_SHADES, "-"


def ascii_heatmap(matrix, row_labels, col_labels, shades=SHADES, masked=MASKED, vmax=None):
    """A (R, K) matrix as text: one shade character block per cell, darker = larger, plus a legend.

    Cells that are exactly 0 print as `masked`, so a causal mask shows as a dotted triangle.
    Returns a string of 1 + R + 1 lines: column labels, one line per row, the scale.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"matrix of shape {m.shape} does not match {len(row_labels)} row labels "
                         f"and {len(col_labels)} column labels")
    vmax = float(m.max()) if vmax is None else float(vmax)
    scale = 1.0 / vmax if vmax > 0 else 0.0
    levels = np.clip(np.rint(m * scale * (len(shades) - 1)), 0, len(shades) - 1).astype(int)
    w = min(max(2, max((len(str(c)) for c in col_labels), default=2)), 6)    # cell width
    rw = max((len(str(r)) for r in row_labels), default=0)
    header = " " * rw + " " + " ".join(str(c)[:w].ljust(w) for c in col_labels)
    rows = []
    for label, lv, vals in zip(row_labels, levels, m):
        cells = [(masked if v == 0 else shades[k]) * w for k, v in zip(lv, vals)]
        rows.append(str(label).ljust(rw) + " " + " ".join(cells))
    steps = ", ".join(f"'{s}' {vmax * i / (len(shades) - 1):.2f}" for i, s in enumerate(shades))
    legend = f"scale: {steps}; '{masked}' exactly 0"
    return "\n".join([header.rstrip()] + rows + [legend])


def ascii_bar(value, vmax, width=20, shades=SHADES):
    """A horizontal bar of `width` characters filled in proportion to value / vmax."""
    frac = 0.0 if vmax <= 0 else min(max(value / vmax, 0.0), 1.0)
    return (shades[-1] * int(round(frac * width))).ljust(width)


def _savefig(fig, path):
    """Save a figure as PNG atomically (temp file + os.replace), then close it."""
    import matplotlib.pyplot as plt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return path


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")                   # files only: no display needed
    import matplotlib.pyplot as plt
    return plt


def plot_curves(metrics_rows, path):
    """Loss (left) and accuracy (right) per epoch for train and validation, from metrics.csv rows."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    rows = list(metrics_rows)
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-o"), ("val", "-s")):
        ax_loss.plot(epochs, [float(r[f"{split}_loss"]) for r in rows], style, ms=3, label=split)
        ax_acc.plot(epochs, [float(r[f"{split}_acc"]) for r in rows], style, ms=3, label=split)
    losses = [float(r[k]) for r in rows for k in ("train_loss", "val_loss")]
    if losses and min(losses) > 0 and max(losses) > 20 * min(losses):
        ax_loss.set_yscale("log")                           # losses that fall by decades
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax, where in ((ax_loss, "upper right"), (ax_acc, "lower right")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(loc=where)
    return _savefig(fig, path)


def plot_attention(weights, tokens, path, title=""):
    """One heatmap per head of a (H, T, T) attention array, plus the average over heads."""
    plt = _pyplot()
    w = np.asarray(weights, dtype=np.float64)
    H, T, _ = w.shape
    panels = [(w[h], f"head {h}") for h in range(H)] + [(w.mean(axis=0), "average")]
    cols = min(len(panels), 3)
    rows = (len(panels) + cols - 1) // cols
    size = 1.0 + 0.45 * T
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size + 2, rows * size + 1), squeeze=False)
    fig.subplots_adjust(wspace=0.45, hspace=0.45)
    for ax, (m, name) in zip(axes.flat, panels):
        im = ax.imshow(m, cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(name)
        ax.set_xticks(range(T), tokens, rotation=90)
        ax.set_yticks(range(T), tokens)
        ax.set_xlabel("key (attended to)")
    for ax in axes[:, 0]:
        ax.set_ylabel("query")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.8, label="attention weight")
    if title:
        fig.suptitle(title)
    return _savefig(fig, path)
