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
import math
import shlex
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from .. import backend
from .. import visualization as viz
from ..backend import to_numpy
from ..checkpoint import (NAT, NUMBER, POSITIVE, NonFinite, check_schema, load_checkpoint, needs_task,
                          parsed_by, read_meta, restore_optimizer, save_checkpoint)
from ..errors import UserError
from ..explain.page import write_step_page
from ..files import atomic_path, release_run_locks
from ..models import build_model
from ..optim.optimizers import Adam
from ..tasks import digits
from ..train import agree, parallel
from ..train.progress import shell_wrap, wrap
from ..train.records import with_run_id, write_json, write_metrics
from ..domains import THREADS
from ..train.step import Diverged
from .common import (BATCH_SIZE, EXIT_INTERRUPTED, EXIT_USER_ERROR, LEARNING_RATE, SEED, Domain, Parser,
                     Progress, make_run_dir, resume_path, run_dir)
from .config import check_task_flags, given_flags, parse_with_config, run_config
from .lm import add_lm_arguments, is_lm_checkpoint, prepare_lm, presets_table, run_lm
from .qa import add_qa_arguments, run_qa
from .tasks import TASK_CLASSES
from .walkthrough import walk

TASKS = ("digits", "sentences", "lm", "qa")
DEFAULT_EPOCHS = {"digits": 20, "sentences": 300}
METRIC_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]
DEFAULTS = {"task": "digits", "size": "medium", "batch_size": 32, "lr": 1e-3, "seed": 0,
            "n_args": 3, "digits": "0-9"}
# flags only some tasks read (the --task lm ones are added by build_parser); the rest apply to all
# what a rank says when the ranks' flags differ (agree.agreement)
SAME_FLAGS = "start every rank with the same flags"
ONLY = {"size": ("digits",), "n_args": ("digits",), "digits": ("digits",), "epochs": ("digits", "sentences")}


# ---------------------------------------------------------------- flags and settings

def digit_range(text):
    """'LOW-HIGH' with 0 <= LOW <= HIGH <= 9, e.g. '0-9' or '2-7'."""
    parts = text.split("-")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 1 for p in parts) or parts[0] > parts[1]:
        raise argparse.ArgumentTypeError(f"{text!r} is not a digit range LOW-HIGH within 0-9, "
                                         "e.g. 0-9 or 2-7")
    return text


N_ARGS = Domain(int, 2, 13)                                 # Second needs 2; 13 + 3 tokens fill max_len 16
EPOCHS = Domain(int, 1, 10**6)


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
    p.add_argument("--lr", type=LEARNING_RATE, help="Adam learning rate (default 1e-3)")
    p.add_argument("--seed", type=SEED, help="seed of the data and of the run's one random "
                   "generator (model init, dropout, shuffling) (default 0)")
    p.add_argument("--out", type=Path, help="run directory (default runs/<YYYYmmdd-HHMMSS>-<task>; "
                   "with --resume, the checkpoint's directory)")
    p.add_argument("--resume", type=Path, metavar="CHECKPOINT",
                   help="continue a run from its last.npz (or best.npz, or its folder) exactly as if "
                   "never stopped; only --epochs/--steps (to go further) and bookkeeping flags may change")
    p.add_argument("--device", choices=["cpu", "cuda"],
                   help="where to train: cpu (NumPy, default) or cuda (an NVIDIA GPU through CuPy)")
    p.add_argument("--reference", action="store_true",
                   help="run the plain reference layers, no CPU overlay "
                   "(as GLASSFORMER_REFERENCE=1; to compare)")
    p.add_argument("--threads", type=THREADS, metavar="N", help="CPU threads for the BLAS and the CPU "
                   "overlay's thread pool (default $GLASSFORMER_THREADS, else every core)")
    p.add_argument("--no-interactive", action="store_true",
                   help="skip the stage-by-stage walk-through (it runs only when stdin is a terminal)")
    p.add_argument("--html", type=Path, metavar="FILE", help="write the walk's example as one browser page "
                   "first (one training step: forward, backward and update, as python -m "
                   "glassformer.explain draws it), then train as usual (Ctrl-C stops)")
    p.only = dict(ONLY, **{dest: ("lm",) for dest in add_lm_arguments(p)},   # --data, --preset, ...
                  **{dest: ("qa",) for dest in add_qa_arguments(p)})      # qa reads the lm ones too
    return p


