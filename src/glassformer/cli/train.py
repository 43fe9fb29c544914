"""train_step_by_step.py: walk one real example through a transformer stage by
stage, then train it.

Interactive (stdin is a terminal): every stage of one forward pass, the loss,
the backward pass and one optimizer update is printed with real numbers,
pausing for Enter. Then training runs with a live progress line and writes into
--out: best.npz (highest validation accuracy, ties broken by lower validation
loss), last.npz (every epoch; --resume continues from either), metrics.csv,
summary.json, config.json (the run's resolved flags: --config it to run it
again), curves.png, attention_layer{i}.png.

  python train_step_by_step.py --config configs/shakespeare_char.json \\
      --steps 500
A --config file (.json, or .toml on Python 3.11+) holds flags as keys
("batch_size" or "batch-size"); flags typed after it win. Paths in it are
relative to the config file's folder; keys starting with "_" are comments.
--resume needs no flags repeated: it reads the run's settings from the
checkpoint.
"""
import argparse
import shlex
import sys
from pathlib import Path

from .. import backend
from ..checkpoint import needs_task, read_meta
from ..errors import UserError, run_main
from ..explain.page import write_step_page
from ..files import release_run_locks
from ..runner.epochs import (DEFAULT_EPOCHS, DEFAULTS, EPOCHS, METRIC_FIELDS, N_ARGS, Run,  # noqa: F401
                           carry_best, digit_range, finish, resolve_settings)
from ..runner.tasks import TASK_CLASSES  # noqa: F401  (the tasks, by name)
from ..tasks import digits
from ..train import agree, parallel
from ..train.progress import shell_wrap, wrap
from ..train.records import with_run_id, write_json
from ..train.config import flag_options
from .common import (BATCH_SIZE, EXIT_INTERRUPTED, EXIT_USER_ERROR, Parser, Progress, add_device_arguments,
                     make_run_dir, resume_path, run_dir)
from .config import check_task_flags, given_flags, parse_with_config, run_config
from .lm import add_lm_arguments, is_lm_checkpoint, prepare_lm, presets_table, run_lm
from .qa import add_qa_arguments, run_qa
from .walkthrough import add_walk_arguments, walk, walk_choice

TASKS = ("digits", "sentences", "lm", "qa")
# flags only some tasks read (the --task lm ones are added by build_parser); the rest apply to all
# what a rank says when the ranks' flags differ (agree.agreement)
SAME_FLAGS = "start every rank with the same flags"
ONLY = {"size": ("digits",), "n_args": ("digits",), "digits": ("digits",), "epochs": ("digits", "sentences")}


# ---------------------------------------------------------------- flags and settings

def build_parser():
    """Every flag of train_step_by_step.py (the --task lm ones from cli.lm)."""
    p = Parser(prog="train_step_by_step.py", description=__doc__, epilog=presets_table(),
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, metavar="FILE", help="flags from a .json/.toml file (see "
                   "above and configs/); flags on the command line override it")
    p.add_argument("--task", choices=TASKS, help="digits (default): 'Max ( 5 3 9 )' -> 9 with an "
                   "encoder classifier; sentences: next-word prediction with a causal decoder; "
                   "lm: a language model on your --data (flags below); qa: an LM fine-tuned on "
                   "question-answer pairs, loss on the answers (the lm flags and the qa ones)")
    g = p.add_argument_group("--task digits and sentences", "a flag given to a task that does not read "
                             "it is an error")
    g.add_argument("--size", choices=sorted(digits.SIZES), help="digits data set size: 2K / 10K "
                   "(default) / 50K examples (the sentences task always has its 8 sentences)")
    g.add_argument("--n-args", type=N_ARGS, help="digits: arguments per expression (default 3)")
    g.add_argument("--digits", type=digit_range, help="digits: range of the argument digits, "
                   "LOW-HIGH (default 0-9)")
    g.add_argument("--epochs", type=EPOCHS, help="total epochs (default: 20 for digits, 300 "
                   "for sentences; with --resume, the total to reach counting those already done)")
    p.add_argument("--batch-size", type=BATCH_SIZE, help="examples per update (default 32)")
    p.add_argument("--lr", **flag_options("lr"))          # every task's: TrainConfig's fields
    p.add_argument("--seed", **flag_options("seed"))
    p.add_argument("--out", type=Path, help="run directory (default runs/<YYYYmmdd-HHMMSS>-<task>; "
                   "with --resume, the checkpoint's directory)")
    p.add_argument("--resume", type=Path, metavar="CHECKPOINT",
                   help="continue a run from its last.npz (or best.npz, or its folder) exactly as if "
                   "never stopped; only --epochs/--steps (to go further) and bookkeeping flags may change")
    add_device_arguments(p, "where to train: cpu (NumPy, default) or cuda (an NVIDIA GPU through CuPy)")
    add_walk_arguments(p)                                  # --walk, --no-pause, --no-walk
    p.add_argument("--html", type=Path, metavar="FILE", help="write the walk's example as one browser page "
                   "first (one training step: forward, backward and update, as python -m "
                   "glassformer.explain draws it), then train as usual (Ctrl-C stops)")
    p.only = dict(ONLY, **{dest: ("lm",) for dest in add_lm_arguments(p)},   # --data, --preset, ...
                  **{dest: ("qa",) for dest in add_qa_arguments(p)})      # qa reads the lm ones too
    return p


