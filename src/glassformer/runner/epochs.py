"""The digits and sentences runs: settings, the run, its epochs on the one Trainer, and its summary.

An epoch is steps_per_epoch updates of train/trainer.py's Trainer, the loop --task lm runs too: the
batches function shuffles the training split once per epoch, drawing the permutation from the run's
one Generator where the epoch starts (after the last batch's dropout masks), and the Trainer calls
back after each update; at an epoch's end the run validates, keeps best.npz and last.npz and writes
metrics.csv. The Trainer prints nothing here: the caller's progress object prints each epoch.
"""
import argparse
import io
import math
import shutil
import time
from datetime import datetime

import numpy as np

from .. import backend
from .. import visualization as viz
from ..backend import array_module, to_numpy
from ..checkpoint import (NAT, NUMBER, POSITIVE, NonFinite, check_schema, load_checkpoint, parsed_by,
                          read_meta, restore_optimizer, save_checkpoint)
from ..domains import LEARNING_RATE, Domain
from ..errors import UserError
from ..files import atomic_path
from ..models import build_model
from ..optim.optimizers import Adam
from ..tasks import digits
from ..train.records import write_json, write_metrics
from ..train.step import Diverged, all_finite
from ..train.config import TrainConfig, default_of
from ..train.trainer import Trainer
from .tasks import TASK_CLASSES

DEFAULT_EPOCHS = {"digits": 20, "sentences": 300}
METRIC_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]
# a digits/sentences flag left out takes this value; --lr and --seed are TrainConfig's (train/config.py)
DEFAULTS = {"task": "digits", "size": "medium", "batch_size": 32, "lr": default_of("lr"),
            "seed": default_of("seed"), "n_args": 3, "digits": "0-9"}
N_ARGS = Domain(int, 2, 13)                                 # Second needs 2; 13 + 3 tokens fill max_len 16
EPOCHS = Domain(int, 1, 10**6)


def digit_range(text):
    """'LOW-HIGH' with 0 <= LOW <= HIGH <= 9, e.g. '0-9' or '2-7'."""
    parts = text.split("-")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 1 for p in parts) or parts[0] > parts[1]:
        raise argparse.ArgumentTypeError(f"{text!r} is not a digit range LOW-HIGH within 0-9, "
                                         "e.g. 0-9 or 2-7")
    return text


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


# ---------------------------------------------------------------- what the Trainer is given