# what a resumable run's header holds under "extra": checked before --resume uses any of it
RUN_STATE = {"epoch": NAT, "history": [dict], "best_val_acc": NUMBER, "best_val_loss": NUMBER,
             "best_epoch": NAT, "run": {
                 "task": parsed_by(lambda v: TASK_CLASSES[v], f"one of {sorted(TASK_CLASSES)}"),
                 "size?": parsed_by(lambda v: digits.SIZES[v], f"one of {sorted(digits.SIZES)}"),
                 "batch_size": POSITIVE, "lr": parsed_by(LEARNING_RATE, LEARNING_RATE.text),
                 "seed": NAT, "epochs": POSITIVE, "n_args?": parsed_by(N_ARGS, N_ARGS.text),
                 "digits?": parsed_by(digit_range, "a digit range LOW-HIGH")}}


def resolve_settings(args):
    """The run's settings from flags, or from the checkpoint on --resume; (settings, checkpoint)."""
    if args.resume is None:
        settings = {k: d if getattr(args, k) is None else getattr(args, k)
                    for k, d in DEFAULTS.items()}
        settings["epochs"] = args.epochs or DEFAULT_EPOCHS[settings["task"]]
        return settings, None
    ckpt = load_checkpoint(args.resume)
    saved = ckpt.meta.get("extra", {}).get("run")
    if not saved or ckpt.meta.get("rng_state") is None or not ckpt.optimizer_state:
        raise UserError(f"{args.resume}: this checkpoint was not written by train_step_by_step.py "
                        "(no run settings, optimizer or RNG state): it cannot be resumed")
    check_schema(args.resume, ckpt.meta["extra"], RUN_STATE, "header extra")
    for key in DEFAULTS:
        given = getattr(args, key)
        if given is not None and given != saved.get(key, DEFAULTS[key]):
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{flag} {given} differs from the resumed run's {saved[key]}: drop "
                            f"{flag} to continue {args.resume} as it was started")
    settings = {k: saved.get(k, DEFAULTS[k]) for k in DEFAULTS}   # older runs lack newer keys
    settings["epochs"] = args.epochs or saved["epochs"]
    done = ckpt.meta["extra"]["epoch"]
    if done >= settings["epochs"]:
        raise UserError(f"{args.resume} already has {done} epochs (the run asked for "
                        f"{settings['epochs']}): pass --epochs N with N > {done} to train more")
    return settings, ckpt


# ---------------------------------------------------------------- a run: model, optimizer, one RNG

