"""Tests for glassformer.visualization: terminal heatmaps, the PNG plots and the per-token loss page."""
import io
import re

import numpy as np
import pytest

from glassformer.visualization import (ASCII_SHADES, SHADES, Panel, ascii_attention, ascii_bar,
                                       ascii_heatmap, loss_html, plot_attention, plot_circuit,
                                       plot_curves, plot_sweep, save_attention_heatmaps, shade_chars)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_ascii_heatmap_shape_and_labels():
    m = np.arange(12, dtype=float).reshape(3, 4) / 11
    text = ascii_heatmap(m, ["a", "bb", "c"], ["w", "x", "y", "z"])
    lines = text.split("\n")
    assert len(lines) == 1 + 3 + 1                          # column labels, 3 rows, legend
    assert lines[0].split() == ["w", "x", "y", "z"]
    assert [line.split()[0] for line in lines[1:4]] == ["a", "bb", "c"]
    assert len({len(line) for line in lines[1:4]}) == 1     # rows line up
    assert lines[1].split()[1] == "··"                      # an exact 0 is marked, not blank
    assert lines[3].endswith(SHADES[-1] * 2)                # the max cell is the darkest
    assert lines[-1].startswith("scale:")


def test_ascii_heatmap_levels_follow_values():
    m = np.array([[0.0, 0.25, 0.5, 0.75, 1.0]])
    row = ascii_heatmap(m, ["r"], list("abcde")).split("\n")[1]
    cells = row.split(" ")[1:]
    assert cells == ["··", SHADES[1] * 2, SHADES[2] * 2, SHADES[3] * 2, SHADES[4] * 2]


def test_ascii_heatmap_shows_causal_mask():
    T = 4
    w = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]     # causal, rows sum to 1
    lines = ascii_heatmap(w, list("abcd"), list("abcd"), vmax=1.0).split("\n")[1:1 + T]
    for i, line in enumerate(lines):
        assert line.count("·") == 2 * (T - 1 - i)           # masked cells: above the diagonal


def test_ascii_heatmap_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="row labels"):
        ascii_heatmap(np.zeros((2, 2)), ["a"], ["a", "b"])


def test_shade_chars_fall_back_to_ascii():
    ascii_stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    assert shade_chars(ascii_stream)[0] == ASCII_SHADES
    assert shade_chars(io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))[0] == SHADES


def test_ascii_bar_fills_in_proportion():
    assert ascii_bar(0.5, 1.0, 10) == SHADES[-1] * 5 + " " * 5
    assert ascii_bar(3.0, 1.0, 4) == SHADES[-1] * 4          # clipped
    assert ascii_bar(1.0, 0.0, 3) == "   "


def test_plot_curves_writes_png(tmp_path):
    rows = [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.3 * e, "val_loss": 2.1 / e,
             "val_acc": 0.28 * e, "seconds": 0.1} for e in (1, 2, 3)]
    path = plot_curves(rows, tmp_path / "sub" / "curves.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 5_000
    assert not list(tmp_path.rglob("*.tmp"))


def test_plot_attention_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.random((4, 5, 5))
    w /= w.sum(axis=-1, keepdims=True)
    path = plot_attention(w, ["Max", "(", "1", "2", ")"], tmp_path / "att.png", title="layer 0")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000


def test_plot_curves_by_step_skips_empty_cells(tmp_path):
    rows = [{"step": s, "train_loss": 3.0 / s, "val_loss": None if s % 2 else 2.5 / s}
            for s in range(1, 9)]                           # validation on even steps only
    panels = (Panel("loss", "nats", (("train_loss", "train"), ("val_loss", "validation"))),)
    path = plot_curves(rows, tmp_path / "loss.png", x="step", panels=panels, title="lm")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]   # no temp file left behind


def test_plot_curves_draws_every_series_of_a_panel(tmp_path, monkeypatch):
    """Five series in one panel: five lines (the four line styles repeat; none is dropped)."""
    import matplotlib.axes
    drawn, plot = [], matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda self, *a, **k: drawn.append(k.get("label")) or plot(self, *a, **k))
    names = [f"s{i}" for i in range(5)]
    rows = [{"step": s, **{n: (i + 1.0) / s for i, n in enumerate(names)}} for s in (1, 2, 3)]
    panels = (Panel("loss", "nats", tuple((n, n) for n in names)),)
    plot_curves(rows, tmp_path / "five.png", x="step", panels=panels)
    assert drawn == names


def test_plot_sweep_writes_png(tmp_path):
    curves = [("lr=1", [(1, 2.0), (2, 1.0)]), ("lr=2", [(1, 2.0), (2, 0.5)])]
    path = plot_sweep(curves, [("lr=1", 0.2), ("lr=2", 0.9)], tmp_path / "summary.png", "toy")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_attention_heatmaps_square_and_cross(tmp_path):
    rng = np.random.default_rng(0)
    maps = {"encoder.0.attn": rng.random((1, 2, 4, 4)),
            "decoder.0.cross_attn": rng.random((1, 2, 3, 4))}           # queries: decoder, keys: source
    paths = save_attention_heatmaps(maps, list("xyz"), tmp_path, src_tokens=list("abcd"))
    assert [p.name for p in paths] == ["attention-encoder.0.attn.png",
                                       "attention-decoder.0.cross_attn.png"]
    path = plot_circuit(rng.normal(size=(2, 5, 5)), list("abcde"), tmp_path / "qk.png", "QK")
    for p in paths + [path]:
        assert p.read_bytes()[:8] == PNG_MAGIC


def test_ascii_attention_has_one_line_per_query():
    w = np.tril(np.ones((5, 5))) / np.arange(1, 6)[:, None]
    text = ascii_attention(np.stack([w, np.eye(5)]), ["<bos>", "a", "b", "a", "b"], head=0)
    lines = text.splitlines()
    assert len(lines) == 1 + 5 + 1 and lines[2].startswith("a")
    rows = ascii_attention(w, list("vwxyz")).splitlines()[1:-1]     # (T, S) too
    assert [r.count("·") for r in rows] == [8, 6, 4, 2, 0]


def test_loss_html_one_span_per_token(tmp_path):
    toks = ["<b>", "x", "y", "&"]
    page = loss_html(toks, [0.0, 1.0, 2.0], tmp_path / "loss.html")
    spans = re.findall(r"<span [^>]*>(.*?)</span>", page)
    assert spans == ["&lt;b&gt;", "x", "y", "&amp;"]        # escaped, one per token
    assert 'background:rgb(255,255,255)" title="loss 0.000' in page
    assert 'background:rgb(255,0,0)" title="loss 2.000' in page
    assert (tmp_path / "loss.html").read_text(encoding="utf-8") == page
    with pytest.raises(ValueError):
        loss_html(toks, [1.0])
