"""Trainer: AdamW, warm-up + cosine, clipping, accumulation, validation, checkpoints and exact resume.

General over tasks: it needs a model, a loss (forward(logits, y) -> 0-d array, backward(scale)) and a
batches(rng) -> (x, y) function. One NumPy Generator draws the batches and every dropout mask, so its
saved state, the parameters and AdamW's moments make a resumed run repeat the straight run exactly.
"""
import contextlib
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import precision
from ..backend import array_module, synchronize
from ..checkpoint import (Checkpoint, NonFinite, load_checkpoint, restore_optimizer,
                          save_checkpoint)
from ..errors import UserError, stop_softly
from ..generate import eos_id, generate_tokens
from ..optim.optimizers import decay_mask, warmup_cosine
from ..optim.loss_scaler import LossScaler
from ..tokenizers import tokenizer_from_dict
from ..visualization import Panel, plot_curves
from .config import TrainConfig
from .epochs import estimate_loss, perplexity
from .parallel import DataParallel, world
from .progress import Meter, fold, step_line, terminal_width
from .records import best_saved, read_metrics, speed, write_metrics
from .resume import keep_schedule, saved_state, share_rng
from .step import Diverged, DivergenceGuard, WrappedStep, check_finite, train_step
from .zero import GatherForSaves, ShardedAdamW, adamw

CSV_FIELDS = ("step", "tokens", "elapsed_s", "lr", "train_loss", "grad_norm", "tokens_per_s",
              "ms_per_iter", "val_loss", "val_ppl")
LOSS_PANELS = (Panel("loss", "cross-entropy (nats/token)",
                     (("train_loss", "train (mean since last log)"), ("val_loss", "validation"))),)