def fit(run, out, stream, live):
    """The run's epochs with a progress line (cli.common.Progress); True when Ctrl-C stopped them."""
    n_batches = run.batches.n_batches
    progress = Progress(stream, live, run.settings["epochs"], n_batches, run.epoch)
    interrupted = run.fit(out, progress, live)
    progress.close()
    if interrupted:
        print(f"\ninterrupted (Ctrl-C) during epoch {run.epoch + 1}: stopping; the files keep "
              f"epoch {run.epoch}.", file=stream)
    elif run.diverged:                                      # nothing saved that epoch: the files keep
        print(f"\n{run.diverged}", file=stream)              # the last finite epoch (and best.npz)
    return interrupted


def print_summary(summary, out, stream):
    """The results and where the files are."""
    acc = summary["test_accuracy"]
    if acc is None:
        print("no epoch finished: nothing to evaluate.", file=stream)
    elif summary["task"] == "digits":
        per_op = "  ".join(f"{k} {v:.3f}" for k, v in summary["per_operation_accuracy"].items())
        print(wrap(f"test accuracy {acc:.4f} (best.npz, epoch {summary['best_epoch']})\n"
                   f"per operation: {per_op}"), file=stream)
    else:
        print(f"next-word accuracy {acc:.4f} (best possible {summary['best_possible_accuracy']:.4f}; "
              f"best.npz, epoch {summary['best_epoch']})", file=stream)
        for prompt, text in summary["samples"].items():
            print(wrap(f"  {prompt:>9} -> {text}", indent=" " * 16), file=stream)
    print(wrap(f"train time {summary['train_seconds']:.1f} s; files in {out}:\n"
               f"  {', '.join(summary['files'])}"), file=stream)
    if summary["epochs_completed"] and summary["epochs_completed"] < summary["epochs_requested"]:
        print(shell_wrap(f"continue with: python train_step_by_step.py --resume {out / 'last.npz'}"),
              file=stream)


def check_resume_task(path, task):
    """UserError when --resume names a run of another task than --task, saying how to resume it."""
    if path is None or task is None:
        return
    with needs_task(task):                                  # missing: the hint names --task
        meta, archive = read_meta(path)
    archive.close()
    saved = meta["task"].get("name") if isinstance(meta.get("task"), dict) else None
    if saved is not None and saved != task:
        raise UserError(f"--task {task} differs from the resumed run's {saved}: {path} is a --task "
                        f"{saved} run; resume it with its own task: python train_step_by_step.py "
                        f"--resume {path} (drop --task {task})")


