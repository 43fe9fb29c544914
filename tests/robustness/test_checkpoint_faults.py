"""Faults around checkpoints: divergence (never saved, never best, recorded), fp16 overflow skipped
and counted, a resumed run keeps its schedule, a full disk and Ctrl-C during a save keep the files and
the summary in agreement, and the one error boundary every entry point runs inside."""
import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glassformer import checkpoint, precision
from glassformer.checkpoint import load_checkpoint, read_meta
from glassformer.cli import train
from glassformer.cli.train import Run
from glassformer.runner import epochs as run_epochs
from glassformer.errors import UserError, run_main
from glassformer.tasks import digits
from glassformer.train.records import write_json
from glassformer.train.step import Diverged, DivergenceGuard
from glassformer.train.trainer import Trainer
from unit.train.test_trainer import make_trainer

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--task", "digits", "--size", "small", "--batch-size", "64", "--no-interactive"]


@pytest.fixture
def small_digits(monkeypatch):
    monkeypatch.setitem(digits.SIZES, "small", 300)


def blow_up_at(trainer, step):
    """From `step` on the learning rate is 1e20: the next updates overflow."""
    lr_at = trainer.lr_at
    trainer.lr_at = lambda s: lr_at(s) if s < step else 1e20


# ---- the LM Trainer -----------------------------------------------------------------------------------

def test_a_diverging_lm_run_stops_and_keeps_its_last_finite_best(tmp_path):
    tr = make_trainer(steps=30, eval_interval=2, checkpoint_interval=2, out_dir=str(tmp_path))
    blow_up_at(tr, 5)
    summary = tr.fit()
    assert summary["stop_reason"] == "diverged" and summary["diverged"]["step"] <= 8
    assert "nan" in summary["diverged"]["reason"].lower() and "diverged at step" in tr.log.getvalue()
    best, last = load_checkpoint(tmp_path / "best.npz"), load_checkpoint(tmp_path / "last.npz")
    assert best.step <= 4 and last.step <= summary["diverged"]["step"]   # both finite (loaded)
    assert summary["best_step"] == best.step and summary["best_val_loss"] == best.metrics["val_loss"]


def test_lr_1e20_from_the_start_saves_nothing(tmp_path):
    with pytest.raises(UserError, match=r"lr=1e\+20 must be a number in \[1e-12, 10\]"):
        make_trainer(lr=1e20)                               # past --lr's domain: TrainConfig refuses it
    tr = make_trainer(grad_clip=0.0, steps=10, eval_interval=2, out_dir=str(tmp_path))
    blow_up_at(tr, 0)                                       # so the schedule is forced to 1e20 here
    summary = tr.fit()
    assert summary["diverged"]["step"] <= 3 and summary["best_val_loss"] is None
    assert not (tmp_path / "best.npz").exists() and not (tmp_path / "last.npz").exists()


def test_a_nan_gradient_norm_is_divergence_and_names_it(tmp_path):
    tr = make_trainer(steps=10, out_dir=str(tmp_path))
    backward = tr.loss_fn.backward
    tr.loss_fn.backward = lambda d=1.0: backward(d) * (np.nan if tr.step == 2 else 1.0)
    summary = tr.fit()
    assert summary["diverged"] == {"step": 3, "reason": "the gradient norm became NaN or inf"}