class Trainer:
    """Runs TrainConfig.steps updates (AdamW, or the optimizer given) of model on batches(rng)."""

    def __init__(self, model, loss_fn, batches, config=None, val_batches=None, tokenizer=None,
                 task=None, log=sys.stderr, on_log=None, flops_per_token=None, peak_flops=None,
                 optimizer=None, rng=None):
        self.model, self.loss_fn, self.batches, self.val_batches = model, loss_fn, batches, val_batches
        self.comm = world()                                 # the ranks of a data-parallel run (parallel.py)
        self.config = config = config or TrainConfig()
        self.tokenizer = tokenizer.to_dict() if hasattr(tokenizer, "to_dict") else tokenizer
        self.task = task or {"name": "lm"}
        self.log, self.on_log = log, on_log                 # on_log(trainer, row) after each log line
        self.flops_per_token, self.peak_flops = flops_per_token, peak_flops   # model FLOPs; the roof
        if config.sample_every and self.tokenizer is None:
            raise UserError("sample_every needs the tokenizer (Trainer(..., tokenizer=...)) to print text")
        self.rng = np.random.default_rng(config.seed) if rng is None else rng   # given: the model's init one
        share_rng(model, self.rng if self.comm.size == 1 else self.comm.dropout_rng)   # ranks: own masks
        named = model.named_parameters()
        self.params = [pg for _, pg in named]
        self.optimizer = optimizer if optimizer is not None else adamw(
            self.params, self.comm, config.zero_stage, lr=config.lr, betas=(config.beta1, config.beta2),
            weight_decay=config.weight_decay, decay=decay_mask(named))
        # fp16 policy: dynamic loss scaling (the float32 master weights are the model's own parameters)
        self.scaler = LossScaler() if precision.current().loss_scaling else None
        if self.scaler is not None:                         # loss_fn.backward(d) gives scale * d * grad
            self.loss_fn = self.scaler.scaled(loss_fn)
        self.wrappers, self.step_fn = self.wrap_step()
        self.guard, self.diverged = DivergenceGuard(self.scaler), None   # diverged: {"step", "reason"}
        self.step, self.tokens_seen, self.elapsed, self.train_s = 0, 0, 0.0, 0.0   # train_s: in steps only
        self.stop_reason, self.width, self.meter = None, 80, None   # meter: while fit runs
        self.best_val, self.grad_norm = None, None
        self.history = []                                   # one dict per logged/evaluated step
        self.stop_requested = self.out_of_time = False
        self.run_id = None                                  # the run folder's id (records.claim_run)

    def wrap_step(self):
        """(wrappers, step function): the features this run needs around train_step, chosen once.
        A one-process fp32 run has none and runs train_step itself. Each wrapper may define
        begin_step, batch, reduce, after_step, before_last_save and after_fit (see _each)."""
        wrappers = []
        if self.comm.size > 1:
            wrappers.append(DataParallel(self.comm))        # train/parallel.py
        if isinstance(self.optimizer, ShardedAdamW):
            wrappers.append(GatherForSaves(self.optimizer))     # train/zero.py
        reduce = [w.reduce for w in wrappers if hasattr(w, "reduce")]
        update = None if self.scaler is None else self.scaler.step     # optim/loss_scaler.py
        if not (reduce or update):
            return wrappers, train_step
        return wrappers, WrappedStep(reduce[0] if reduce else None, update)

    def _each(self, hook, *args):
        """Run hook(*args) of every wrapper that has it (none in a one-process fp32 run)."""
        for wrapper in self.wrappers:
            if hasattr(wrapper, hook):
                getattr(wrapper, hook)(*args)

    # ---- one update ---------------------------------------------------------------------------

    def lr_at(self, step):
        c = self.config
        return warmup_cosine(step, c.lr, c.warmup, c.steps, c.min_lr)

    def update(self):
        """One update over grad_accum micro-batches; returns their mean loss as a device scalar."""
        c = self.config
        self.model.train()
        self.optimizer.lr = self.lr_at(self.step)
        self._each("begin_step", self)
        loss, _, norm = self.step_fn(self.model, self.loss_fn, self.optimizer, self._micro_batches(),
                                     c.grad_accum, c.grad_clip)
        self.guard.update(self.step + 1, loss, norm)       # NaN/inf: Diverged at the next check
        if norm is not None:                                # device scalar, before clipping
            self.grad_norm = norm
        self.step += 1
        return loss

    def _micro_batches(self):
        """grad_accum (inputs, targets) batches on the model's device, drawn one at a time."""
        xp = array_module(self.params[0][0])
        for _ in range(self.config.grad_accum):
            x, y = self.batches(self.rng)                   # the global batch, drawn alike on every rank
            self.tokens_seen += int(y.size)
            for wrapper in self.wrappers:                   # several ranks: this rank's rows
                if hasattr(wrapper, "batch"):
                    x, y = wrapper.batch(x, y)
            x, y = xp.asarray(x), xp.asarray(y)
            yield (x,), y

    def evaluate(self):
        """{"val_loss", "val_ppl"} over eval_batches validation batches (the same ones every call)."""
        c = self.config
        loss = estimate_loss(self.model, self.loss_fn, self.val_batches, c.eval_batches,
                             np.random.default_rng(c.eval_seed))
        return {"val_loss": loss, "val_ppl": perplexity(loss)}

    # ---- the loop -----------------------------------------------------------------------------

    def fit(self):
        """Train until config.steps, config.max_time or Ctrl-C (stop_reason says which); a summary dict."""
        c = self.config
        out = Path(c.out_dir) if c.out_dir else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        hard_stop, first, self.stop_requested, self.out_of_time = False, self.step, False, False
        window = self._window()
        try:
            with self._stop_on_sigint():
                while self.step < c.steps and not self.stop_requested and not self.out_of_time:
                    loss = self.update()
                    self._tick(window, loss)
                    self._each("after_step", self)          # several ranks: one stop, moments gathered
                    if self.step % c.log_interval == 0 or self.step == 1 or self.done() \
                            or self.stop_requested:
                        self._log_progress(window)
                    self._evaluate_save_sample(window, out)
        except KeyboardInterrupt:                           # a second Ctrl-C: stop at once
            hard_stop = True
            self.say(f"\ninterrupted at step {self.step}")
        except Diverged as e:                               # stop; nothing non-finite is saved
            self.diverged = e.record()
            self.say(f"\n{e}")
        finally:
            self.meter.close()                              # its last state stays on a terminal
            self.meter = None
        self._each("before_last_save", self, self.step > first, hard_stop)
        interrupted = hard_stop or self.stop_requested
        self.stop_reason = "diverged" if self.diverged else "interrupted" if interrupted else \
            "steps" if self.step >= c.steps else "max_time"
        if self.stop_reason == "max_time":
            self.say(f"stopped at step {self.step}: the time budget (max_time) of {c.max_time:g} s is spent")
        if out is not None:
            self._write_end(out, hard_stop, interrupted)
        self._each("after_fit", self)
        return self.summary(interrupted)

    def _window(self):
        """The progress window: loss summed since the last line, steps, tokens, and its clocks; the
        meter (a bar on a terminal; in a pipe only the log lines, which go through it)."""
        t0 = time.perf_counter()
        self.width = terminal_width()                      # the terminal's ($COLUMNS), 80 in a pipe
        self.meter = Meter("train", self.config.steps, " steps", self.log, initial=self.step,
                           pipe_lines=False)
        return {"loss": 0.0, "n": 0, "tokens": self.tokens_seen, "t": t0, "start": t0,
                "elapsed0": self.elapsed}

    def _tick(self, window, loss):
        """Add a step's loss to the window; the run's elapsed time; out_of_time once max_time is spent."""
        window["loss"] = window["loss"] + loss
        window["n"] += 1
        self.meter.set(self.step)
        now = time.perf_counter()
        self.elapsed = window["elapsed0"] + now - window["start"]
        self.out_of_time = bool(self.config.max_time) and now - window["start"] >= self.config.max_time

    def done(self):
        """The last step of this fit: config.steps reached or the time budget spent."""
        return self.step == self.config.steps or self.out_of_time

    def may_save(self):
        """True after a step at which rank 0 may write a checkpoint (ZeRO-1 gathers the moments then)."""
        c = self.config
        return self.done() or self.stop_requested or any(
            i and self.step % i == 0 for i in (c.eval_interval, c.checkpoint_interval))

    def _evaluate_save_sample(self, window, out):
        """Validation, last.npz and a sample where their intervals fall; not training time, rank 0's."""
        c = self.config
        evaluate = self.val_batches is not None and (self.done() or c.eval_interval
                                                     and self.step % c.eval_interval == 0)
        save = out is not None and c.checkpoint_interval and self.step % c.checkpoint_interval == 0
        sample = c.sample_every and self.step % c.sample_every == 0
        if evaluate or save or sample:
            with self._paused(window), self._alone():
                if evaluate:
                    self._evaluate_and_keep_best(out)
                if save:
                    self.save(out / "last.npz")
                if sample:
                    self.say(f"--- sample at step {self.step} ---\n{fold(self.sample())}\n---")

    def _write_end(self, out, hard_stop, interrupted):
        """last.npz (unless a hard stop or divergence), metrics.csv, loss.png at the end of fit."""
        if not (hard_stop or self.diverged):                # never save a half-applied update
            self._save_last(out)
        write_metrics(out / "metrics.csv", CSV_FIELDS, self.history)
        if self.history:
            plot_curves(self.history, out / "loss.png", x="step", panels=LOSS_PANELS)
        if interrupted and (out / "best.npz").exists():
            self.say(f"best checkpoint kept: {out / 'best.npz'}")

    def _save_last(self, out):
        """last.npz at the end of fit; state gone NaN or inf (AdamW's moments, say) stops as diverged."""
        try:
            self.save(out / "last.npz")
        except Diverged as e:
            self.diverged, self.stop_reason = e.record(), "diverged"
            self.say(f"\n{e}")

    def summary(self, interrupted=False):
        last = next((r for r in reversed(self.history) if r.get("val_loss") is not None), {})
        train = next((r for r in reversed(self.history) if r.get("train_loss") is not None), {})
        return {"step": self.step, "train_loss": train.get("train_loss"),
                "val_loss": last.get("val_loss"), "val_ppl": last.get("val_ppl"),   # best: best.npz's header
                **best_saved(self.config.out_dir, self.best_val), "tokens": self.tokens_seen,
                "diverged": self.diverged,
                "precision": precision.current().name, "world_size": self.comm.size,
                "zero_stage": self.config.zero_stage, "moment_bytes": self.optimizer.moment_bytes(),
                "loss_scale": None if self.scaler is None else self.scaler.scale,
                "skipped_steps": None if self.scaler is None else self.scaler.skipped_steps,
                "elapsed_s": round(self.elapsed, 3),
                "tokens_per_s": self.tokens_seen / self.elapsed if self.elapsed else None,
                "interrupted": interrupted, "stop_reason": self.stop_reason, **self.speed()}

    def speed(self):
        """ms per update, training tokens/s and model FLOP/s over the time spent in updates (no evals)."""
        return speed(self.train_s, self.step, self.tokens_seen, self.flops_per_token, self.peak_flops)

    def sample(self, n_tokens=64, temperature=0.8):
        """A short continuation of the current model from the end-of-text token (else a validation
        token), as llm.c prints while training; its own generator, so training is not disturbed."""
        tok = tokenizer_from_dict(self.tokenizer)
        eos = eos_id(tok)
        if eos is not None:
            ids = [eos]
        else:
            draw = self.val_batches or self.batches
            ids = [int(np.asarray(draw(np.random.default_rng(self.config.eval_seed))[0])[0, 0])]
        new = generate_tokens(self.model, ids, n_tokens, temperature=temperature, seed=self.step,
                              eos_id=eos, vocab_size=tok.vocab_size)
        return tok.decode((ids if eos is None else []) + [i for i in new if i != eos])

    def say(self, text):
        """A line of the run's log; while fit runs, through the meter (above its bar on a terminal)."""
        if self.meter is not None:
            self.meter.write(text)
        else:
            print(text, file=self.log, flush=True)

    def _row(self):
        """The history row of the current step (log and evaluation of one step share a row)."""
        if not self.history or self.history[-1]["step"] != self.step:
            self.history.append({"step": self.step, "tokens": self.tokens_seen,
                                 "elapsed_s": round(self.elapsed, 3), "lr": self.optimizer.lr})
        return self.history[-1]

    def _log_progress(self, window):
        c = self.config
        self.guard.check(self.step)                         # syncs, as the loss below does
        loss = float(window["loss"]) / window["n"]          # the only per-interval host sync
        now = time.perf_counter()
        seconds = max(now - window["t"], 1e-9)              # this window's updates, pauses left out
        self.train_s += seconds
        rate, ms = (self.tokens_seen - window["tokens"]) / seconds, 1e3 * seconds / window["n"]
        eta = (c.steps - self.step) * ms / 1e3
        if c.max_time:
            eta = min(eta, max(c.max_time - (now - window["start"]), 0.0))
        row = self._row()
        row.update(train_loss=loss, tokens_per_s=round(rate, 1), ms_per_iter=round(ms, 3),
                   grad_norm=None if self.grad_norm is None else float(self.grad_norm))
        flops = (rate * self.flops_per_token, self.peak_flops) if self.flops_per_token else None
        scale = None if self.scaler is None else (self.scaler.scale, self.scaler.skipped_steps)
        self.meter.set(self.step, note=f"loss {loss:.4f}")
        self.say(step_line(self.step, c.steps, loss, self.optimizer.lr, ms, rate, eta, self.width, flops,
                           scale))
        window.update(loss=0.0, n=0, tokens=self.tokens_seen, t=now)
        if self.on_log is not None:
            self.on_log(self, row)

    def _evaluate_and_keep_best(self, out):
        metrics = self.evaluate()
        check_finite(self.step, validation_loss=metrics["val_loss"])   # a NaN model is never best
        self._row().update(metrics)
        best = self.best_val is None or metrics["val_loss"] < self.best_val
        if best:
            self.best_val = metrics["val_loss"]
            if out is not None:
                self.save(out / "best.npz", metrics)
        self.say(f"step {self.step}: val loss {metrics['val_loss']:.4f}, perplexity "
                 f"{metrics['val_ppl']:.2f}{' (best)' if best else ''}")
        if out is not None:
            write_metrics(out / "metrics.csv", CSV_FIELDS, self.history)

    @contextlib.contextmanager
    def _paused(self, window):
        """Time inside is not training time: the progress window's clock is moved past it."""
        synchronize()                                       # queued GPU work belongs to the steps before
        start = time.perf_counter()
        try:
            yield
        finally:
            window["t"] += time.perf_counter() - start

    @contextlib.contextmanager
    def _alone(self):
        """Work rank 0 does alone (evaluate, save, sample): with several ranks, a Diverged there (a NaN
        validation loss, or a NaN the guard sees only now) must stop them all, not rank 0 alone while
        the others wait for it in the next all-reduce: it leaves fit as an error (abort_on_error)."""
        try:
            yield
        except Diverged as e:
            if self.comm.size > 1:
                raise UserError(str(e)) from None
            raise

    def _stop_on_sigint(self):
        """First Ctrl-C (or SIGTERM, handled alike): finish this step, save, stop. Second: at once."""
        if self.comm.size > 1:
            return contextlib.nullcontext()                 # several ranks: parallel.world()'s handler

        def first():
            self.stop_requested = True
            self.say("\nstopping after this step (Ctrl-C again to stop at once)")
        return stop_softly(first)

    # ---- files --------------------------------------------------------------------------------

    def save(self, path, metrics=None):
        """A resumable checkpoint: model, AdamW moments, RNG state, tokenizer, task, train config."""
        self.guard.check(self.step)                         # a NaN model is never saved
        trainer_state = {"best_val": self.best_val, "tokens_seen": self.tokens_seen,
                         "elapsed": self.elapsed, "train_s": self.train_s,
                         "loss_scaler": None if self.scaler is None else self.scaler.state_dict()}
        try:
            return save_checkpoint(path, self.model, tokenizer=self.tokenizer, task=self.task,
                                   optimizer=self.optimizer, step=self.step, rng=self.rng,
                                   metrics=metrics or {}, extra={"train_config": asdict(self.config),
                                                                 "trainer": trainer_state,
                                                                 "run_id": self.run_id})
        except NonFinite as e:                              # checked in save_checkpoint: nothing written
            raise Diverged(self.step, f"{e.key} in the state to save became NaN or inf") from None

    def resume(self, checkpoint, extend=False):
        """Continue from a checkpoint (path or Checkpoint) written by save(): the same model config and
        schedule (extend=True: only `steps` may differ, the cosine re-planned to end there)."""
        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        extra = saved_state("checkpoint" if isinstance(checkpoint, Checkpoint) else checkpoint, ckpt)
        if ckpt.config != self.model.config:
            raise UserError("the checkpoint's model config differs from this model's: resume with the "
                            "same preset and settings it was trained with")
        if not ckpt.meta.get("rng_state"):
            raise UserError("the checkpoint holds no RNG state: it was not written by Trainer.save")
        self.config, note = keep_schedule(self.config, extra.get("train_config") or {}, extend)
        if note:
            self.say(note)
        self.model.load_state_dict(ckpt.model.state_dict())
        restore_optimizer(self.optimizer, ckpt)
        self.rng.bit_generator.state = ckpt.meta["rng_state"]   # in place: dropout layers share it
        state = extra.get("trainer", {})
        self.run_id = extra.get("run_id")
        self.step = ckpt.step
        self.best_val = state.get("best_val")
        self.tokens_seen = state.get("tokens_seen", 0)
        self.elapsed = state.get("elapsed", 0.0)
        self.train_s = state.get("train_s", self.elapsed)   # older checkpoints: evaluations included
        if self.scaler is not None and state.get("loss_scaler"):
            self.scaler.load_state_dict(state["loss_scaler"])
        if self.config.out_dir and (Path(self.config.out_dir) / "metrics.csv").exists():
            self.history = [r for r in read_metrics(Path(self.config.out_dir) / "metrics.csv",
                                                    CSV_FIELDS) if isinstance(r.get("step"), int)
                            and r["step"] <= self.step]
        return ckpt
