"""Every picture of a model or a run: terminal heatmaps, curves, attention and circuit PNGs, loss pages.

Numbers come from elsewhere (interp computes maps and circuits, runs write metrics rows); this
module only draws them. Files are written atomically through glassformer.files.
"""
import html
import itertools
from collections import namedtuple
from pathlib import Path

import numpy as np

from .files import atomic_path, write_text

SHADES = " ░▒▓█"                    # light to dark; Unicode block elements
ASCII_SHADES = " .:*#"               # the same five levels for terminals without Unicode
MASKED = "·"                         # an exactly-zero weight (e.g. above the causal diagonal)


# ---- terminal ------------------------------------------------------------------------------------

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


def ascii_heatmap(matrix, row_labels, col_labels, shades=SHADES, masked=MASKED, vmax=None, width=None,
                  first=0):
    """A (R, K) matrix as text: one shade character block per cell, darker = larger, plus a legend.

    Cells that are exactly 0 print as `masked`, so a causal mask shows as a dotted triangle.
    Returns a string of 1 + R + 1 lines: column labels, one line per row, the scale. With `width`
    (columns of the terminal) no line is longer: cells narrow, and a matrix still too wide shows its
    last columns (and, when square, its last rows), saying so on one more line (the labels are
    positions first, first + 1, ... of the text).
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"matrix of shape {m.shape} does not match {len(row_labels)} row labels "
                         f"and {len(col_labels)} column labels")
    vmax = float(m.max()) if vmax is None else float(vmax)      # of the whole matrix, window or not
    row_labels, col_labels = [str(r) for r in row_labels], [str(c) for c in col_labels]
    w = min(max(2, max((len(c) for c in col_labels), default=2)), 6)    # cell width
    note = []
    if width is not None:
        row_labels = [r[:10] for r in row_labels]
        rw = max((len(r) for r in row_labels), default=0)
        while w > 2 and rw + len(col_labels) * (w + 1) > width:
            w -= 1
        fits = max(1, (width - rw) // (w + 1))
        if len(col_labels) > fits:
            K, square = len(col_labels), m.shape[0] == m.shape[1]
            m, col_labels = m[:, -fits:], col_labels[-fits:]
            if square:
                m, row_labels = m[-fits:], row_labels[-fits:]
            note = [f"(last {fits} of {K} {'tokens' if square else 'keys'} shown: positions "
                    f"{first + K - fits}..{first + K - 1})"]
    scale = 1.0 / vmax if vmax > 0 else 0.0
    levels = np.clip(np.rint(m * scale * (len(shades) - 1)), 0, len(shades) - 1).astype(int)
    rw = max((len(r) for r in row_labels), default=0)
    header = " " * rw + " " + " ".join(c[:w].ljust(w) for c in col_labels)
    rows = []
    for label, lv, vals in zip(row_labels, levels, m):
        cells = [(masked if v == 0 else shades[k]) * w for k, v in zip(lv, vals)]
        rows.append(label.ljust(rw) + " " + " ".join(cells))
    steps = ", ".join(f"'{s}' {vmax * i / (len(shades) - 1):.2f}" for i, s in enumerate(shades))
    legend = f"scale: {steps}; '{masked}' exactly 0"
    return "\n".join([header.rstrip()] + rows + [legend] + note)


def attention_scale(w, causal):
    """The largest weight of one head's (T, T) map, leaving out query 0 of a causal map (always 1)."""
    w = np.asarray(w, dtype=np.float64)
    rows = w[1:] if causal and len(w) > 1 else w            # query 0 sees only itself
    return float(rows.max()) or 1.0


def ascii_bar(value, vmax, width=20, shades=SHADES):
    """A horizontal bar of `width` characters filled in proportion to value / vmax."""
    frac = 0.0 if vmax <= 0 else min(max(value / vmax, 0.0), 1.0)
    return (shades[-1] * int(round(frac * width))).ljust(width)


