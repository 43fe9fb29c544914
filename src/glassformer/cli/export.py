"""python -m glassformer.export CHECKPOINT OUT_DIR [--dtype float16]: the command line of
glassformer.export (a decoder LM written as a Hugging Face GPT-2 folder)."""
from ..errors import Parser, run_main
from ..export import DTYPES, export


def parse_args(argv):
    p = Parser(prog="python -m glassformer.export",
               description="Write a glassformer decoder LM checkpoint as a Hugging Face GPT-2 folder "
                           "(config.json + model.safetensors).")
    p.add_argument("checkpoint", help="a .npz checkpoint, a run folder (best.npz) or a GPT-2 folder")
    p.add_argument("out_dir", help="the folder to write (created if missing; replaced whole)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                   help="how the weights are stored (default float32)")
    return p.parse_args(argv)


def command(argv=None):
    """Export; exit status 0."""
    args = parse_args(argv)
    export(args.checkpoint, args.out_dir, args.dtype)
    return 0


def main(argv=None):
    """Entry point: the command inside the error boundary (one `error:` line, exit 2)."""
    return run_main(command, argv)
