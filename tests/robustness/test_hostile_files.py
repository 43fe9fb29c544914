"""Hostile targets and run folders, generated: every writer (a checkpoint save, interp --html, export,
metrics.csv, summary.json) against every kind of thing already at its path (a regular file, nothing, a
FIFO, a character device, a socket, a folder, symlinks); two runs on one --out; a checkpoint of another
run resumed into a run folder; and state gone non-finite before a save. A regular file (or a symlink's
regular target) is replaced whole; anything else is refused with one error and left exactly as it was."""
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from glassformer.cli import export, interp
from glassformer.checkpoint import NonFinite, load_checkpoint, save_checkpoint
from glassformer.cli import train
from glassformer.errors import UserError
from glassformer.tasks import digits
from glassformer.train.records import read_metrics, write_json, write_metrics

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from unit.train.test_trainer import make_trainer  # noqa: E402

TEXT = "the quick brown fox jumps over the lazy dog. " * 60
LM = ["--task", "lm", "--tokenizer", "char", "--preset", "tiny", "--context", "8", "--batch-size", "2",
      "--eval-interval", "2", "--eval-batches", "1", "--no-interactive"]


def lm_run(folder, data, steps=4, seed=0):
    """A real tiny --task lm run folder (best.npz, last.npz, config.json, ...)."""
    assert train.main([*LM, "--data", str(data), "--steps", str(steps), "--seed", str(seed),
                       "--out", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two LM run folders of different runs, and the text they read."""
    root = tmp_path_factory.mktemp("runs")
    data = root / "text.txt"
    data.write_text(TEXT, encoding="utf-8")
    return {"data": data, "lm": lm_run(root / "lm", data), "lm2": lm_run(root / "lm2", data, seed=1)}


# ---- targets x writers ----------------------------------------------------------------------------

def make_target(kind, path):
    """Put a `kind` thing at path; returns a closer (a socket must stay open) or None."""
    if kind == "regular":
        path.write_text("old\n")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "chardev":
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root (the symlink_to_devnull case covers devices)")
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))       # /dev/null's numbers
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        return s
    elif kind == "folder":
        path.mkdir()
        (path / "inside.txt").write_text("kept\n")
    elif kind == "symlink_to_regular":
        (path.parent / "real.txt").write_text("old\n")
        path.symlink_to(path.parent / "real.txt")
    elif kind == "symlink_to_devnull":
        path.symlink_to("/dev/null")
    elif kind == "broken_symlink":
        path.symlink_to(path.parent / "nowhere")
    return None


def snapshot(path):
    """What is at path, as (file type, link target, contents of a regular file or folder listing)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    kind = stat.S_IFMT(st.st_mode)
    link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
    body = path.read_bytes() if stat.S_ISREG(st.st_mode) else \
        sorted(p.name for p in path.iterdir()) if stat.S_ISDIR(st.st_mode) else None
    return kind, link, body, st.st_rdev


def write_checkpoint(runs, target):
    save_checkpoint(target, load_checkpoint(runs["lm"] / "best.npz", optimizer=False).model)
    load_checkpoint(target, optimizer=False)


def write_html(runs, target):
    assert interp.main([str(runs["lm"]), "--text", "the fox", "--html", str(target)]) == 0
    assert "<html" in Path(target).read_text().lower()


def write_export(runs, target):
    assert export.main([str(runs["lm"] / "best.npz"), str(target)]) == 0
    load_checkpoint(target)


def write_metrics_csv(runs, target):
    write_metrics(target, ["step", "loss"], [{"step": 1, "loss": 0.5}])
    assert read_metrics(target) == [{"step": 1, "loss": 0.5}]


def write_summary(runs, target):
    write_json(target, {"step": 1})
    assert json.loads(Path(target).read_text()) == {"step": 1}


WRITERS = {"checkpoint": write_checkpoint, "interp_html": write_html, "export": write_export,
           "metrics": write_metrics_csv, "summary": write_summary}
KINDS = ("regular", "missing", "fifo", "chardev", "socket", "folder", "symlink_to_regular",
         "symlink_to_devnull", "broken_symlink")


def accepted(writer, kind):
    """Which targets a writer replaces: a file writer a regular file (or a link to one), export a folder."""
    if writer == "export":
        return kind in ("missing", "folder")
    return kind in ("regular", "missing", "symlink_to_regular")


def run_writer(writer, runs, target, capsys):
    """The writer's outcome: "ok", or the one error line (a library UserError or a CLI's exit 2)."""
    try:
        WRITERS[writer](runs, target)
        return "ok"
    except UserError as e:
        return f"error: {e}"
    except AssertionError:
        err = capsys.readouterr().err
        if err.startswith("error: ") and err.count("\n") == 1:
            return err.strip()
        raise


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_writer_replaces_only_what_it_should(writer, kind, runs, tmp_path, capsys):
    target = tmp_path / "target"
    closer = make_target(kind, target)
    with closer or contextlib.nullcontext():
        before = snapshot(target)
        outcome = run_writer(writer, runs, target, capsys)
        if accepted(writer, kind):
            assert outcome == "ok", outcome
            if kind == "symlink_to_regular":                # the link stays, its file is new
                assert target.is_symlink() and (tmp_path / "real.txt").read_bytes() != b"old\n"
            if kind == "folder" and writer == "export":     # the folder's other files are kept
                assert (target / "inside.txt").read_text() == "kept\n"
        else:
            assert outcome.startswith("error: ") and "\n" not in outcome, outcome
            assert str(target) in outcome, outcome
            assert snapshot(target) == before, f"{writer} changed the {kind} at {target}"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".old"))]