def ascii_attention(att, tokens, key_tokens=None, head=None, width=None):
    """Terminal heatmap of (T, S) or (H, T, S) attention: one head, or the average when head=None;
    with `width`, cells narrow and a long text shows its last tokens (ascii_heatmap)."""
    w = np.asarray(att, dtype=np.float64)
    if w.ndim == 3:
        w = w.mean(axis=0) if head is None else w[head]
    return ascii_heatmap(w, list(tokens), list(key_tokens if key_tokens is not None else tokens),
                         vmax=1.0, width=width)


# ---- PNG plumbing --------------------------------------------------------------------------------

def _pyplot():
    import matplotlib
    matplotlib.use("Agg")                   # files only: no display needed
    import matplotlib.pyplot as plt
    return plt


def _savefig(fig, path):
    """Save a figure as PNG atomically (glassformer.files.atomic_path), then close it."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


# ---- curves --------------------------------------------------------------------------------------

# One panel of plot_curves: series are (column, legend label); fraction panels span 0..1 (accuracy).
Panel = namedtuple("Panel", "title ylabel series fraction", defaults=(False,))

EPOCH_PANELS = (Panel("loss", "cross-entropy loss", (("train_loss", "train"), ("val_loss", "val"))),
                Panel("accuracy", "accuracy", (("train_acc", "train"), ("val_acc", "val")), True))


def _points(rows, x, column):
    """[(x, value)] of the rows whose `column` cell is filled (None and "" are skipped)."""
    return [(float(r[x]), float(r[column])) for r in rows if r.get(column) not in (None, "")]


def plot_curves(rows, path, x="epoch", panels=EPOCH_PANELS, title=""):
    """Metrics rows (dicts) as one panel per Panel, each series against column x, saved as PNG.

    Defaults fit train_step_by_step's metrics.csv; a loss panel goes log-scale when it falls by
    decades, a fraction panel spans 0 to 1.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    rows = list(rows)
    fig, axes = plt.subplots(1, len(panels), figsize=(2 + 4 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        values = []
        for (column, label), style in zip(panel.series, itertools.cycle(("-o", "-s", "-^", "-v"))):
            pts = _points(rows, x, column)
            if pts:
                ax.plot(*zip(*pts), style if len(pts) <= 60 else "-", ms=3, lw=1, label=label)
                values += [v for _, v in pts]
        if panel.fraction:
            ax.set_ylim(0, 1.02)
        elif values and min(values) > 0 and max(values) > 20 * min(values):
            ax.set_yscale("log")                            # losses that fall by decades
        ax.set(xlabel=x, ylabel=panel.ylabel, title=panel.title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if values:
            ax.legend(loc="lower right" if panel.fraction else "upper right")
    if title:
        fig.suptitle(title)
    return _savefig(fig, path)


def plot_sweep(curves, bars, path, title="", ylabel="test loss",
               xlabel="final test exact-match accuracy"):
    """Runs side by side: one curve per run (left, [(label, [(step, value)])]) and one bar per run
    (right, [(label, value)] in 0..1)."""
    plt = _pyplot()
    fig, (ax_loss, ax_bar) = plt.subplots(1, 2, figsize=(12, 4 + 0.1 * len(bars)),
                                          gridspec_kw={"wspace": 0.5})
    for label, points in curves:
        ax_loss.plot([s for s, _ in points], [v for _, v in points], "-o", ms=3, label=label)
    ax_loss.set(xlabel="step", ylabel=ylabel, title=ylabel, yscale="log")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize=7)
    ax_bar.barh(range(len(bars)), [v for _, v in bars])
    ax_bar.set_yticks(range(len(bars)), [label for label, _ in bars], fontsize=7)
    ax_bar.set(xlabel=xlabel, xlim=(0, 1.0), title="final")
    ax_bar.grid(alpha=0.3, axis="x")
    if title:
        fig.suptitle(f"sweep: {title}")
    return _savefig(fig, path)


# ---- attention and circuits ----------------------------------------------------------------------

MAX_INCHES = 14                        # the longest side of a figure: ~1,500 pixels at 110 dpi
QK_AXES = ("query token", "key token", "attention score (x sqrt(D))")
OV_AXES = ("attended token", "output token", "logit contribution")


def _cell(n_cols, n, n_rows, m):
    """Inches per heatmap cell for n_cols x n_rows panels of n x m cells, at most 0.45."""
    return min(0.45, (MAX_INCHES - 1.5 * n_cols) / (n_cols * max(n, 1)),
               (MAX_INCHES - 1.5 * n_rows) / (n_rows * max(m, 1)))


def _ticks(ax, labels, cell, axis):
    """Token names on one axis; every k-th when the cells are too small for each one."""
    size = max(5.0, min(9.0, cell * 72 / 1.3))              # points; a label needs ~1.3 x its size
    step = max(1, int(np.ceil(size * 1.3 / 72 / cell)))
    where = range(0, len(labels), step)
    names = [labels[i] for i in where]
    if axis == "x":
        ax.set_xticks(list(where), names, rotation=90, fontsize=size)
    else:
        ax.set_yticks(list(where), names, fontsize=size)


def plot_attention(weights, tokens, path, title="", key_tokens=None):
    """One heatmap per head of (H, T, S) attention plus the head average; keys default to tokens.

    The figure is at most MAX_INCHES a side: long texts get smaller cells and every k-th label.
    """
    plt = _pyplot()
    w = np.asarray(weights, dtype=np.float64)
    keys = list(tokens if key_tokens is None else key_tokens)
    H, T, S = w.shape
    panels = [(w[h], f"head {h}") for h in range(H)] + [(w.mean(axis=0), "average")]
    cols = min(len(panels), 3)
    rows = (len(panels) + cols - 1) // cols
    cell = _cell(cols, S, rows, T)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * (1.5 + cell * S) + 1, rows * (1.5 + cell * T)),
                             squeeze=False)
    fig.subplots_adjust(wspace=0.45, hspace=0.45)
    for ax, (m, name) in zip(axes.flat, panels):
        im = ax.imshow(m, cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(name)
        _ticks(ax, keys, cell, "x")
        _ticks(ax, list(tokens), cell, "y")
        ax.set_xlabel("key (attended to)")
    for ax in axes[:, 0]:
        ax.set_ylabel("query")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.8, label="attention weight")
    if title:
        fig.suptitle(title)
    return _savefig(fig, path)


