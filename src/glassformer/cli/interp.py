"""python -m glassformer.interp RUN [--text T] [--layer L] [--head H] [--html FILE]: the command line.

Attention maps as ASCII, the heads' classes and (decoders) a per-token loss page of a trained run:
a run folder of glassformer.experiments, the --out of train_step_by_step.py, or a checkpoint .npz.
"""
import numpy as np

from ..domains import Domain
from ..errors import Parser, UserError, run_main
from ..interp import (attention_layers, attention_maps, classify_heads, example_ids, head_table, load_subject,
                      per_token_loss, text_ids)
from ..progress import terminal_width
from ..visualization import ascii_attention, loss_html


def parse_args(argv):
    parser = Parser(
        prog="python -m glassformer.interp",
        description="Attention maps (ASCII), head classes and per-token loss (HTML) of a trained run.")
    parser.add_argument("run_dir", help="a run directory (runs/<time>-<name> of experiments, or the "
                        "--out of train_step_by_step.py) or its checkpoint .npz")
    parser.add_argument("--text", help="input in the task's own notation (default: a test example)")
    parser.add_argument("--example", type=Domain(int, 0, 10**9), default=0,
                        help="which test example (default 0)")
    parser.add_argument("--layer", type=Domain(int, 0, 4095), default=None,
                        help="one attention layer's map, 0 first (default: every layer)")
    parser.add_argument("--head", type=Domain(int, 0, 4095), default=None,
                        help="one head (default: the average)")
    parser.add_argument("--html", help="write the per-token loss page here (decoder models)")
    return parser.parse_args(argv)


def check_choice(args, layers):
    """UserError for --layer or --head outside the model's range (negative ones too), naming it."""
    if args.layer is not None and not 0 <= args.layer < len(layers):
        names = ", ".join(name for name, _ in layers)
        raise UserError(f"--layer {args.layer}: the model has {len(layers)} attention layer"
                        f"{'s' * (len(layers) != 1)}: give 0..{len(layers) - 1} ({names})")
    heads = min(layer.n_heads for _, layer in layers)
    if args.head is not None and not 0 <= args.head < heads:
        raise UserError(f"--head {args.head}: the model's attention layers have {heads} heads: give "
                        f"0..{heads - 1}, or leave --head out for the average")


def command(argv=None):
    """Attention maps, head classes and the loss page of a run (of glassformer.experiments, or a
    train_step_by_step.py --out folder)."""
    args = parse_args(argv)
    model, run = load_subject(args.run_dir)
    if run.kind == "seq2seq":
        raise UserError("the interp CLI reads decoder runs; for an encoder-decoder use "
                        "interp.attention_maps(model, src, tgt_in) in Python")
    layers = attention_layers(model)
    check_choice(args, layers)
    max_len = getattr(model.config, "max_len", None)
    ids = example_ids(run, args.example) if args.text is None else text_ids(run, args.text, max_len)
    if args.html and run.kind == "decoder" and ids.shape[1] < 2:
        raise UserError("--html: a per-token loss needs at least 2 tokens (each is predicted from "
                        "those before it): give a longer --text")
    tokens = [run.vocab[i] for i in ids[0]]
    maps = attention_maps(model, ids)
    shown = maps if args.layer is None else {layers[args.layer][0]: maps[layers[args.layer][0]]}
    for name, att in shown.items():
        which = "average over heads" if args.head is None else f"head {args.head}"
        print(f"{name} ({which}):\n"
              f"{ascii_attention(att[0], tokens, head=args.head, width=terminal_width())}\n")
    print(head_table(classify_heads(maps, ids)))
    if args.html:
        write_loss_page(args.html, model, run, ids, tokens)
    return 0


def write_loss_page(path, model, run, ids, tokens):
    """--html: the per-token loss page of a decoder run; UserError for a classifier."""
    if run.kind != "decoder":
        raise UserError(f"--html: a {run.name} model predicts one answer, not each next "
                        "token, so it has no per-token loss")
    losses = per_token_loss(model, ids[0])
    loss_html(tokens, losses, path, title=f"per-token loss: {run.name}", sep=run.sep, vocab_size=len(run.vocab))
    print(f"wrote {path} (mean loss {float(np.mean(losses)):.3f})")


def main(argv=None):
    """Entry point: the command inside the error boundary (one `error:` line, exit 2)."""
    return run_main(command, argv)