def test_an_atomic_write_through_a_link_never_touches_a_device(tmp_path):
    from glassformer.files import write_text
    for i, device in enumerate(("/dev/null", "/dev/full", "/dev/stdout")):
        link = tmp_path / f"link{i}"
        link.symlink_to(device)
        with pytest.raises(UserError, match="only a regular file is replaced"):
            write_text(link, "x")
        assert os.readlink(link) == device
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


# ---- two runs on one --out ----------------------------------------------------------------------

def test_a_second_run_on_the_same_out_is_refused_naming_the_first(runs, tmp_path, capsys):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OPENBLAS_NUM_THREADS="1")
    first = subprocess.Popen([sys.executable, str(ROOT / "train_step_by_step.py"), *LM, "--data",
                              str(runs["data"]), "--steps", "100000", "--out", str(out)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "config.json").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (out / "config.json").exists(), first.stderr.read() if first.poll() is not None else ""
        code = train.main([*LM, "--data", str(runs["data"]), "--steps", "4", "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert f"process {first.pid}" in err and "another run" in err
        first.send_signal(signal.SIGTERM)                   # handled as Ctrl-C: save, stop, 130
        assert first.wait(120) == 130, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert load_checkpoint(out / "last.npz").step >= 1
    assert not list(out.glob(".*.tmp"))


# ---- a checkpoint of another run ------------------------------------------------------------------

def digits_run(folder, monkeypatch):
    monkeypatch.setitem(digits.SIZES, "small", 300)
    assert train.main(["--task", "digits", "--size", "small", "--batch-size", "64", "--epochs", "1",
                       "--no-interactive", "--out", str(folder)]) == 0
    return folder


def qa_run(folder):
    pairs = "".join(json.dumps({"question": f"colour of item {c}?", "answer": "red"}) + "\n" for c in "abcdefgh")
    (folder.parent / "facts.jsonl").write_text(pairs, encoding="utf-8")
    assert train.main(["--task", "qa", "--data", str(folder.parent / "facts.jsonl"), "--context", "48",
                       "--batch-size", "2", "--eval-interval", "2", "--eval-batches", "1", "--steps", "2",
                       "--eval-pairs", "2", "--no-interactive", "--out", str(folder)]) == 0
    return folder


def files_of(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("foreign", ["digits", "qa", "lm2", "lm2_best"])
def test_a_checkpoint_of_another_run_is_not_resumed_into_a_run_folder(foreign, runs, tmp_path,
                                                                    monkeypatch, capsys):
    folder = tmp_path / "lm"
    shutil.copytree(runs["lm"], folder)
    source = digits_run(tmp_path / "digits", monkeypatch) / "last.npz" if foreign == "digits" else \
        qa_run(tmp_path / "qa") / "last.npz" if foreign == "qa" else \
        runs["lm2"] / ("best.npz" if foreign == "lm2_best" else "last.npz")
    shutil.copyfile(source, folder / "last.npz")
    before = files_of(folder)
    capsys.readouterr()
    more = ["--epochs", "2"] if foreign == "digits" else ["--steps", "6"]
    code = train.main(["--resume", str(folder), *more, "--no-interactive"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "another run" in err, err
    assert files_of(folder) == before                       # best.npz above all: untouched


def test_a_runs_own_checkpoint_resumes_and_so_does_a_folder_from_before_run_ids(runs, tmp_path):
    own = tmp_path / "own"
    shutil.copytree(runs["lm"], own)
    assert train.main(["--resume", str(own), "--steps", "6", "--no-interactive"]) == 0
    assert load_checkpoint(own / "last.npz").step == 6
    old = tmp_path / "old"
    shutil.copytree(runs["lm"], old)
    for name in ("best.npz", "last.npz"):
        strip_run_id(old / name)
    config = json.loads((old / "config.json").read_text())
    config.pop("_run_id")
    (old / "config.json").write_text(json.dumps(config))
    assert train.main(["--resume", str(old), "--steps", "6", "--no-interactive"]) == 0
    assert load_checkpoint(old / "last.npz").step == 6


def strip_run_id(path):
    """Rewrite a checkpoint as one written before run ids existed."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    assert meta["extra"].pop("run_id")
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


# ---- state gone non-finite ----------------------------------------------------------------------

@pytest.mark.parametrize("lr", [1e2, 1e3, 1e4, 1e6, 1e10, 1e20, 1e30])
def test_whatever_the_learning_rate_every_file_written_loads(lr, tmp_path):
    with pytest.raises(UserError, match="lr="):             # above its domain: refused where it enters
        make_trainer(lr=lr)
    tr = make_trainer(lr=1.0, grad_clip=0.0, weight_decay=0.0, steps=12, eval_interval=4,
                      checkpoint_interval=4, out_dir=str(tmp_path))
    schedule = tr.lr_at
    tr.lr_at = lambda step: schedule(step) * lr             # the same schedule, lr times higher
    summary = tr.fit()
    for f in tmp_path.glob("*.npz"):
        load_checkpoint(f)                                  # a UserError here: a file that cannot resume
    if summary["diverged"] is None:
        assert load_checkpoint(tmp_path / "last.npz").step == 12


@pytest.mark.parametrize("what", ["m", "v"])
def test_moments_that_overflow_with_a_finite_loss_stop_the_run_as_diverged(what, tmp_path):
    tr = make_trainer(steps=12, eval_interval=4, checkpoint_interval=4, out_dir=str(tmp_path))
    step, log = tr.optimizer.step, io.StringIO()
    tr.log = log

    def overflowing():                                      # AdamW's squares overflow from step 6 on
        step()
        if tr.step >= 5:
            for name, a in tr.optimizer.state_dict()["arrays"].items():
                if name.startswith(what + "."):
                    a[...] = np.inf
    tr.optimizer.step = overflowing
    summary = tr.fit()
    assert summary["stop_reason"] == "diverged" and summary["diverged"]["step"] >= 6
    assert "--grad-clip" in log.getvalue() and "NaN or inf" in log.getvalue()
    assert load_checkpoint(tmp_path / "last.npz").step == 4     # the last finite state, kept
    load_checkpoint(tmp_path / "best.npz")


@pytest.mark.parametrize("poison", ["param", "moment", "lr", "loss_scale"])
def test_save_checkpoint_itself_refuses_non_finite_state_and_keeps_the_old_file(poison, tmp_path):
    tr = make_trainer(steps=2, out_dir=str(tmp_path))
    tr.fit()
    path = tmp_path / "last.npz"
    before = path.read_bytes()
    model, opt = tr.model, tr.optimizer
    extra = {}
    if poison == "param":
        model.get_parameters()[0][0][0] = np.nan
    elif poison == "moment":
        next(iter(opt.state_dict()["arrays"].values()))[...] = -np.inf
    elif poison == "lr":
        opt.lr = float("inf")
    else:
        extra = {"trainer": {"loss_scaler": {"scale": float("inf")}}}
    with pytest.raises(NonFinite, match="not saved.*--lr"):
        save_checkpoint(path, model, optimizer=opt, extra=extra)
    assert path.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


# ---- folder replacement without renameat2, and its recovery -------------------------------------

def dead_pid():
    """A process id that no process has now."""
    pid = 2 ** 22 - 1
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        pid -= 1


def test_the_two_rename_fallback_replaces_a_folder_whole(tmp_path, monkeypatch):
    from glassformer import files
    monkeypatch.setattr(files, "exchange", lambda a, b: False)     # as where renameat2 is missing
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old")
    (out / "mine.txt").write_text("kept")
    with files.folder_swap(out, drop=("a.txt",)) as new:
        (new / "a.txt").write_text("new")
        assert (out / "a.txt").read_text() == "old"         # nothing changes until the end
    assert (out / "a.txt").read_text() == "new" and (out / "mine.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("folder_there", [False, True])
def test_a_fallback_stopped_between_its_renames_is_recovered_at_the_next_start(folder_there, tmp_path):
    from glassformer import files
    out = tmp_path / "out"
    old = tmp_path / f".out.{dead_pid()}.0badcafe.old"      # the old version, renamed away
    old.mkdir()
    (old / "a.txt").write_text("old")
    if folder_there:
        out.mkdir()
        (out / "a.txt").write_text("new")
    files.remove_stale_temps(tmp_path)
    assert (out / "a.txt").read_text() == ("new" if folder_there else "old")
    assert not old.exists()


def test_stale_temp_files_of_dead_processes_go_at_the_start_of_a_run(tmp_path):
    from glassformer import files
    dead = tmp_path / f".best.npz.{dead_pid()}.00ff.tmp"
    alive = tmp_path / f".best.npz.{os.getppid()}.00ff.tmp"
    for p in (dead, alive):
        p.write_bytes(b"x" * 100)
    with files.run_lock(tmp_path):
        assert not dead.exists() and alive.exists()         # a live writer's temp file stays
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())


def test_the_cli_stops_a_run_whose_moments_overflow_with_one_error_and_loadable_files(runs, tmp_path,
                                                                                     monkeypatch, capsys):
    from glassformer.optim.optimizers import Adam
    real = Adam.step

    def overflowing(self, *args, **kwargs):                 # what --lr 100 --grad-clip 0 does to v
        out = real(self, *args, **kwargs)
        if self.t >= 3:
            for v in self.v:
                v[...] = np.inf
        return out
    monkeypatch.setattr(Adam, "step", overflowing)
    out = tmp_path / "run"
    code = train.main([*LM, "--data", str(runs["data"]), "--steps", "6", "--grad-clip", "0",
                       "--weight-decay", "0", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error: ") == 1 and "--grad-clip" in err, err
    assert "diverged" in err
    for f in out.glob("*.npz"):
        load_checkpoint(f)                                  # both resume and the REPL can read them
    assert load_checkpoint(out / "last.npz").step == 2      # the last finite state