def test_the_guard_is_checked_before_every_save(tmp_path):
    tr = make_trainer(steps=4)
    tr.guard.first = {"loss": np.asarray(1), "gradient norm": np.asarray(-1)}   # as a GPU step notes it
    with pytest.raises(Diverged, match="step 1"):
        tr.save(tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_under_fp16_overflowing_steps_are_skipped_and_counted_not_divergence(tmp_path):
    with precision.policy("fp16"):
        tr = make_trainer(steps=6, out_dir=str(tmp_path))
        backward = tr.loss_fn.backward
        tr.loss_fn.backward = lambda d=1.0: backward(d) * (np.inf if tr.step in (1, 3) else 1.0)
        summary = tr.fit()
    assert summary["diverged"] is None and summary["step"] == 6 and summary["skipped_steps"] == 2
    guard = DivergenceGuard(tr.scaler)
    tr.scaler.load_state_dict({"scale": 2.0 ** -30})        # every step overflowing: the scale collapses
    with pytest.raises(Diverged, match="every step overflows float16"):
        guard.check(7)


# ---- the schedule belongs to the run ------------------------------------------------------------------

def test_resume_keeps_the_schedule_unless_extended(tmp_path):
    first = make_trainer(steps=10, warmup=4)
    for _ in range(3):
        first.update()
    first.save(tmp_path / "mid.npz")
    with pytest.raises(UserError, match="steps=10, not steps=20.*extend=True"):
        make_trainer(steps=20, warmup=4).resume(tmp_path / "mid.npz")
    longer = make_trainer(steps=20, warmup=10)       # (the CLI derives warm-up from --steps)
    longer.resume(tmp_path / "mid.npz", extend=True)
    assert longer.config.steps == 20 and longer.config.warmup == 4 and longer.step == 3
    assert "cosine now ends at step 20 instead of 10" in longer.log.getvalue()
    same = make_trainer(steps=10, warmup=4)
    same.resume(tmp_path / "mid.npz")                       # the same plan: no note, no error
    assert same.lr_at(5) == first.lr_at(5) and same.log.getvalue() == ""


def test_resume_checks_the_saved_trainer_state(tmp_path):
    tr = make_trainer()
    tr.save(tmp_path / "a.npz")
    ckpt = load_checkpoint(tmp_path / "a.npz")
    ckpt.meta["extra"]["trainer"]["tokens_seen"] = "many"
    with pytest.raises(UserError, match="trainer.tokens_seen is 'many'"):
        make_trainer().resume(ckpt)


# ---- the classifier CLI -------------------------------------------------------------------------------

def test_the_classifier_cli_exits_2_on_divergence_keeping_best(tmp_path, small_digits, monkeypatch, capsys):
    real = Trainer.lr_at

    def lr_at(self, step):                                  # the second epoch (4 batches each): lr 1e20
        return 1e20 if step >= 4 else real(self, step)
    monkeypatch.setattr(Trainer, "lr_at", lr_at)
    out = tmp_path / "run"
    assert train.main([*FAST, "--epochs", "3", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "error: training diverged at step" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["diverged"]["step"] > 4 and summary["best_epoch"] == 1
    assert summary["epochs_completed"] == 1 and summary["test_accuracy"] is not None
    assert load_checkpoint(out / "best.npz").meta["extra"]["epoch"] == 1


def test_ctrl_c_while_best_npz_is_written_keeps_summary_and_files_agreeing(tmp_path, small_digits,
                                                                            monkeypatch):
    save = Run.save

    def interrupted_save(self, path, row):
        if self.epoch == 2:                                 # epoch 2's first write: best.npz if it is best
            raise KeyboardInterrupt                         # as if Ctrl-C came during the write
        save(self, path, row)
    monkeypatch.setattr(Run, "save", interrupted_save)
    monkeypatch.setattr(run_epochs, "plot_run", lambda run, out, model: [])
    out = tmp_path / "run"
    assert train.main([*FAST, "--epochs", "3", "--lr", "3e-3", "--out", str(out)]) == 130
    summary = json.loads((out / "summary.json").read_text())
    best = read_meta(out / "best.npz")[0]
    assert summary["best_epoch"] == best["extra"]["best_epoch"] == 1
    assert summary["epochs_completed"] == read_meta(out / "last.npz")[0]["extra"]["epoch"] == 1


def test_a_full_disk_during_training_is_one_error_and_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    tr = make_trainer(steps=6, eval_interval=2, out_dir=str(tmp_path))
    savez, saves = checkpoint.np.savez, []

    def fills_up(f, **arrays):
        saves.append(1)
        if len(saves) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        savez(f, **arrays)
    monkeypatch.setattr(checkpoint.np, "savez", fills_up)
    with pytest.raises(UserError, match=r"\.npz: could not save the checkpoint \(No space left on device\)"):
        tr.fit()
    assert load_checkpoint(tmp_path / "best.npz").step == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_writing_a_summary_on_a_full_disk_is_a_user_error(tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "s.json"))
    monkeypatch.setattr("glassformer.train.records.write_text", full)
    with pytest.raises(UserError, match="s.json: No space left on device; free some disk space"):
        write_json(tmp_path / "s.json", {})


# ---- the error boundary ------------------------------------------------------------------------------

def raising(exc):
    def main(*args):
        raise exc
    return main


@pytest.mark.parametrize("exc,code,words", [
    (UserError("bad flag"), 2, "error: bad flag"),
    (OSError(errno.ENOSPC, "No space left on device", "runs/x/best.npz"), 2,
     "error: runs/x/best.npz: No space left on device; free some disk space"),
    (PermissionError(errno.EACCES, "Permission denied", "/etc/x"), 2, "check the file's permissions"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "x.txt"), 2, "error: x.txt: No such"),
    (MemoryError(), 2, "error: out of memory"),
    (KeyboardInterrupt(), 130, ""),
    (BrokenPipeError(errno.EPIPE, "Broken pipe"), 0, ""),
    (ZeroDivisionError("a bug"), 1, "this is a bug in glassformer: please report it"),
])
def test_run_main_turns_each_failure_into_its_exit_code(exc, code, words):
    err = io.StringIO()
    assert run_main(raising(exc), stderr=err) == code
    text = err.getvalue()
    assert words in text
    assert ("Traceback" in text) == (code == 1)             # only a bug shows a traceback
    if code == 2:
        assert len(text.strip().splitlines()) == 1 and text.startswith("error: ")


def test_run_main_passes_exit_codes_and_systemexit_through():
    assert run_main(lambda argv: 7, ["x"]) == 7
    with pytest.raises(SystemExit):
        run_main(raising(SystemExit(0)))
    assert run_main(raising(SystemExit(3)), help_returns=True) == 3     # train and the REPL return --help's status
    err = io.StringIO()                                     # an mpiexec rank but 0: the mistake, unsaid
    assert run_main(raising(UserError("no")), says_mistakes=False, stderr=err) == 2 and err.getvalue() == ""
    assert run_main(raising(KeyboardInterrupt()), interrupted="stopped", stderr=err) == 130
    assert err.getvalue() == "stopped\n"


@pytest.mark.parametrize("module,args", [("glassformer.interp", ["/dev/zero"]),
                                         ("glassformer.experiments", ["no-such-experiment"])])
def test_python_m_entry_points_print_one_error_line(module, args, tmp_path):
    if args == ["/dev/zero"] and not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: ")


def test_resume_refuses_a_consistent_checkpoint_that_does_not_fit_the_task(tmp_path, small_digits, capsys):
    """A header and arrays that agree with each other (3 classes) but not with the digits task."""
    from unit.checkpoint.test_checkpoint import members_of, npy, with_meta, write_zip
    out = tmp_path / "run"
    assert train.main([*FAST, "--epochs", "1", "--out", str(out)]) == 0
    members = members_of(out / "last.npz")
    for name in ("param/head.W.npy", "param/head.b.npy", "optim/m.26.npy", "optim/v.26.npy",
                 "optim/m.25.npy", "optim/v.25.npy"):
        a = np.lib.format.read_array(io.BytesIO(members[name]))
        members[name] = npy(a[..., :3])                     # 3 classes instead of 10
    crafted = write_zip(tmp_path / "crafted.npz", members)
    crafted = with_meta(crafted, tmp_path / "three.npz", lambda m: m["config"].update(n_classes=3))
    load_checkpoint(crafted)                                # a sound checkpoint in itself
    capsys.readouterr()
    assert run_main(train.main, ["--resume", str(crafted), "--epochs", "2", "--no-interactive"]) == 2
    assert "does not fit the digits task" in capsys.readouterr().err   # not an IndexError mid-epoch
