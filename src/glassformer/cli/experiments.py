"""python -m glassformer.experiments NAME [KEY=VALUE ...] [--sweep KEY=V1,V2 ...] | --list: the command.

One run of a research toy on a synthetic task, or a sweep over a grid; glassformer.experiments holds
the runs, this module the flags.
"""
import json

from ..errors import Parser, UserError, run_main
from ..experiments import EXAMPLE, EXPERIMENTS, parse_grid, run, sweep, with_overrides
from ..progress import key_values, wrap


def parse_args(argv):
    parser = Parser(
        prog="python -m glassformer.experiments",
        description="Train a research toy on a synthetic task (one run, or a sweep over a grid).")
    parser.add_argument("experiment", nargs="?", help=f"one of {', '.join(EXPERIMENTS)}")
    parser.add_argument("settings", nargs="*", metavar="KEY=VALUE",
                        help="override a run field (lr, steps...), task.KEY or model.KEY")
    parser.add_argument("--sweep", nargs="+", metavar="KEY=V1,V2", default=None,
                        help="run this grid one run after another (before or after the name)")
    parser.add_argument("--runs-dir", default="runs", help="where run directories go")
    parser.add_argument("--cache", default=None, help="dataset cache (default .cache/glassformer)")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    args = parser.parse_args(argv)
    i = next((i for i, s in enumerate(args.sweep or []) if s in EXPERIMENTS), None)
    if args.experiment is None and i is not None:           # --sweep lr=1e-3,3e-3 NAME [KEY=VALUE ...]
        args.experiment, args.settings = args.sweep[i], args.sweep[i + 1:] + args.settings
        args.sweep = args.sweep[:i]
    return args


def print_list():
    """--list (or no name): every experiment with its settings, as KEY=VALUE overrides write them."""
    for name, exp in EXPERIMENTS.items():
        print(wrap(f"{name}: steps={exp.steps} lr={exp.lr}\n  task {exp.task}: {key_values(exp.task_params)}"
                   f"\n  model {exp.model}: {key_values(exp.model_params)}", indent="    "))
    print(f"run one: python -m glassformer.experiments NAME [KEY=VALUE ...], e.g.\n  {EXAMPLE}\n"
          "(--sweep KEY=V1,V2 runs a grid; --help says more)")


def command(argv=None):
    """One run (its summary as a JSON line) or a sweep; exit 0."""
    args = parse_args(argv)
    if args.list or not args.experiment:
        print_list()
        return 0
    if args.experiment not in EXPERIMENTS:
        raise UserError(f"unknown experiment {args.experiment!r}: use one of {', '.join(EXPERIMENTS)}")
    exp = with_overrides(EXPERIMENTS[args.experiment], args.settings)
    if args.sweep:
        sweep(exp, parse_grid(args.sweep), args.runs_dir, cache=args.cache)
    else:
        _, summary = run(exp, args.runs_dir, cache=args.cache)
        print(json.dumps(summary))
    return 0


def main(argv=None):
    """Entry point: the command inside the error boundary (one `error:` line, exit 2)."""
    return run_main(command, argv)
