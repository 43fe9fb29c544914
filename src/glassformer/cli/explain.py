"""python -m glassformer.explain CHECKPOINT_OR_RUN [--text "..."] [--out step.html] [--lr LR]: the flags
of glassformer.explain (one training step as a self-contained browser page)."""
from ..errors import Parser, run_main
from ..explain.command import explain
from .common import LEARNING_RATE


def parse_args(argv):
    """The command's flags (errors.Parser: a mistake is one error line, exit 2)."""
    p = Parser(prog="python -m glassformer.explain",
               description="Write one self-contained HTML page that shows one real training step of a "
                           "model on one example: every forward stage, the backward pass in reverse and "
                           "the AdamW update of every parameter tensor, each beside its formula and the "
                           "glassformer code that computed it. The page makes no network request.")
    p.add_argument("checkpoint", help="a .npz checkpoint, a run folder (best.npz) or a Hugging Face GPT-2 "
                   "folder")
    p.add_argument("--text", help="the example (default: one per task, e.g. 'Max ( 5 3 9 )'); a language "
                   "model reads all its tokens but the last and predicts each next one")
    p.add_argument("--out", default="step.html", help="the page to write (default step.html)")
    p.add_argument("--lr", type=LEARNING_RATE, default=1e-3, help="the step's learning rate (default 1e-3)")
    return p.parse_args(argv)


def command(argv=None):
    """Parse, explain; exit status 0."""
    args = parse_args(argv)
    explain(args.checkpoint, args.text, args.out, args.lr)
    return 0


def main(argv=None):
    """Entry point: the command inside the error boundary (one `error:` line, exit 2)."""
    return run_main(command, argv)