def unpadded(labels, pad):
    """How many labels remain once the trailing `pad` ones are dropped (at least 1)."""
    n = len(labels)
    while n > 1 and labels[n - 1] == pad:
        n -= 1
    return n


def save_attention_heatmaps(maps, tokens, out_dir, example=0, src_tokens=None, pad="<pad>"):
    """attention-<layer>.png for every {layer name: (B, H, T, S)} map, for one example; the paths.

    tokens label decoder positions; src_tokens (encoder-decoder) label "encoder.*" maps and the keys
    of cross-attention maps. Trailing `pad` positions (queries and keys) are cropped.
    """
    paths = []
    for name, att in maps.items():
        q = k = tokens
        if src_tokens is not None and name.startswith("encoder"):
            q = k = src_tokens
        elif src_tokens is not None and "cross" in name:
            k = src_tokens
        nq, nk = unpadded(list(q), pad), unpadded(list(k), pad)
        paths.append(plot_attention(att[example][:, :nq, :nk], list(q)[:nq],
                                    Path(out_dir) / f"attention-{name}.png", title=name,
                                    key_tokens=list(k)[:nk]))
    return paths


def plot_circuit(circuit, vocab, path, title="", axes=QK_AXES):
    """One heatmap per head of an (H, V, V) circuit (diverging colours around 0), saved as PNG.

    axes: (row label, column label, colour bar label), QK_AXES or OV_AXES; ticks name the tokens.
    """
    plt = _pyplot()
    H, V, _ = circuit.shape
    cols = min(H, 4)
    rows = (H + cols - 1) // cols
    cell = _cell(cols, V, rows, V)
    size = 2.0 + cell * V
    fig, grid = plt.subplots(rows, cols, figsize=(cols * size, rows * size + 0.5), squeeze=False)
    fig.subplots_adjust(wspace=0.5, hspace=0.5)
    for h, ax in enumerate(grid.flat):
        if h >= H:
            ax.axis("off")
            continue
        vmax = float(np.abs(circuit[h]).max()) or 1.0
        im = ax.imshow(circuit[h], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(f"head {h}")
        _ticks(ax, list(vocab), cell, "x")
        _ticks(ax, list(vocab), cell, "y")
        ax.set(xlabel=axes[1], ylabel=axes[0] if h % cols == 0 else "")
        last = h % cols == cols - 1 or h == H - 1           # one bar per head, labelled at the row's end
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=axes[2] if last else "")
    if title:
        fig.suptitle(title)
    return _savefig(fig, path)


