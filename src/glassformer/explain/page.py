"""One self-contained HTML page of a recorded training step: inline CSS and JS, the island, no request."""
import html
from dataclasses import dataclass

from ..backend import to_numpy, use_overlay
from ..errors import UserError
from ..files import write_text
from .assets import CSS, JS
from .code import collect
from .island import dumps
from .step import record_step

SCHEMA = 1
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"


@dataclass
class Example:
    """One example as the model trains on it: ids (1, T), targets, and labels for the page."""
    text: str
    ids: object
    targets: object
    labels: list
    target_labels: list


def build_island(model, example, loss_fn, optimizer, source, lr=None, restore=True):
    """The island (a dict, see the package docstring) of one training step of `model` on `example`,
    through the plain reference layers (the CPU overlay computes the same math in other last bits), so
    the code the page quotes is the code that ran; restore=False leaves the model and optimizer stepped (no copies kept: a model used only here)."""
    t_before = int(optimizer.t)
    with use_overlay(False):                                # the reference layers run: the code shown
        stages, facts = record_step(model, example.ids, example.targets, loss_fn, optimizer, lr, restore)
    code = collect(stages)
    return {"schema": SCHEMA, "source": str(source), "text": example.text,
            "config": model.config.to_dict(), "tokens": list(example.labels),
            "ids": [int(i) for i in example.ids[0]], "targets": [int(t) for t in example.targets.ravel()],
            "target_labels": list(example.target_labels), "loss": facts["loss"],
            "optimizer": optimizer_facts(optimizer, facts["lr"], t_before), "code": code, "stages": stages}


def example_of(ids, targets, vocab, lm):
    """An Example from a task's ids (1, T) and targets, its tokens named by vocab (a list of strings)."""
    ids, targets = to_numpy(ids)[:1], to_numpy(targets)[:1]
    labels = [str(vocab[int(i)]) for i in ids[0]]
    names = [str(vocab[int(t)]) if lm else str(int(t)) for t in targets.ravel()]
    return Example(" ".join(labels), ids, targets, labels, names)


def write_step_page(path, model, ids, targets, vocab, loss_fn, optimizer, source, lm, lr=None):
    """The page of one training step of a run's own model, loss and optimizer on ids (1, T), all
    restored afterwards (train_step_by_step.py --html); returns the page's size in bytes."""
    if not all(hasattr(optimizer, a) for a in ("m", "v", "beta1", "decay")):
        raise UserError(f"--html shows an Adam or AdamW update, not {type(optimizer).__name__}'s")
    island = build_island(model, example_of(ids, targets, vocab, lm), loss_fn, optimizer, source, lr)
    return write_page(path, island)


def optimizer_facts(optimizer, lr, t_before):
    """The optimizer's class and settings, as the update stages used them."""
    return {"class": type(optimizer).__name__, "lr": lr, "beta1": optimizer.beta1, "beta2": optimizer.beta2,
            "eps": optimizer.eps, "weight_decay": optimizer.weight_decay,
            "decoupled": bool(optimizer.decoupled), "t_before": t_before}


def render(island):
    """The page's HTML text."""
    title = html.escape(f"glassformer: one training step of {island['source']}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<link rel="icon" href="data:,">
<title>{title}</title><style>{CSS}</style></head>
<body><nav></nav><main>
<header><button id="prev" title="previous stage (left arrow)">&larr; Prev</button><h1 id="title"></h1>
<button id="next" title="next stage (right arrow)">Next &rarr;</button></header>
<p class="meta">{html.escape(island['source'])}: &ldquo;{html.escape(island['text'])}&rdquo;, loss
{island['loss'] if island['loss'] is None else f"{island['loss']:.4f}"}. One real training step (dropout off):
forward, backward in reverse, then the {html.escape(island['optimizer']['class'])} update. Arrow keys move;
hover a heatmap for a value.</p>
<div id="stage"></div></main>
<script type="application/json" id="glassformer-step">{dumps(island)}</script>
<script>{JS}</script>
</body></html>
"""


def write_page(path, island):
    """Write the page atomically (a failure leaves no half-written file); returns its size in bytes."""
    text = render(island)
    write_text(path, text)
    return len(text.encode("utf-8"))