class Run:
    """Everything one training run holds: the task, model, optimizer, its one Generator, history."""

    def __init__(self, settings, checkpoint=None, resume_path=None):
        self.settings = settings
        options = {} if settings["task"] != "digits" else \
            {"n_args": settings.get("n_args", 3), "digit_range": settings.get("digits", "0-9")}
        self.task = TASK_CLASSES[settings["task"]](settings["size"], settings["seed"], **options)
        self.rng = np.random.default_rng(settings["seed"])  # init, dropout and shuffling all draw here
        want = self.task.model_config()
        config = checkpoint.config if checkpoint else want
        if type(config) is not type(want) or any(getattr(config, k) != getattr(want, k) for k in
                                                 ("kind", "vocab_size", "n_classes", "max_len")):
            raise UserError(f"{resume_path}: its model does not fit the {self.task.name} task (another "
                            "vocabulary, class count or context): it cannot be resumed")
        self.model = build_model(config, self.rng)
        self.loss_fn = self.task.loss_fn()
        self.optimizer = Adam(self.model.get_parameters(), lr=settings["lr"])
        self.epoch, self.history = 0, []
        self.best_acc, self.best_loss, self.best_epoch = -1.0, math.inf, 0
        self.resumed_from, self.diverged = None, None       # diverged: the Diverged that stopped it
        self.run_id = None                                  # make_run_dir's: saved in every checkpoint
        if checkpoint is not None:
            self._resume(checkpoint, resume_path)

    def _resume(self, ckpt, path):
        self.model.load_state_dict(ckpt.model.state_dict())
        restore_optimizer(self.optimizer, ckpt)
        self.rng.bit_generator.state = ckpt.meta["rng_state"]   # the same Generator the layers hold
        extra = ckpt.meta["extra"]
        self.epoch, self.history = extra["epoch"], [dict(r) for r in extra["history"]]
        self.best_acc, self.best_epoch = extra["best_val_acc"], extra["best_epoch"]
        self.best_loss = extra["best_val_loss"]
        self.resumed_from = str(path)

    def save(self, path, row):
        """A checkpoint of the run as it stands at the end of self.epoch."""
        extra = {"epoch": self.epoch, "run": self.settings, "history": self.history,
                 "best_val_acc": self.best_acc, "best_val_loss": self.best_loss,
                 "best_epoch": self.best_epoch, **({"run_id": self.run_id} if self.run_id else {})}
        try:
            save_checkpoint(path, self.model, tokenizer=self.task.tokenizer(), task=self.task.meta(),
                            optimizer=self.optimizer, step=self.optimizer.t, rng=self.rng,
                            metrics=row, extra=extra)
        except NonFinite as e:                              # nothing written: the files keep the last
            raise Diverged(None, f"{e.key} in the state to save became NaN or inf") from None


# ---------------------------------------------------------------- training and the end of a run

