"""What every command shares: flag types, exit codes, the run folder, the progress line, token labels."""
import math
import os
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from .. import backend, precision
from .. import domains
from ..domains import Domain
from ..errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, UserError   # noqa: F401  (the CLI's exit codes)
from ..errors import Parser   # noqa: F401  (every command's parser: UserError lines, the closest flag)
from ..files import run_lock
from ..progress import duration, first_fit, terminal_width
from ..train.records import check_run_files, claim_run


# ---------------------------------------------------------------- flags

# the domains more than one command declares (each flag's own are declared beside it)
SEED = domains.SEED                                         # 0 .. 2**32 - 1
BATCH_SIZE = Domain(int, 1, 2**20)                          # rows per batch; memory is checked too
CONTEXT = Domain(int, 1, 2**20)                             # tokens per window; and the model's positions
LEARNING_RATE = domains.LEARNING_RATE
FRACTION = domains.FRACTION                                 # dropout, Adam's betas, a share: [0, 1)


def run_dir(args, task):
    """The run directory's path (made later by make_run_dir); UserError if it names a file."""
    if args.out is not None:
        out = args.out
    elif args.resume is not None:
        out = args.resume.parent
    else:
        out = Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{task}"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory: pass a directory path")
    return out


def make_run_dir(out, ckpt=None, resume=None):
    """Create and lock the run directory just before the first file goes in (Ctrl-C before leaves
    none); a second run on it is refused (files.run_lock), and so is resuming a checkpoint of another
    run (ckpt: the Checkpoint read from --resume); dead writers' temp files go. Returns the run id."""
    run_id = claim_run(out, resume, ckpt.meta) if ckpt is not None else claim_run(out)
    try:
        run_lock(out)                                       # held until the command ends
    except OSError as e:
        raise UserError(f"--out {out}: cannot create the run directory ({e.strerror or e})") from None
    return run_id


def resume_path(path):
    """--resume's checkpoint: a run folder means its last.npz; the run's files must be regular files."""
    if path is not None and path.is_dir() and os.path.lexists(path / "last.npz"):
        path = path / "last.npz"
    if path is not None:
        check_run_files(path if path.is_dir() else path.parent)   # a FIFO best.npz, metrics.csv: refused
    return path


def matmul_rate(budget_s=0.2):
    """This machine's float32 GEMM rate in FLOP/s, timed once within budget_s (the current BLAS threads
    on the CPU, the current precision on the GPU): the roof a run's model FLOP/s is read against."""
    xp = backend.xp_for()
    n = 4096 if xp is not np else 512
    a, b = (xp.asarray(np.random.default_rng(i).standard_normal((n, n), dtype=np.float32)) for i in (0, 1))
    precision.matmul(a, b)                                  # warm-up: threads, kernels
    backend.synchronize()
    best, start = math.inf, time.perf_counter()
    for _ in range(50):
        t = time.perf_counter()
        precision.matmul(a, b)
        backend.synchronize()
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() - start > budget_s:
            break
    return 2 * n ** 3 / best


# ---------------------------------------------------------------- token labels

def token_label(text, unicode_ok=True):
    """A token as a visible label: a space shows as a visible mark, newlines and tabs escaped."""
    if unicode_ok:                                          # one character per character: columns align
        return text.replace("\n", "\u21b5").replace("\t", "\u21e5").replace(" ", "\u2423") or "''"
    return text.replace("\n", "\\n").replace("\t", "\\t").replace(" ", "_") or "''"


class TokenNames:
    """id -> label for any vocabulary size, decoded on demand (GPT-2's 50,257 included)."""

    def __init__(self, tokenizer, unicode_ok=True):
        self.tokenizer, self.unicode_ok = tokenizer, unicode_ok

    def __len__(self):
        return self.tokenizer.vocab_size

    def __getitem__(self, i):
        return token_label(self.tokenizer.decode([int(i)]), self.unicode_ok)


def unicode_ok(stream):
    """True when the stream is UTF-8, so labels and heatmaps may use non-ASCII marks."""
    return (getattr(stream, "encoding", None) or "").lower().replace("-", "") in ("utf8", "utf_8")


# ---------------------------------------------------------------- progress line

class Progress:
    """The classifier epochs' line (digits, sentences): rewritten with \\r on a terminal, one plain line
    per epoch otherwise; its ETA in progress.duration's format, as the meter's."""

    def __init__(self, out, live, epochs, n_batches, first_epoch):
        self.out, self.live, self.epochs, self.n_batches = out, live, epochs, n_batches
        self.first_epoch, self.epoch, self.start = first_epoch, first_epoch, time.perf_counter()
        self.last_draw, self.last_acc, self.width = 0.0, None, 0
        self.batch, self.columns = 0, terminal_width() - 1  # a live line that wraps is half rewritten
        self.every = max(1, epochs // 25)                   # terminal: keep ~25 epoch lines

    def eta(self, batches_left):
        done = (self.epoch - self.first_epoch) * self.n_batches + self.batch
        rate = (time.perf_counter() - self.start) / max(done, 1)
        return duration(rate * batches_left)

    def begin(self, epoch):
        self.epoch, self.batch = epoch, 0

    def on_batch(self, i, n_batches, loss):
        self.batch = i + 1
        now = time.perf_counter()
        if not self.live or (now - self.last_draw < 0.1 and i + 1 < n_batches):
            return
        self.last_draw = now
        left = (self.epochs - self.epoch) * self.n_batches + n_batches - i - 1
        acc = "" if self.last_acc is None else f"  val acc {self.last_acc:.3f}"
        self._draw(f"epoch {self.epoch}/{self.epochs}  batch {i + 1}/{n_batches}  loss "
                   f"{float(loss):.4f}{acc}  ETA {self.eta(left)}")

    def _draw(self, text):
        text = text[:self.columns]
        print("\r" + text.ljust(self.width), end="", file=self.out, flush=True)
        self.width = len(text)

    def end_epoch(self, row, is_best):
        self.last_acc = row["val_acc"]
        left = (self.epochs - self.epoch) * self.n_batches
        epoch, best, eta = f"epoch {row['epoch']}/{self.epochs}", "  *best" if is_best else "", self.eta(left)
        train, val = (f"{row['train_loss']:.4f}", f"{row['train_acc']:.3f}"), \
            (f"{row['val_loss']:.4f}", f"{row['val_acc']:.3f}")
        text = first_fit([f"{epoch}  batch {self.n_batches}/{self.n_batches}  loss {train[0]}  acc "
                          f"{train[1]}  |  val loss {val[0]}  acc {val[1]}  |  {row['seconds']:.1f} s  "
                          f"ETA {eta}{best}",                 # a narrow terminal: the short form
                          f"{epoch} loss {train[0]} acc {train[1]} val {val[0]} acc {val[1]} "
                          f"{row['seconds']:.1f}s ETA {eta}{best[1:]}"], self.columns + (not self.live))
        keep = not self.live or is_best or self.epoch % self.every == 0 or self.epoch == self.epochs
        if self.live:
            self._draw(text)
            if keep:
                print(file=self.out, flush=True)
                self.width = 0
        elif keep:
            print(text, file=self.out, flush=True)

    def close(self):
        if self.live and self.width:
            print(file=self.out, flush=True)
            self.width = 0
