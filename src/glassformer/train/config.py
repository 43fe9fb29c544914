"""TrainConfig: every optimisation and bookkeeping setting of a run, declared once, with one name.

Each field carries its default, its help text (the flag's; `{default}` is filled in from the field),
its domain (domains.Domain: the flag's type, and the check TrainConfig makes) and its resume rule,
what `--resume` may do with it:
  free      it may change: how long this session runs, what it prints, where it writes
  extend    it may change, and the cosine is re-planned to end there (steps)
  schedule  the learning-rate plan: the checkpoint's is kept (train/resume.py keep_schedule)
  fixed     the run's own: train_step_by_step.py --resume refuses another value
A field marked flag=True is a flag of train_step_by_step.py of the same name (`--grad-accum` is
grad_accum from the flag to the step); cli/lm.py and cli/train.py make the flags from the fields, so a
default cannot disagree. Checkpoints written before the names were one say accum_steps and
warmup_steps: current_names (RENAMED) reads them, the one place old names are mapped.
"""
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..domains import FRACTION, LEARNING_RATE, SEED, Domain

STEPS = Domain(int, 1, 10**9)                               # updates; warm-up and intervals as far
EVERY = Domain(int, 0, STEPS.high)                          # steps between two things; 0: never (or at the end)
SECONDS = Domain(float, 1e-3, 1e7)                          # --max-time: a millisecond to 115 days
ZERO = Domain(int, 0, 1)                                    # --zero-stage
RULES = ("free", "extend", "schedule", "fixed")             # what --resume may do (see above)
RENAMED = {"accum_steps": "grad_accum", "warmup_steps": "warmup"}   # old name -> the one name


