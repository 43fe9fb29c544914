"""What every command shares: flag types, exit codes, the run folder, the epochs' progress, token labels."""
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
from ..progress import Meter, duration, first_fit, terminal_width
from ..train.records import check_run_files, claim_run


# ---------------------------------------------------------------- flags

# the domains more than one command declares (each flag's own are declared beside it)
SEED = domains.SEED                                         # 0 .. 2**32 - 1
BATCH_SIZE = Domain(int, 1, 2**20)                          # rows per batch; memory is checked too
CONTEXT = Domain(int, 1, 2**20)                             # tokens per window; and the model's positions
LEARNING_RATE = domains.LEARNING_RATE
FRACTION = domains.FRACTION                                 # dropout, Adam's betas, a share: [0, 1)


def add_device_arguments(p, device_help, default=None):
    """--device, --reference and --threads: where a command runs, and with which kernels."""
    p.add_argument("--device", choices=("cpu", "cuda"), default=default, help=device_help)
    p.add_argument("--reference", action="store_true",
                   help="run the plain reference layers, no CPU overlay "
                   "(as GLASSFORMER_REFERENCE=1; to compare)")
    p.add_argument("--threads", type=domains.THREADS, metavar="N", help="CPU threads for the BLAS and "
                   "the CPU overlay's thread pool (default $GLASSFORMER_THREADS, else every core; under "
                   "mpiexec, the cores shared out between the processes)")


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
    """The classifier epochs (digits, sentences) on the one meter (progress.Meter): a line per epoch,
    written through it; on a terminal the meter below them (`epochs: 2.3/20.0 (11%), ...`, rewritten
    in place) notes the loss and the last validation accuracy, and only the best, every ~25th and
    the last epoch's lines stay. Their ETA is the meter's, in progress.duration's format."""

    def __init__(self, out, live, epochs, n_batches, first_epoch):
        self.live, self.epochs, self.n_batches = live, epochs, n_batches
        self.epoch, self.last_acc = first_epoch, None
        self.meter = Meter("epochs", epochs * n_batches, "", out, live=live, initial=first_epoch * n_batches,
                           scale=1 / n_batches, digits=1, pipe_lines=False)   # counts batches, shows epochs
        self.columns = terminal_width() - 1                 # a line as wide as the terminal wraps
        self.every = max(1, epochs // 25)                   # terminal: keep ~25 epoch lines

    def begin(self, epoch):
        self.epoch = epoch

    def on_batch(self, i, n_batches, loss):
        """Batch i of this epoch done; on a terminal the meter notes the loss and val accuracy."""
        acc = "" if self.last_acc is None else f" val acc {self.last_acc:.3f}"
        note = f"loss {float(loss):.4f}{acc}" if self.live else None
        self.meter.set((self.epoch - 1) * self.n_batches + i + 1, note)

    def end_epoch(self, row, is_best):
        self.last_acc = row["val_acc"]
        eta = duration(self.meter.remaining())
        epoch, best = f"epoch {row['epoch']}/{self.epochs}", "  *best" if is_best else ""
        train, val = (f"{row['train_loss']:.4f}", f"{row['train_acc']:.3f}"), \
            (f"{row['val_loss']:.4f}", f"{row['val_acc']:.3f}")
        text = first_fit([f"{epoch}  batch {self.n_batches}/{self.n_batches}  loss {train[0]}  acc "
                          f"{train[1]}  |  val loss {val[0]}  acc {val[1]}  |  {row['seconds']:.1f} s  "
                          f"ETA {eta}{best}",                 # a narrow terminal: the short form
                          f"{epoch} loss {train[0]} acc {train[1]} val {val[0]} acc {val[1]} "
                          f"{row['seconds']:.1f}s ETA {eta}{best[1:]}"], self.columns + (not self.live))
        if not self.live or is_best or self.epoch % self.every == 0 or self.epoch == self.epochs:
            self.meter.write(text)

    def close(self):
        self.meter.close()
