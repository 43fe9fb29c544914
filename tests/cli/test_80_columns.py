"""What a newcomer sees fits 80 columns: each default command, run at COLUMNS=80, prints no line (split on
\\n and \\r, ANSI escapes removed) longer than 80, on stdout or stderr."""
import io
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TEXT = "".join(f"{who}: the {what} of the {where} is {how}, and so it {ends}.\n"       # ~30 KB of text
               for who in ("ROMEO", "JULIET", "NURSE", "FRIAR")
               for what in ("light", "sound", "heart", "name", "rose")
               for where in ("east", "window", "garden", "night")
               for how in ("sweet", "bright", "strange", "gone")
               for ends in ("stays", "goes"))


def wide_lines(*texts, width=80):
    """Every line of the texts, split on both \\n and \\r, longer than width once ANSI escapes are gone."""
    return [line for text in texts for line in re.split(r"[\r\n]", ANSI.sub("", text)) if len(line) > width]


def run(args, cwd=ROOT):
    """(exit code, stdout, stderr) of python ARGS at COLUMNS=80, one BLAS thread, this tree's package."""
    paths = [str(ROOT / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, COLUMNS="80", OPENBLAS_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(paths))
    done = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def fits(args, cwd=ROOT):
    """Run it; assert it succeeded and fits; its stdout."""
    rc, out, err = run(args, cwd)
    assert rc == 0, err
    assert not wide_lines(out, err), wide_lines(out, err)
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A working folder holding input.txt: runs land in its runs/, so paths are as short as a user's."""
    path = tmp_path_factory.mktemp("cols")
    (path / "input.txt").write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lm_run(folder):
    """A --task lm run of 3 steps on input.txt: (stdout, stderr, its run folder)."""
    rc, out, err = run([ROOT / "train_step_by_step.py", "--task", "lm", "--data", "input.txt",
                        "--tokenizer", "char", "--preset", "tiny", "--context", "32", "--steps", "3",
                        "--batch-size", "4", "--eval-batches", "2"], folder)
    assert rc == 0, err
    return out, err, next((folder / "runs").glob("*-lm"))


@pytest.mark.parametrize("flags", [["--epochs", "2", "--size", "small"], ["--task", "sentences", "--epochs", "3"]],
                         ids=["digits", "sentences"])
def test_a_training_run_fits_80_columns(folder, flags):
    out = fits([ROOT / "train_step_by_step.py", *flags], folder)
    assert "epoch 2/" in out and "files in runs/" in out     # it trained and said where its files are


def test_an_lm_run_fits_80_columns(lm_run):
    out, err, _ = lm_run
    assert not wide_lines(out, err), wide_lines(out, err)
    assert "char tokenizer of" in out and "talk to it:" in out


def test_evaluate_fits_80_columns(lm_run, folder):
    out = fits(["-m", "glassformer.evaluate", lm_run[2] / "best.npz", "--data", "input.txt",
                "--max-tokens", "400"], folder)
    assert "perplexity" in out


def test_the_repl_one_shot_fits_80_columns():
    assert "Max ( 5 3 9 ) -> 9" in fits(["test_model_manually.py", "--prompt", "max(5,3,9)"])


def test_experiments_listing_fits_80_columns():
    out = fits(["-m", "glassformer.experiments"])
    assert "induction:" in out and "n_symbols=64" in out


def test_gradcheck_table_fits_80_columns():
    out = fits(["-m", "glassformer.gradcheck", "--layer", "EncoderDecoder[pre-LN,shared,learned]"])
    assert "decoder.1.cross_attn.k_proj.b" in out and " 0 failed" in out


def test_interp_maps_fit_80_columns(tmp_path, monkeypatch):
    from glassformer import experiments as ex
    monkeypatch.setenv("GLASSFORMER_CACHE", str(tmp_path / "cache"))
    exp = ex.EXPERIMENTS["induction"]
    exp = replace(exp, steps=1, eval_every=1, plots=False,
                  task_params={"n_symbols": 12, "length": 8, "min_length": 8, "max_prefix": 1,
                               "n_train": 16, "n_test": 4},
                  model_params={**exp.model_params, "d_model": 8, "n_heads": 2})
    run_dir, _ = ex.run(exp, tmp_path / "runs", log=lambda s: None)
    out = fits(["-m", "glassformer.interp", run_dir])             # 18 tokens: over 100 columns unclipped
    assert "blocks.1.attn (average over heads)" in out and "induction" in out


COMMANDS = [["train_step_by_step.py"], ["test_model_manually.py"]] + [
    ["-m", f"glassformer.{m}"] for m in ("evaluate", "export", "gradcheck", "experiments", "interp",
                                          "lessons")]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[-1] for c in COMMANDS])
def test_help_fits_80_columns(command):
    assert fits([*command, "--help"]).startswith("usage:")


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "bench").glob("*.py")))
def test_bench_help_fits_80_columns(script):
    assert fits([ROOT / "bench" / script, "--help"]).startswith("usage:")


def test_the_live_line_never_reaches_the_edge(monkeypatch):
    """A \\r line as wide as the terminal wraps, and \\r then rewrites only its second half."""
    from glassformer.cli.common import Progress
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    progress = Progress(out, live=True, epochs=300, n_batches=313, first_epoch=0)
    progress.begin(300)
    progress.on_batch(312, 313, 0.5)
    progress.end_epoch({"epoch": 300, "train_loss": 0.5, "train_acc": 0.8, "val_loss": 0.4,
                        "val_acc": 0.9, "seconds": 1234.5}, True)
    text = out.getvalue()
    assert text.startswith("\repochs: ") and "\repoch 300/300" in text and not wide_lines(text, width=79)