class EpochBatches:
    """batches(rng) -> (x, y): the training split in mini-batches of a permutation drawn once per epoch."""

    def __init__(self, ids, targets, batch_size):
        self.ids, self.targets, self.batch_size = ids, targets, batch_size   # (N, T), (N,) or (N, T)
        self.n_batches = -(-len(ids) // batch_size)         # the last one may be short
        self.i, self.order = 0, None                        # i: the next batch of this epoch

    def __call__(self, rng):
        if self.i == 0:                                     # an epoch starts: its order, from the run's rng
            self.order = array_module(self.ids).asarray(rng.permutation(len(self.ids)))
        idx = self.order[self.i * self.batch_size:(self.i + 1) * self.batch_size]
        self.i = (self.i + 1) % self.n_batches
        return self.ids[idx], self.targets[idx]


class EpochTally:
    """The task's loss, adding up the epoch's loss and correct predictions over the counted targets
    (targets equal to pad are not counted) as the updates compute them: no extra pass, no host sync."""

    def __init__(self, loss_fn, pad=None):
        self.loss_fn, self.pad = loss_fn, pad
        self.total_loss, self.correct, self.counted = 0.0, 0, 0

    def forward(self, logits, y):
        """The loss of (B, C) or (B, T, V) logits; the batch's share of the epoch's tally added."""
        xp = array_module(y)
        loss = self.loss_fn.forward(logits, y)
        real = xp.ones(y.shape, dtype=bool) if self.pad is None else y != self.pad
        self.total_loss = self.total_loss + loss * real.sum()   # float64, on the device
        self.correct = self.correct + ((logits.argmax(axis=-1) == y) & real).sum()
        self.counted = self.counted + real.sum()
        return loss

    def backward(self, scale=1.0):
        return self.loss_fn.backward(scale)

    def reset(self):
        """(mean loss, accuracy) of the epoch so far; the tally back to zero (one host sync)."""
        n = max(int(self.counted), 1)
        done = float(self.total_loss) / n, float(self.correct) / n
        self.total_loss, self.correct, self.counted = 0.0, 0, 0
        return done


class Silent(io.TextIOBase):
    """A stream that keeps nothing: the Trainer's step lines, which an epoch run prints per epoch."""

    def writable(self):
        return True

    def write(self, text):
        return len(text)


# ---------------------------------------------------------------- a run: model, optimizer, one RNG

class Run:
    """Everything one training run holds: the task, model, its Trainer (Adam, the one Generator), history."""

    def __init__(self, settings, checkpoint=None, resume_path=None):
        self.settings = settings
        options = {} if settings["task"] != "digits" else \
            {"n_args": settings.get("n_args", 3), "digit_range": settings.get("digits", "0-9")}
        self.task = TASK_CLASSES[settings["task"]](settings["size"], settings["seed"], **options)
        rng = np.random.default_rng(settings["seed"])       # init, dropout and shuffling all draw here
        want = self.task.model_config()
        config = checkpoint.config if checkpoint else want
        if type(config) is not type(want) or any(getattr(config, k) != getattr(want, k) for k in
                                                 ("kind", "vocab_size", "n_classes", "max_len")):
            raise UserError(f"{resume_path}: its model does not fit the {self.task.name} task (another "
                            "vocabulary, class count or context): it cannot be resumed")
        self.model = build_model(config, rng)
        self.loss_fn = self.task.loss_fn()
        self.optimizer = Adam(self.model.get_parameters(), lr=settings["lr"])
        ids, targets, pad = self.task.train_data()
        self.batches = EpochBatches(ids, targets, settings["batch_size"])
        self.tally = EpochTally(self.loss_fn, pad)
        self.trainer = Trainer(self.model, self.tally, self.batches, self.train_config(), log=Silent(),
                               optimizer=self.optimizer, rng=rng, on_log=self._after_step)
        self.rng = rng
        self.epoch, self.history = 0, []
        self.best_acc, self.best_loss, self.best_epoch = -1.0, math.inf, 0
        self.resumed_from, self.diverged = None, None       # diverged: the Diverged that stopped it
        self.run_id = None                                  # make_run_dir's: saved in every checkpoint
        self.out, self.progress, self.started = None, None, 0.0
        if checkpoint is not None:
            self._resume(checkpoint, resume_path)

    def train_config(self, log_interval=1):
        """A constant learning rate (no warm-up, the cosine from lr to lr), no clipping, no decay."""
        s = self.settings
        return TrainConfig(steps=s["epochs"] * self.batches.n_batches, lr=s["lr"], min_lr=s["lr"],
                           warmup=0, weight_decay=0.0, grad_clip=0.0, eval_interval=0,
                           log_interval=log_interval, seed=s["seed"])

    def _resume(self, ckpt, path):
        self.model.load_state_dict(ckpt.model.state_dict())
        restore_optimizer(self.optimizer, ckpt)
        self.rng.bit_generator.state = ckpt.meta["rng_state"]   # the same Generator the layers hold
        extra = ckpt.meta["extra"]
        self.epoch, self.history = extra["epoch"], [dict(r) for r in extra["history"]]
        self.best_acc, self.best_epoch = extra["best_val_acc"], extra["best_epoch"]
        self.best_loss = extra["best_val_loss"]
        self.trainer.step = self.epoch * self.batches.n_batches
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

    # ---- the epochs, on the Trainer

    def fit(self, out, progress, live=False):
        """Epochs self.epoch+1 .. settings["epochs"]; best.npz, last.npz and metrics.csv after each.

        progress: begin(epoch), on_batch(i, n_batches, loss), end_epoch(row, is_best) (cli.common's
        Progress). Returns True when Ctrl-C stopped it (the files hold the last finished epoch); a
        divergence is left in self.diverged.
        """
        self.out, self.progress = out, progress
        n = self.batches.n_batches                          # a live line: every update; else per epoch
        self.trainer.config = self.train_config(1 if live else n)
        self.started = time.perf_counter()
        progress.begin(self.epoch + 1)
        summary = self.trainer.fit()
        if summary["diverged"]:
            self.diverged = Diverged(**summary["diverged"])
        return summary["interrupted"]

    def _after_step(self, trainer, row):
        """The Trainer's on_log: the live line; at an epoch's end validation, the files, its line."""
        i = (trainer.step - 1) % self.batches.n_batches
        self.progress.on_batch(i, self.batches.n_batches, row["train_loss"])
        if i + 1 == self.batches.n_batches:
            try:
                self._end_epoch()
            except Diverged as e:                           # no step known where it was raised
                e.step = self.optimizer.t if e.step is None else e.step
                raise

    def _end_epoch(self):
        """Validate, keep the best, save, write metrics.csv and print the epoch's line."""
        if not all_finite(self.model):                      # the last update overflowed
            raise Diverged(self.optimizer.t, "an update made the weights NaN or inf")
        train_loss, train_acc = self.tally.reset()
        val_loss, val_acc = self.task.evaluate(self.model, self.loss_fn)
        row = {"epoch": self.epoch + 1, "train_loss": round(train_loss, 6),
               "train_acc": round(train_acc, 6), "val_loss": round(val_loss, 6),
               "val_acc": round(val_acc, 6), "seconds": round(time.perf_counter() - self.started, 3)}
        self.epoch += 1
        self.history.append(row)
        is_best = (val_acc, -val_loss) > (self.best_acc, -self.best_loss)  # ties: lower loss
        if is_best:
            self.best_acc, self.best_loss, self.best_epoch = val_acc, val_loss, self.epoch
            self.save(self.out / "best.npz", row)
        self.save(self.out / "last.npz", row)
        write_metrics(self.out / "metrics.csv", METRIC_FIELDS, self.history)
        self.progress.end_epoch(row, is_best)
        self.started = time.perf_counter()
        if self.epoch < self.settings["epochs"]:
            self.progress.begin(self.epoch + 1)


# ---------------------------------------------------------------- the end of a run

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
