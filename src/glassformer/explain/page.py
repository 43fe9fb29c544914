"""One self-contained HTML page of a recorded training step: inline CSS and JS, the island, no request."""
import html

from ..files import write_text
from .assets import CSS, JS
from .code import collect
from .island import dumps
from .step import record_step

SCHEMA = 1
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"


def build_island(model, example, loss_fn, optimizer, source, lr=None):
    """The island (a dict, see the package docstring) of one training step of `model` on `example`."""
    stages, facts = record_step(model, example.ids, example.targets, loss_fn, optimizer, lr)
    code = collect(stages)
    return {"schema": SCHEMA, "source": str(source), "text": example.text,
            "config": model.config.to_dict(), "tokens": list(example.labels),
            "ids": [int(i) for i in example.ids[0]], "targets": [int(t) for t in example.targets.ravel()],
            "target_labels": list(example.target_labels), "loss": facts["loss"],
            "optimizer": optimizer_facts(optimizer, facts["lr"]), "code": code, "stages": stages}


def optimizer_facts(optimizer, lr):
    """The optimizer's class and settings, as the update stages used them."""
    return {"class": type(optimizer).__name__, "lr": lr, "beta1": optimizer.beta1, "beta2": optimizer.beta2,
            "eps": optimizer.eps, "weight_decay": optimizer.weight_decay,
            "decoupled": bool(optimizer.decoupled), "t_before": int(optimizer.t)}


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