def choose(args, only, agreed):
    """(task, what it runs on), every flag checked: ("lm", (settings, checkpoint)), ("qa", None) or
    (digits/sentences, (settings, checkpoint)). Under mpiexec `agreed` collects what the ranks compare
    before any collective (agree.agreement): the task first, then --task lm's settings."""
    backend.use(args.device or "cpu")
    backend.set_overlay(backend.overlay_enabled() and not args.reference)
    backend.set_threads(args.threads)                       # None: $GLASSFORMER_THREADS or every core
    agreed.add("--reference", bool(args.reference))         # the overlay's numbers differ in the last bits
    args.resume = resume_path(args.resume)
    check_resume_task(args.resume, args.task)
    given = given_flags(args, only)
    if args.task == "lm" or (args.task is None and is_lm_checkpoint(args.resume)):
        agreed.add("--task", "lm")
        agreed.add("--device", args.device or "cpu")
        check_task_flags(given, "lm", only)
        return "lm", prepare_lm(args, agreed)
    if args.task == "qa" or (args.task is None and is_lm_checkpoint(args.resume, "qa")):
        agreed.add("--task", "qa")
        parallel.refuse_parallel("--task qa")
        if args.html is not None:
            raise UserError("--html is for --task digits, sentences and lm (the walk's example): drop it")
        check_task_flags(given, "qa", {d: t + ("qa",) if "lm" in t else t for d, t in only.items()})
        return "qa", None
    agreed.add("--task", args.task)
    parallel.refuse_parallel("--task digits or sentences")
    settings, ckpt = resolve_settings(args)
    check_task_flags(given, settings["task"], only)
    return settings["task"], (settings, ckpt)


def run_cli(args, plan, argv, stream, only):
    """One run of the task `choose` picked: --task lm goes to cli.lm; the exit code."""
    task, prepared = plan
    interactive, ask = walk_choice(args, sys.stdin, stream, alone=parallel.launched_size() == 1)
    if task == "lm":
        comm = parallel.world()                         # mpiexec -n N: data parallel (after backend.use)
        with parallel.abort_on_error(comm):             # an error on one rank stops them all
            return run_lm(args, argv, stream, interactive and comm.size == 1, ask, prepared=prepared)
    if task == "qa":
        return run_qa(args, argv, stream)
    settings, ckpt = prepared
    out = run_dir(args, settings["task"])
    run = Run(settings, ckpt, args.resume)
    print(wrap(f"task {run.task.name}: {run.task.n_train()} training examples; "
               f"{type(run.model).__name__} with {run.model.n_parameters():,} parameters\n"
               f"run directory {out}" + (f"; resuming after epoch {run.epoch}" if ckpt else "")), file=stream)
    if args.html is not None:                           # the page of the walk's example, then train
        size = write_step_page(args.html, run.model, *run.task.walk_example(), run.task.vocab, run.loss_fn,
                               run.optimizer, f"--task {run.task.name}", run.task.name == "sentences")
        print(f"wrote {args.html}: one training step of the walk's example, {size / 1e6:.1f} MB", file=stream)
    if interactive and ckpt is None:                    # a resumed run has had its walk
        ids, targets = run.task.walk_example()
        walk(run.model, ids, targets, run.task.vocab, run.loss_fn, run.optimizer, ask, stream)
    run.run_id = make_run_dir(out, ckpt, args.resume)   # only now: Ctrl-C in the walk leaves no folder
    if ckpt is not None:
        carry_best(run, args.resume, out)
    write_json(out / "config.json", with_run_id(run_config(settings, settings["task"], args.device or "cpu",
                                                           only), run.run_id))
    interrupted = fit(run, out, stream, live=stream.isatty())
    command = "python train_step_by_step.py " + shlex.join(argv)
    print_summary(finish(run, out, interrupted, command), out, stream)
    if run.diverged:
        print(f"error: {run.diverged}", file=sys.stderr)
        return EXIT_USER_ERROR
    return EXIT_INTERRUPTED if interrupted else 0


def command(argv):
    """Parse flags (every rank of mpiexec reaches the exchange, refused or not), walk (on a terminal),
    train; exit 0, or 130 when Ctrl-C stopped the run after saving."""
    try:
        parser = build_parser()
        with agree.agreement(agree.start_comm(), SAME_FLAGS) as agreed:
            args = parse_with_config(parser, argv)
            plan = choose(args, parser.only, agreed)
        return run_cli(args, plan, argv, sys.stdout, parser.only)
    finally:
        release_run_locks()                                 # the run folder is free for the next command


def main(argv=None):
    """Entry point: exit 0, 2 on bad input (under mpiexec every rank raised it; rank 0 says it), 130 on
    Ctrl-C; --help returns its status, as a rank's exit inside abort_on_error does."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_main(command, argv, interrupted="\ninterrupted (Ctrl-C).", help_returns=True,
                    says_mistakes=parallel.launched_rank() == 0)