def fit(run, out, stream, live):
    """Epochs run.epoch+1 .. settings["epochs"]; best.npz, last.npz and metrics.csv after each.

    Returns True when Ctrl-C stopped it (the files hold the last finished epoch).
    """
    epochs, batch_size = run.settings["epochs"], run.settings["batch_size"]
    n_batches = -(-run.task.n_train() // batch_size)
    progress = Progress(stream, live, epochs, n_batches, run.epoch)
    try:
        while run.epoch < epochs:
            progress.begin(run.epoch + 1)
            start = time.perf_counter()
            train_loss, train_acc = run.task.train_epoch(run.model, run.loss_fn, run.optimizer,
                                                         batch_size, run.rng, progress.on_batch)
            val_loss, val_acc = run.task.evaluate(run.model, run.loss_fn)
            row = {"epoch": run.epoch + 1, "train_loss": round(train_loss, 6),
                   "train_acc": round(train_acc, 6), "val_loss": round(val_loss, 6),
                   "val_acc": round(val_acc, 6), "seconds": round(time.perf_counter() - start, 3)}
            run.epoch += 1
            run.history.append(row)
            is_best = (val_acc, -val_loss) > (run.best_acc, -run.best_loss)  # ties: lower loss
            if is_best:
                run.best_acc, run.best_loss, run.best_epoch = val_acc, val_loss, run.epoch
                run.save(out / "best.npz", row)
            run.save(out / "last.npz", row)
            write_metrics(out / "metrics.csv", METRIC_FIELDS, run.history)
            progress.end_epoch(row, is_best)
    except KeyboardInterrupt:
        progress.close()
        print(f"\ninterrupted (Ctrl-C) during epoch {run.epoch + 1}: stopping; the files keep "
              f"epoch {run.epoch}.", file=stream)
        return True
    except Diverged as e:                                   # nothing saved this epoch: the files keep
        progress.close()                                    # the last finite epoch (and best.npz)
        e.step = run.optimizer.t if e.step is None else e.step
        run.diverged = e
        print(f"\n{e}", file=stream)
    progress.close()
    return False


def carry_best(run, resume_path, out):
    """On --resume into another directory, bring the run's best.npz along (or restart the best)."""
    best = out / "best.npz"
    if best.exists():
        return
    source = resume_path.parent / "best.npz"
    if source.exists():
        with atomic_path(best) as tmp:
            shutil.copyfile(source, tmp)
    else:
        run.best_acc, run.best_loss, run.best_epoch = -1.0, math.inf, 0


def plot_run(run, out, model):
    """curves.png from the history, attention_layer{i}.png from `model` on a real test example."""
    files = []
    if run.history:
        files.append(viz.plot_curves(run.history, out / "curves.png"))
    ids, tokens = run.task.plot_example()
    model.eval()
    model.forward(ids)
    for i, block in enumerate(model.blocks):
        w = to_numpy(block.attn.last_attention_weights[0])  # (H, T, T)
        title = f"{run.task.name}: layer {i} attention on '{' '.join(tokens)}'"
        files.append(viz.plot_attention(w, tokens, out / f"attention_layer{i}.png", title))
    return files


def finish(run, out, interrupted, command):
    """Evaluate best.npz on the test data, draw the plots, write metrics.csv and summary.json."""
    write_metrics(out / "metrics.csv", METRIC_FIELDS, run.history)
    best = out / "best.npz"
    report, best_of = {}, {}
    last = read_meta(out / "last.npz")[0]["extra"] if (out / "last.npz").exists() else {}
    if best.exists():
        saved = load_checkpoint(best, optimizer=False)      # the summary names what the files hold
        model, best_of = saved.model, saved.meta["extra"]
        report = run.task.report(model, run.loss_fn)
        plot_run(run, out, model)
    elif run.history:
        viz.plot_curves(run.history, out / "curves.png")
    summary = {
        "task": run.task.name, "command": command, "date": datetime.now().isoformat(timespec="seconds"),
        "interrupted": interrupted, "epochs_completed": last.get("epoch", run.epoch),
        "epochs_requested": run.settings["epochs"], "best_epoch": best_of.get("best_epoch"),
        "best_val_accuracy": best_of.get("best_val_acc"),
        "diverged": run.diverged and run.diverged.record(),
        "test_accuracy": report.get("test_accuracy"),
        **{k: v for k, v in report.items() if k != "test_accuracy"},
        "train_seconds": round(sum(r["seconds"] for r in run.history), 3),
        "resumed_from": run.resumed_from,
        "config": {"model": run.model.config.to_dict(), "task": run.task.meta(),
                   "training": {**run.settings, "optimizer": "Adam",
                                "device": "cuda" if backend.current() == "cupy" else "cpu"}},
        "files": sorted({p.name for p in out.iterdir() if p.suffix in (".npz", ".csv", ".png")}
                        | {"config.json", "summary.json"}),
    }
    write_json(out / "summary.json", summary)
    return summary


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
    interactive = not args.no_interactive and sys.stdin.isatty()
    if task == "lm":
        comm = parallel.world()                         # mpiexec -n N: data parallel (after backend.use)
        with parallel.abort_on_error(comm):             # an error on one rank stops them all
            return run_lm(args, argv, stream, interactive and comm.size == 1, prepared=prepared)
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
        walk(run.model, ids, targets, run.task.vocab, run.loss_fn, run.optimizer, input, stream)
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


def main(argv=None):
    """Parse flags, walk (on a terminal), train; exit 0, 2 on bad input, 130 on Ctrl-C."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        with agree.agreement(agree.start_comm(), SAME_FLAGS) as agreed:   # mpiexec: every rank
            args = parse_with_config(parser, argv)          # gets to the exchange, refused or not
            plan = choose(args, parser.only, agreed)
        return run_cli(args, plan, argv, sys.stdout, parser.only)
    except UserError as e:
        if parallel.launched_rank() == 0:                   # mpiexec: every rank raised it; one says it
            print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except SystemExit as e:                                 # --help
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:
        print("\ninterrupted (Ctrl-C).", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        release_run_locks()                                 # the run folder is free for the next command