# ---- per-token loss page -------------------------------------------------------------------------

def loss_color(loss, vmax):
    """White (loss 0) to red (loss >= vmax) as an rgb() string."""
    f = 0.0 if vmax <= 0 else min(max(loss / vmax, 0.0), 1.0)
    g = int(round(255 * (1.0 - f)))
    return f"rgb(255,{g},{g})"


def loss_explanation(vocab_size=None):
    """The page's note on which positions a model can predict at all, and what a guess costs."""
    guess = ("" if vocab_size is None else f", about log {vocab_size} = {np.log(vocab_size):.2f} "
             f"nats (a uniform guess over the {vocab_size} tokens)")
    return ("Each token is coloured by the loss of predicting it from the tokens before it; the "
            "first token is never predicted. Some positions cannot be predicted by any model: a "
            "token nothing before it decides (a fresh random symbol, the first word of a new "
            f"sentence, a name seen for the first time) costs the price of a guess{guess}. Others "
            "follow from what came before (the second half of a repeated sequence, a task's rule, a "
            "word's spelling once it has begun) and a trained model gets them nearly free: white "
            "there is what it has learned, red there is what it has not (yet).")


def loss_html(tokens, losses, path=None, title="per-token loss", vmax=None, sep="", vocab_size=None):
    """An HTML page, one <span> per token shaded white -> red by the loss of predicting it.

    tokens: T strings; losses: T - 1 values for tokens 1..T-1 (token 0 is not predicted).
    vocab_size puts the cost of a uniform guess, log V, into the explanation. Writes `path`
    atomically when given; returns the HTML text.
    """
    losses = [float(v) for v in losses]
    if len(losses) != len(tokens) - 1:
        raise ValueError(f"{len(tokens)} tokens need {len(tokens) - 1} losses, got {len(losses)}")
    vmax = vmax if vmax is not None else max(losses, default=1.0)
    spans = ['<span style="background:rgb(255,255,255)" title="first token: not predicted">'
             f'{html.escape(tokens[0])}</span>']
    for tok, loss in zip(tokens[1:], losses):
        spans.append(f'<span style="background:{loss_color(loss, vmax)}" title="loss {loss:.3f}">'
                     f'{html.escape(tok)}</span>')
    mean = float(np.mean(losses)) if losses else 0.0
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title></head>\n<body>\n"
            f"<h3>{html.escape(title)}</h3>\n<p>mean loss {mean:.3f} nats over {len(losses)} "
            f"predictions; white = 0, red = {vmax:.2f} or more (hover a token for its loss)</p>\n"
            f"<p>{html.escape(loss_explanation(vocab_size))}</p>\n"
            f"<div style=\"font-family:monospace; white-space:pre-wrap; line-height:1.6\">"
            f"{sep.join(spans)}</div>\n</body></html>\n")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_text(path, page)
    return page