def setting(default, domain, resume, help, metavar=None, flag=True):
    """A TrainConfig field: its default, domain, resume rule, help text, and the flag's metavar."""
    assert resume in RULES
    return field(default=default, metadata={"domain": domain, "resume": resume, "help": help,
                                            "metavar": metavar, "flag": flag})


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping settings (the batch shape is the batches function's business)."""
    steps: int = setting(1000, STEPS, "extend", "optimizer updates (default {default}; with --resume, the "
                         "total to reach)", "N")
    warmup: int = setting(100, EVERY, "schedule", "linear warm-up steps before the cosine (default "
                          "{default})", "N")
    lr: float = setting(1e-3, LEARNING_RATE, "schedule", "Adam learning rate (default 1e-3)")   # the peak
    min_lr: float = setting(None, Domain(float, 0.0, LEARNING_RATE.high), "schedule",
                            "where the cosine ends (default --lr / 10)", "LR")   # None: lr / 10
    weight_decay: float = setting(0.1, Domain(float, 0.0, 10.0), "fixed", "AdamW's decoupled decay, "
                                  "matrices only (default {default})", "WD")
    beta1: float = setting(0.9, FRACTION, "fixed", "AdamW's first-moment decay (default {default})", "B1")
    beta2: float = setting(0.99, FRACTION, "fixed", "AdamW's second-moment decay (default {default})", "B2")
    grad_clip: float = setting(1.0, Domain(float, 0.0, 1e6), "fixed", "bound on the global gradient L2 "
                               "norm; 0: off (default {default})", "NORM")
    grad_accum: int = setting(1, Domain(int, 1, 2**16), "fixed", "micro-batches of --batch-size per "
                              "update, their gradients summed (default {default})", "N")
    eval_interval: int = setting(100, EVERY, "free", "steps between validation passes (and last.npz "
                                 "saves); 0: only at the end (default {default})", "N")
    eval_batches: int = setting(20, Domain(int, 1, 10**6), "fixed", "random validation batches per pass "
                                "(default {default})", "N")
    eval_seed: int = setting(1234, SEED, "fixed", "seed of the validation batches: the same ones at "
                             "every pass", flag=False)
    log_interval: int = setting(None, Domain(int, 1, STEPS.high), "free", "steps between progress lines "
                                "(default steps/20, at most 50)", "N")   # None: derived from steps
    checkpoint_interval: int = setting(0, EVERY, "free", "steps between last.npz saves; 0: at the end "
                                       "only (the command line saves at each validation)", flag=False)
    sample_every: int = setting(0, EVERY, "free", "print a 64-token sample every N steps, as llm.c does; "
                                "0: never (default)", "N")
    max_time: float = setting(None, SECONDS, "free", "stop cleanly after this much training time in this "
                              "session: checkpoints saved, the summary says so; --resume goes on",
                              "SECONDS")                    # None: no limit (per fit() call)
    out_dir: str = setting(None, Path, "free", "where best.npz, last.npz, metrics.csv and loss.png go; "
                           "None: write nothing", flag=False)
    seed: int = setting(0, SEED, "fixed", "seed of the data and of the run's one random generator (model "
                        "init, dropout, shuffling) (default {default})")   # the batches and dropout here
    zero_stage: int = setting(0, ZERO, "free", "1: under mpiexec, ZeRO-1: each process keeps AdamW's "
                              "moments for its 1/N of the parameters only, and the same numbers come out; "
                              "0: every process keeps all (default {default})", "Z")   # train/zero.py

    def __post_init__(self):
        """Every number checked against its field's domain; then the derived defaults filled in."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and isinstance(f.metadata["domain"], Domain):
                f.metadata["domain"].check(value, f.name)   # DomainError: a UserError
        if self.min_lr is None:
            object.__setattr__(self, "min_lr", default_min_lr(self.lr))
        if self.log_interval is None:
            object.__setattr__(self, "log_interval", default_log_interval(self.steps))

    @classmethod
    def from_dict(cls, d):
        """The config a checkpoint saved (asdict), old names read as the current ones."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in current_names(d).items() if k in known})


def default_min_lr(lr):
    """min_lr's default: the cosine ends at a tenth of the peak, as nanoGPT's."""
    return lr / 10


def default_log_interval(steps):
    """log_interval's default: about 20 progress lines a run, at least one step and at most 50 apart."""
    return max(1, min(50, steps // 20))


def current_names(saved):
    """A saved train_config with its old names (accum_steps, warmup_steps) as the current ones, and an
    old "no time limit" (max_time 0.0) as None: every reader of a saved config goes through here."""
    d = {RENAMED.get(k, k): v for k, v in saved.items()}
    if d.get("max_time") == 0:
        d["max_time"] = None
    return d


def settings_info():
    """{name: field} of every TrainConfig setting, in declaration order."""
    return {f.name: f for f in fields(TrainConfig)}


def default_of(name):
    """The field's default (None: derived, see TrainConfig.__post_init__)."""
    return settings_info()[name].default


def flag_defaults():
    """{name: default} of the settings that are train_step_by_step.py flags."""
    return {n: f.default for n, f in settings_info().items() if f.metadata["flag"]}


def resume_rule(name):
    """What --resume may do with the setting: one of RULES."""
    return settings_info()[name].metadata["resume"]


def may_change():
    """The flag settings --resume may change (rule free or extend), in declaration order."""
    return tuple(n for n, f in settings_info().items()
                 if f.metadata["flag"] and f.metadata["resume"] in ("free", "extend"))


def schedule_names():
    """The settings of the learning-rate plan (rule extend or schedule): a resume keeps them."""
    return tuple(n for n, f in settings_info().items() if f.metadata["resume"] in ("extend", "schedule"))


def flag_options(name):
    """argparse options of the setting's flag: its domain as type, metavar and help (default filled in)."""
    f = settings_info()[name]
    options = {"type": f.metadata["domain"], "metavar": f.metadata["metavar"],
               "help": f.metadata["help"].format(default=f.default)}
    return {k: v for k, v in options.items() if v is not None}
