"""train_step_by_step.py as a nanoGPT / llm.c user drives it: config files, every knob, progress, splits, checks.

CLI behaviour runs the real script in a subprocess (tiny data made here, a few steps each).
"""
import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glassformer import evaluate
from glassformer.checkpoint import load_checkpoint, read_meta
from glassformer.cli import common, config, handlers, lm, repl, train
from glassformer.runner import epochs as run_epochs
from glassformer.runner import qa
from glassformer.runner.epochs import EpochBatches
from glassformer.data import count_words, open_source, split_files
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.models import build_model, lm_config
from glassformer.tasks import digits
from glassformer.tasks.qa import CHAT_TEMPLATE
from glassformer.tokenizers import tokenizer_from_dict
from glassformer.train import Trainer
from datapaths import DATA
from unit.tasks.test_qa import facts, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "train_step_by_step.py"
WIKITEXT2 = DATA / "wikitext-2"
WORDS = "the quick brown fox jumps over the lazy dog while a cat sat on the mat".split()
TINY = ["--context", "8", "--batch-size", "2", "--eval-interval", "2", "--eval-batches", "2",
        "--no-interactive"]


def lines_of_text(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, 8)) for _ in range(n)]


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("\n".join(lines_of_text(60)) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def wikitext(tmp_path):
    """A WikiText-shaped folder: train/valid/test.txt, ` = Title = ` headings, ` token token \\n` lines."""
    folder = tmp_path / "wikitext"
    folder.mkdir()
    for i, (name, n) in enumerate((("train", 60), ("valid", 12), ("test", 10))):
        body = "".join(f" {line} \n" for line in lines_of_text(n, seed=i))
        (folder / f"{name}.txt").write_text(f" \n = {name.title()} article = \n \n{body}", encoding="utf-8")
    return folder


def script(*args, cwd, columns=80, **env):
    """The real train_step_by_step.py in a subprocess: (exit code, stdout, stderr)."""
    environ = dict(os.environ, COLUMNS=str(columns), OPENBLAS_NUM_THREADS="1", **env)
    done = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def n_chars(path):
    """Characters of the documents the loader reads from path: the char tokenizer's token count."""
    return sum(len(doc) for doc in open_source(path))


def summary(out):
    return json.loads((Path(out) / "summary.json").read_text())


# ---- 1. config files ------------------------------------------------------------------------

def test_config_file_sets_flags_the_command_line_wins_and_config_json_reruns_it(tmp_path, text):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({
        "_comment": "keys starting with _ are comments", "task": "lm", "data": "../text.txt",
        "context": 8, "batch-size": 2, "steps": 5, "eval_interval": 2, "eval_batches": 2,
        "weight_decay": 0.05, "no_interactive": True}))
    code, out, err = script("--config", "configs/run.json", "--steps", "3", "--out", "a", cwd=tmp_path)
    assert code == 0, err
    s = summary(tmp_path / "a")
    assert s["step"] == 3                                   # the command line beat the file's 5
    assert s["config"]["training"]["weight_decay"] == 0.05  # the file's value reached the trainer
    recorded = json.loads((tmp_path / "a" / "config.json").read_text())
    assert recorded["data"] == str(text) and recorded["steps"] == 3 and recorded["task"] == "lm"
    assert recorded["min_lr"] == pytest.approx(1e-4) and recorded["device"] == "cpu"
    assert "config.json" in s["files"]
    code, out, err = script("--config", tmp_path / "a" / "config.json", "--out", tmp_path / "b", "--no-interactive",
                            cwd=tmp_path / "configs")       # any directory: its paths are absolute
    assert code == 0, err
    a, b = (load_checkpoint(tmp_path / d / "last.npz").model.state_dict() for d in "ab")
    assert all(np.array_equal(a[k], b[k]) for k in a)       # the same run again


def test_toml_config_and_one_clear_error_for_unknown_keys(tmp_path, text):
    (tmp_path / "run.toml").write_text('task = "lm"\ndata = "text.txt"\ncontext = 8\nbatch_size = 2\n'
                                       'steps = 2\neval_interval = 0\neval_batches = 1\n')
    if sys.version_info >= (3, 11):
        code, out, err = script("--config", "run.toml", "--out", "t", "--no-interactive", cwd=tmp_path)
        assert code == 0, err
        assert summary(tmp_path / "t")["step"] == 2
    (tmp_path / "bad.json").write_text(json.dumps({"task": "lm", "learning_rate": 0.1, "stpes": 3}))
    code, out, err = script("--config", "bad.json", cwd=tmp_path)
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "unknown keys learning_rate, stpes (did you mean steps?)" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("content,message", [
    ('{"steps": 0}', "bad.json: argument --steps: 0 is not a whole number from 1 to 1,000,000,000"),
    ('{"no_interactive": "yes"}', "is a switch"), ('{"lr": [1, 2]}', "one number or string"),
    ('{"steps": 3,}', "not valid JSON"), ('[1, 2]', "one object")])
def test_config_mistakes_are_one_line_errors(tmp_path, capsys, content, message):
    (tmp_path / "bad.json").write_text(content)
    assert train.main(["--config", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --config ") and message in err, err


def test_toml_without_tomllib_says_which_python(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tomllib", None)      # as on Python 3.10: import tomllib fails
    (tmp_path / "run.toml").write_text('steps = 3\n')
    with pytest.raises(Exception, match="need Python 3.11 or later"):
        config.read_config(tmp_path / "run.toml")


def test_shipped_configs_parse_and_quote_the_recipes(monkeypatch):
    from glassformer.data import fetch
    parser = train.build_parser()
    names = sorted(p.name for p in (ROOT / "configs").glob("*.json"))
    assert names == ["digits_medium.json", "shakespeare_char.json", "wikipedia_large.json",
                     "wikipedia_medium.json", "wikipedia_qa.json", "wikipedia_small.json", "wikitext2_bpe.json"]
    for name in names:
        args = parser.parse_args(config.config_words(ROOT / "configs" / name, parser))
        if args.task == "lm":                               # what a user's clone has after one fetch:
            # a data set of the data cache, or a file shipped in the repository (never ../shared)
            assert str(args.data) in fetch.DATA_TARGETS or ROOT in args.data.resolve().parents, name
            cache = Path(os.environ.get("GLASSFORMER_DATA") or ROOT.parent / "shared" / "data")
            if cache.is_dir():                              # the cache, laid out as shared/data: it resolves
                monkeypatch.setenv("GLASSFORMER_DATA", str(cache))
                assert Path(fetch.resolve_dataset(args.data)).exists(), name
        if name.startswith("wikipedia_"):
            assert args.preset == name[len("wikipedia_"):-len(".json")] and args.tokenizer == "gpt2"
    sc = parser.parse_args(config.config_words(ROOT / "configs" / "shakespeare_char.json", parser))
    recipe = dict(preset="tiny", context=64, batch_size=12, steps=2000, lr=1e-3, min_lr=1e-4, warmup=100,
                  dropout=0.0, weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0, eval_interval=0,
                  eval_batches=200, seed=1337, tokenizer="char")
    assert {k: getattr(sc, k) for k in recipe} == recipe    # bench/shakespeare_char.py's settings
    assert str(sc.data) == "tinyshakespeare" and fetch.DATA_TARGETS["tinyshakespeare"] == "input.txt"


# ---- 2. every knob as a flag, validated -------------------------------------------------------

def test_every_knob_reaches_the_trainer(tmp_path, text, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "k"
    argv = ["--task", "lm", "--data", str(text), *TINY, "--steps", "3", "--weight-decay", "0.02",
            "--beta1", "0.8", "--beta2", "0.95", "--grad-clip", "0.5", "--min-lr", "1e-5", "--grad-accum", "2",
            "--log-interval", "1", "--warmup", "1", "--out", str(out)]
    assert train.main(argv) == 0
    c = load_checkpoint(out / "last.npz")
    t = c.meta["extra"]["train_config"]
    assert (t["weight_decay"], t["beta1"], t["beta2"], t["grad_clip"], t["min_lr"], t["grad_accum"],
            t["eval_batches"], t["log_interval"], t["warmup"]) == (0.02, 0.8, 0.95, 0.5, 1e-5, 2, 2, 1, 1)
    assert summary(out)["tokens"] == 3 * 2 * 2 * 8          # steps x accumulation x batch x context


@pytest.mark.parametrize("flags,message", [
    (["--weight-decay", "-1"], "--weight-decay: -1 is not a number in [0, 10]"),
    (["--beta1", "1"], "--beta1: 1 is not a number in [0, 1)"),
    (["--beta2", "-0.1"], "--beta2"), (["--grad-clip", "-1"], "--grad-clip"),
    (["--min-lr", "nan"], "--min-lr"), (["--grad-accum", "0"], "--grad-accum: 0 is not a whole number from 1 to "
                                                               "65,536"),
    (["--eval-batches", "0"], "--eval-batches"), (["--max-time", "0"], "--max-time: 0 is not a number in [0.001, "
                                                                       "10,000,000]"),
    (["--sample-every", "-1"], "--sample-every"), (["--log-interval", "0"], "--log-interval"),
    (["--context", "0"], "--context"), (["--dropout", "1"], "--dropout"), (["--bpe-vocab", "100"], "--bpe-vocab"),
    (["--lr", "0.01", "--min-lr", "0.1"], "--min-lr 0.1 is above --lr 0.01")])
def test_bad_knob_values_are_one_line_errors(text, capsys, flags, message):
    assert train.main(["--task", "lm", "--data", str(text), "--no-interactive", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err


def test_help_lists_the_presets_and_the_flop_formula(tmp_path):
    code, out, err = script("--help", cwd=tmp_path, columns=100)
    assert code == 0
    for flag in ("--config", "--weight-decay", "--beta1", "--beta2", "--grad-clip", "--min-lr", "--grad-accum",
                 "--eval-batches", "--max-time", "--sample-every", "--val-data", "--test-data"):
        assert flag in out, flag
    assert "6N + 12·L·d·T" in out and "params @ V=50,257" in out and "params @ V=65" in out
    large = next(line for line in out.splitlines() if line.strip().startswith("large"))
    assert large.split()[1:5] == ["768", "12", "12", "1024"] and "124.44 M" in large   # GPT-2 small


# ---- 3. progress: ms/iter, tokens/s, FLOP/s beside the machine ------------------------------

def test_max_time_stops_cleanly_and_the_progress_line_fits(tmp_path, text):
    code, out, err = script("--task", "lm", "--data", text, *TINY, "--steps", "100000", "--max-time", "1.5",
                            "--log-interval", "5", "--out", "m", cwd=tmp_path)
    assert code == 0, err
    s = summary(tmp_path / "m")
    assert s["stop_reason"] == "max_time" and not s["interrupted"] and 0 < s["step"] < 100000
    assert load_checkpoint(tmp_path / "m" / "last.npz").step == s["step"]
    assert "--max-time" in out and "continue with: python train_step_by_step.py --resume" in out
    progress = [line for line in out.splitlines() if line.startswith("step ") and "ms/it" in line]
    assert progress and all(len(line) <= 80 for line in progress)
    assert all("tok/s" in line and "FLOP/s" in line and "%" in line and "ETA" in line for line in progress)
    assert "6N + 12·L·d·T" in out and "float32 GEMM" in out
    assert s["ms_per_iter"] > 0 and s["train_tokens_per_s"] > 0 and 0 < s["flops_ratio"] < 10
    assert s["model_flops_per_s"] == pytest.approx(s["flops_ratio"] * s["peak_flops_per_s"], rel=1e-3)
    code, out, err = script("--resume", tmp_path / "m", "--max-time", "0.5", cwd=tmp_path)
    assert code == 0, err                                   # a folder resumes from its last.npz
    assert summary(tmp_path / "m")["step"] > s["step"]


def test_a_wide_terminal_gets_the_long_progress_line(tmp_path, text):
    code, out, err = script("--task", "lm", "--data", text, *TINY, "--steps", "2", "--out", "w",
                            cwd=tmp_path, columns=200)
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("step 2/2"))
    assert " | lr " in line and " ms/it | " in line and "% of " in line and 80 < len(line) <= 200


def test_matmul_rate_is_quick_and_plausible():
    import time
    start = time.perf_counter()
    rate = common.matmul_rate()
    assert time.perf_counter() - start < 0.5 and 1e8 < rate < 1e14


def test_sampling_during_training_prints_text_and_leaves_the_run_unchanged(tmp_path, text, capsys,
                                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["--task", "lm", "--data", str(text), *TINY, "--steps", "4"]
    assert train.main(base + ["--sample-every", "2", "--out", str(tmp_path / "s")]) == 0
    printed = capsys.readouterr().out
    assert "--- sample at step 2 ---" in printed and "--- sample at step 4 ---" in printed
    assert train.main(base + ["--out", str(tmp_path / "p")]) == 0
    a, b = (load_checkpoint(tmp_path / d / "last.npz").model.state_dict() for d in "sp")
    assert all(np.array_equal(a[k], b[k]) for k in a)


# ---- 4. data splits and test perplexity -------------------------------------------------------

def test_a_wikitext_folder_uses_its_own_splits_and_reports_test_perplexities(tmp_path, wikitext):
    code, out, err = script("--task", "lm", "--data", wikitext, *TINY, "--steps", "2", "--out", "wt",
                            cwd=tmp_path)
    assert code == 0, err
    s = summary(tmp_path / "wt")
    chars = {n: n_chars(wikitext / f"{n}.txt") for n in ("train", "valid", "test")}
    assert s["config"]["settings"]["val_data"] == str(wikitext / "valid.txt")
    task = load_checkpoint(tmp_path / "wt" / "last.npz").task
    assert (task["n_train_tokens"], task["n_val_tokens"]) == (chars["train"], chars["valid"])  # no cut
    assert s["test_tokens"] == chars["test"] - 1 and s["test_words"] == count_words(wikitext / "test.txt")
    assert s["test_ppl"] == pytest.approx(math.exp(s["test_loss"]))
    assert s["test_word_ppl"] == pytest.approx(math.exp(s["test_loss"] * s["test_tokens"] / s["test_words"]))
    assert "word-level perplexity" in out and "test loss" in out


def test_val_data_replaces_the_last_tenth(tmp_path, text, wikitext, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    valid = wikitext / "valid.txt"
    out = tmp_path / "v"
    assert train.main(["--task", "lm", "--data", str(text), "--val-data", str(valid), *TINY, "--steps", "1",
                       "--out", str(out)]) == 0
    task = load_checkpoint(out / "last.npz").task
    assert task["n_train_tokens"] == n_chars(text) and task["n_val_tokens"] == n_chars(valid)
    assert "test_loss" not in summary(out)                  # no test text: no test figures


def test_score_tokens_counts_every_next_token_once():
    model = build_model(lm_config("tiny", 11, d_model=16, n_heads=2, n_layers=1, max_len=5),
                        np.random.default_rng(0))
    tokens = np.random.default_rng(1).integers(0, 11, 23)   # 22 targets: 4 windows of 5 and a tail of 2
    total, n = evaluate.score_tokens(model, tokens, 5)
    model.eval()
    want, loss = 0.0, CrossEntropyLoss()
    for i in range(1, len(tokens)):                         # each target from up to 5 tokens before it
        start = 17 if i > 20 else (i - 1) // 5 * 5          # the tail window is tokens[17:22]
        logits = model.forward(tokens[None, start:i])
        want += float(loss.forward(logits[:, -1:], tokens[None, i:i + 1]))
    assert n == 22 and total == pytest.approx(want, rel=1e-5)


def test_wikitext2_word_counts_match_the_published_ones():
    if not WIKITEXT2.is_dir():
        pytest.skip("shared/data/wikitext-2 is not here")
    splits = split_files(WIKITEXT2)
    assert [p.name for p in splits.values()] == ["train.txt", "valid.txt", "test.txt"]
    assert count_words(splits["test"]) == 245569 and count_words(splits["valid"]) == 217646


# ---- 5. flags of other tasks, resuming, Ctrl-C in the walk ----------------------------------

def test_a_flag_the_task_does_not_read_is_an_error(tmp_path, text):
    code, out, err = script("--task", "digits", "--data", text, "--steps", "3", cwd=tmp_path)
    assert code == 2 and not (tmp_path / "runs").exists()
    assert err.strip() == "error: --data, --steps are for lm, not digits: drop them or pass --task lm"


@pytest.mark.parametrize("flags,message", [
    (["--task", "sentences", "--size", "small"], "--size is for digits, not sentences"),
    (["--task", "lm", "--data", "t.txt", "--n-args", "3"], "--n-args is for digits, not lm"),
    (["--task", "lm", "--data", "t.txt", "--epochs", "3"], "--epochs is for digits and sentences, not lm"),
    (["--max-time", "5"], "--max-time is for lm, not digits")])
def test_task_flag_errors_name_flag_and_task(capsys, flags, message):
    assert train.main(flags + ["--no-interactive"]) == 2
    assert message in capsys.readouterr().err


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_resuming_digits_skips_the_walk_and_ctrl_c_in_the_walk_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setitem(digits.SIZES, "small", 300)
    monkeypatch.setattr(run_epochs, "plot_run", lambda run, out, model: [])
    walks = []
    monkeypatch.setattr(train, "walk", lambda *a, **k: walks.append(1))
    monkeypatch.setattr("sys.stdin", FakeTTY(""))
    out = tmp_path / "d"
    assert train.main(["--size", "small", "--epochs", "1", "--batch-size", "256", "--out", str(out)]) == 0
    assert walks == [1]
    assert json.loads((out / "config.json").read_text())["size"] == "small"
    assert train.main(["--resume", str(out / "last.npz"), "--epochs", "2"]) == 0
    assert walks == [1]                                     # the resumed run did not walk again

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train, "walk", ctrl_c)
    assert train.main(["--size", "small", "--epochs", "1", "--out", str(tmp_path / "never")]) == 130
    assert not (tmp_path / "never").exists()


def test_ctrl_c_in_the_lm_walk_leaves_no_folder(tmp_path, text, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(lm, "walk_first_batch", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    monkeypatch.setattr("sys.stdin", FakeTTY(""))
    argv = ["--task", "lm", "--data", str(text), "--context", "8", "--steps", "2", "--out", str(tmp_path / "x")]
    assert train.main(argv) == 130 and not (tmp_path / "x").exists()


def test_resume_reads_the_run_and_refuses_changes(tmp_path, text, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r"
    assert train.main(["--task", "lm", "--data", str(text), *TINY, "--steps", "2", "--weight-decay", "0.01",
                       "--out", str(out)]) == 0
    capsys.readouterr()
    last = str(out / "last.npz")
    for flags, name in ((["--weight-decay", "0.1"], "--weight-decay 0.1 differs from the resumed run's 0.01"),
                        (["--grad-accum", "2"], "--grad-accum 2 differs"), (["--beta2", "0.9"], "--beta2")):
        assert train.main(["--resume", last, "--steps", "4", *flags]) == 2
        assert name in capsys.readouterr().err
    assert train.main(["--resume", last, "--steps", "4", "--weight-decay", "0.01", "--eval-interval", "1",
                       "--sample-every", "3"]) == 0           # the same value, or bookkeeping: fine
    assert load_checkpoint(last).meta["extra"]["train_config"]["weight_decay"] == 0.01
    assert json.loads((out / "config.json").read_text())["steps"] == 4


def test_no_bias_builds_nanogpts_bias_free_model_and_resume_and_config_json_keep_it(tmp_path, text, capsys,
                                                                                     monkeypatch):
    """--no-bias: no Linear or LayerNorm biases (nanoGPT's bias=False); left out on --resume, it is kept."""
    monkeypatch.chdir(tmp_path)
    out, last = tmp_path / "nb", str(tmp_path / "nb" / "last.npz")
    assert train.main(["--task", "lm", "--data", str(text), *TINY, "--steps", "2", "--no-bias",
                       "--out", str(out)]) == 0
    assert "tiny preset without biases" in capsys.readouterr().out
    c = load_checkpoint(last)
    weights = c.model.state_dict()
    assert c.config.bias is False and not [k for k in weights if k.endswith((".b", ".beta"))], list(weights)
    assert c.model.n_parameters() == lm.lm_parameters(c.config) < lm.lm_parameters(
        lm_config("tiny", c.config.vocab_size, max_len=8))
    assert train.main(["--resume", last, "--steps", "3"]) == 0          # not "--no-bias differs"
    assert train.main(["--resume", last, "--steps", "4", "--no-bias"]) == 0
    assert load_checkpoint(last).step == 4 and load_checkpoint(last).config.bias is False
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["no_bias"] is True
    code, _, err = script("--config", out / "config.json", "--steps", "2", "--out", tmp_path / "again",
                          "--no-interactive", cwd=tmp_path)
    assert code == 0, err
    assert load_checkpoint(tmp_path / "again" / "last.npz").config.bias is False
    with_bias = tmp_path / "b"
    assert train.main(["--task", "lm", "--data", str(text), *TINY, "--steps", "2", "--out", str(with_bias)]) == 0
    assert load_checkpoint(with_bias / "last.npz").config.bias is True
    assert json.loads((with_bias / "config.json").read_text())["no_bias"] is False
    capsys.readouterr()
    assert train.main(["--resume", str(with_bias / "last.npz"), "--steps", "4", "--no-bias"]) == 2
    assert "--no-bias was not given to the resumed run: drop --no-bias" in capsys.readouterr().err


def test_a_named_pipe_as_data_is_refused_not_waited_on(tmp_path):
    """--data a FIFO: training reads its data more than once, so it is one clear error, never a hang."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    rc, out, err = script("--task", "lm", "--data", fifo, "--steps", "2", *TINY, "--out",
                          tmp_path / "run", cwd=tmp_path)
    assert rc == 2 and "named pipe" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_config_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    """--config on a FIFO waited forever and on /dev/zero grew without bound: now one clear error."""
    path = tmp_path / "run.json"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    rc, out, err = script("--config", path, cwd=tmp_path)
    assert rc == 2 and "not a regular file" in err and "Traceback" not in err


def test_precision_fp16_trains_on_the_cpu_and_reports_its_loss_scale(tmp_path, text):
    """--precision fp16 (NumPy float16 matmuls here): the progress line and summary.json carry the scale."""
    rc, out, err = script("--task", "lm", "--data", text, "--precision", "fp16", "--steps", "4",
                          "--log-interval", "2", *TINY, "--out", tmp_path / "run", cwd=tmp_path)
    assert rc == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["precision"] == "fp16" and summary["loss_scale"] > 0
    assert summary["skipped_steps"] == 0 and math.isfinite(summary["val_loss"])
    assert "skip" in out + err                              # the progress line shows scale and skips
    rc, _, err = script("--task", "digits", "--precision", "fp16", "--no-interactive", cwd=tmp_path)
    assert rc == 2 and "--precision is for lm" in err


@pytest.mark.parametrize("key", ["init_from", "mix_data", "data", "resume"])
def test_config_paths_are_read_from_the_config_folder(tmp_path, key):
    from glassformer.cli.config import _relative
    config = tmp_path / "configs" / "run.json"
    assert _relative(config, key, "../model") == str((tmp_path / "model").resolve())
    assert _relative(config, key, "/abs/model") == "/abs/model"
    assert _relative(config, "steps", "../model") == "../model"     # not a path key: as written


def test_the_flops_ratio_keeps_four_significant_figures_however_small():
    """On a busy machine the ratio can be 0.01: four decimals kept 0.4% of it, the summary's own check 0.1%."""
    from glassformer.train.trainer import Trainer
    t = Trainer.__new__(Trainer)
    t.tokens_seen, t.train_s, t.step, t.flops_per_token, t.peak_flops = 1000, 2.0, 10, 123.0, 4.5e6
    s = t.speed()
    assert s["model_flops_per_s"] == pytest.approx(s["flops_ratio"] * s["peak_flops_per_s"], rel=1e-3)


def test_reference_flag_runs_the_plain_layers_as_the_environment_variable_does(tmp_path, text):
    """--reference and GLASSFORMER_REFERENCE=1 give the same weights to the bit; the default (the CPU
    overlay) other bits, within Adam's steps (3 of lr 1e-3: Adam turns a rounding of a tiny gradient
    into a whole step)."""
    def weights(out, *flags, **env):
        code, _, err = script("--task", "lm", "--data", text, "--steps", "3", *TINY, *flags, "--out", out,
                              cwd=tmp_path, **env)
        assert code == 0, err
        with np.load(Path(out) / "last.npz") as z:
            return {k: z[k] for k in z.files if k.startswith("param/")}
    overlay, flag = weights(tmp_path / "a"), weights(tmp_path / "b", "--reference")
    env = weights(tmp_path / "c", GLASSFORMER_REFERENCE="1")
    assert all(np.array_equal(flag[k], env[k]) for k in flag)
    assert not all(np.array_equal(flag[k], overlay[k]) for k in flag)
    assert max(float(np.abs(flag[k] - overlay[k]).max()) for k in flag) < 3e-3


# ---- digits and sentences on the one Trainer (glassformer.runner.epochs) ---------------------------------

def test_epoch_batches_draw_one_permutation_per_epoch_where_the_epoch_starts():
    """The batches the Trainer gets are the old epoch loop's: a permutation drawn at each epoch's start."""
    ids, y = np.arange(10).reshape(10, 1) * 10, np.arange(10)
    batches = run_epochs.EpochBatches(ids, y, 4)            # 3 batches an epoch, the last of 2
    rng, twin = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(2):
        order = twin.permutation(10)
        for i in range(3):
            x, t = batches(rng)
            assert t.tolist() == order[4 * i:4 * i + 4].tolist() and x[:, 0].tolist() == (t * 10).tolist()
    assert rng.bit_generator.state == twin.bit_generator.state


def test_digits_and_sentences_epochs_run_on_the_trainer(tmp_path, monkeypatch):
    """cli/train.py keeps no loop of its own: each epoch's updates are Trainer.fit's steps."""
    from glassformer.train.records import read_metrics
    from glassformer.train.trainer import Trainer
    real, steps = Trainer.fit, []

    def fit(self):
        steps.append(self.config.steps)
        return real(self)
    monkeypatch.setattr(Trainer, "fit", fit)
    monkeypatch.setattr(run_epochs, "plot_run", lambda run, out, model: [])
    monkeypatch.setitem(digits.SIZES, "small", 300)
    for task, n in (("sentences", 1), ("digits", 240 // 64 + 1)):   # sentences: 8 in one batch
        out = tmp_path / task
        args = ["--task", task, "--epochs", "2", "--batch-size", "64", "--no-interactive", "--out", str(out)]
        assert train.main(args + (["--size", "small"] if task == "digits" else [])) == 0
        assert steps[-1] == 2 * n
        assert [r["epoch"] for r in read_metrics(out / "metrics.csv")] == [1, 2]


# ---- --task lm in process: the walk, Ctrl-C and an exact resume, one-line mistakes, BPE ----------------

LM_TEXT = "the quick brown fox jumps over the lazy dog. " * 40


def lm_argv(data, out, *extra):
    return ["--task", "lm", "--data", str(data), "--context", "8", "--batch-size", "2",
            "--eval-interval", "2", "--out", str(out), "--no-interactive", *extra]


@pytest.fixture
def text_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                             # the token cache goes under ./.cache
    path = tmp_path / "text.txt"
    path.write_text(LM_TEXT, encoding="utf-8")
    return path


def test_cli_walks_trains_resumes_exactly_and_the_repl_continues_text(text_file, tmp_path, capsys):
    from glassformer.cli import repl, train
    from glassformer.cli.lm import run_lm
    log_progress = Trainer._log_progress

    def stop_at_4(self, window):                            # as if Ctrl-C came during step 4
        log_progress(self, window)
        self.stop_requested = self.step == 4
    Trainer._log_progress = stop_at_4
    try:
        assert train.main(lm_argv(text_file, tmp_path / "a", "--steps", "6")) == 130
    finally:
        Trainer._log_progress = log_progress
    last = str(tmp_path / "a" / "last.npz")
    assert load_checkpoint(last).step == 4
    assert "continue with: python train_step_by_step.py --resume" in capsys.readouterr().out
    assert train.main(["--resume", last]) == 0       # on to the run's 6 steps
    # the same run straight through, walking the first batch stage by stage first
    walk_log, prompts = io.StringIO(), []
    argv = lm_argv(text_file, tmp_path / "b", "--steps", "6")
    ask = lambda prompt: prompts.append(prompt) or ""       # Enter at every pause
    assert run_lm(train.build_parser().parse_args(argv), argv, walk_log, True, ask) == 0
    text = walk_log.getvalue()
    assert "=== stage 1/" in text and "causal" in text and "'·' exactly 0" in text
    assert len(prompts) >= 20                               # every stage paused for Enter
    resumed, straight = (load_checkpoint(tmp_path / d / "last.npz") for d in "ab")
    assert resumed.step == straight.step == 6               # resume exact, the walk left no trace:
    a, b = resumed.model.state_dict(), straight.model.state_dict()
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert resumed.task["name"] == "lm" and resumed.tokenizer["type"] == "char"
    assert "best validation loss" in text and "sample from best.npz" in text
    capsys.readouterr()
    assert train.main(["--resume", last, "--steps", "8", "--context", "16"]) == 2
    assert train.main(["--resume", last]) == 2
    err = capsys.readouterr().err
    assert "--context 16 differs" in err and "already at step 6" in err
    assert repl.main(["--checkpoint", str(tmp_path / "b" / "best.npz"), "--expr", "the lazy",
                      "--max-new-tokens", "5", "--temperature", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("the lazy") and len(lines[0]) == len("the lazy") + 5
    assert lines[1] == "(5 new tokens)"


@pytest.mark.parametrize("extra,message", [
    ([], "needs --data"), (["--data", "x.txt", "--epochs", "3"], "--epochs is for digits"),
    (["--data", "missing.txt"], "no such file"),
    (["--data", "text.txt", "--tokenizer", "wordy"], "use char")])
def test_cli_lm_mistakes_are_one_line_errors(text_file, capsys, extra, message):
    from glassformer.cli import train
    assert train.main(["--task", "lm", "--no-interactive", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


@pytest.mark.parametrize("name,data", [("zeros.bin", bytes(3000)),            # valid UTF-8, but NULs
                                       ("weights.npy", b"\x93NUMPY\x01\x00" + bytes(range(256)))])
def test_cli_lm_binary_data_is_one_error_and_makes_no_run_directory(text_file, tmp_path, capsys,
                                                                    name, data):
    from glassformer.cli import train
    (tmp_path / name).write_bytes(data)
    out = tmp_path / "run"
    assert train.main(lm_argv(tmp_path / name, out, "--steps", "1")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / name}: ") and len(err.splitlines()) == 1
    assert ("binary file" if name == "zeros.bin" else "not UTF-8 text at byte 0") in err
    assert not out.exists()


def test_cli_bpe_tokenizer(text_file, tmp_path, capsys):
    from glassformer.cli import train
    argv = lm_argv(text_file, tmp_path / "bpe", "--steps", "1", "--tokenizer", "bpe", "--bpe-vocab", "280")
    assert train.main(argv) == 0
    assert "bpe: 23 merges in" in capsys.readouterr().err    # the training's progress line
    ckpt = load_checkpoint(tmp_path / "bpe" / "best.npz")
    assert ckpt.tokenizer["type"] == "bpe" and ckpt.config.vocab_size == 280


# ---- digits and sentences: the run folder, exact resume, Ctrl-C, bad input (in process) ---------------


FAST = ["--no-interactive", "--size", "small", "--epochs", "1", "--batch-size", "256"]


SIZE = {"digits": ["--size", "small"], "sentences": []}    # sentences has its 8 sentences: no --size


RUN_FILES = ["best.npz", "last.npz", "metrics.csv", "summary.json", "curves.png",
             "attention_layer0.png", "attention_layer1.png"]


def npz_arrays(path):
    meta, archive = read_meta(path)
    return {k: archive[k] for k in archive.files if k != "__meta__"}, meta


def csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("task", ["digits", "sentences"])
def test_run_writes_every_file(tiny_digits, tmp_path, capsys, task):
    out = tmp_path / "run"
    fast = FAST if task == "digits" else [f for f in FAST if f not in SIZE["digits"]]
    assert train.main(["--task", task, *fast, "--out", str(out)]) == 0
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    for key in ("task", "test_accuracy", "train_seconds", "config", "command", "epochs_completed"):
        assert key in summary
    assert summary["task"] == task and summary["epochs_completed"] == 1
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["command"].startswith("python train_step_by_step.py --task " + task)
    if task == "digits":
        assert set(summary["per_operation_accuracy"]) == {"First", "Second", "Last", "Max", "Min"}
    else:
        assert summary["best_possible_accuracy"] == pytest.approx(0.8039, abs=1e-3)
        assert set(summary["samples"]) == {"<START>", "the", "a", "the dog", "a bird"}
    rows = csv_rows(out / "metrics.csv")
    assert list(rows[0]) == train.METRIC_FIELDS and len(rows) == 1
    _, meta = npz_arrays(out / "best.npz")
    assert meta["task"]["name"] == task and meta["tokenizer"]["type"] == "word"
    assert meta["rng_state"] is not None and meta["optimizer"]["class"] == "Adam"
    assert meta["extra"]["epoch"] == 1
    assert "test accuracy" in capsys.readouterr().out or task == "sentences"


@pytest.mark.parametrize("task", ["digits", "sentences"])
def test_resume_continues_bit_for_bit(tiny_digits, tmp_path, task, no_plots):
    flags = ["--task", task, "--no-interactive", *SIZE[task], "--batch-size", "64"]
    straight, first, resumed = tmp_path / "straight", tmp_path / "first", tmp_path / "resumed"
    assert train.main(flags + ["--epochs", "2", "--out", str(straight)]) == 0
    assert train.main(flags + ["--epochs", "1", "--out", str(first)]) == 0
    assert train.main(["--no-interactive", "--resume", str(first / "last.npz"), "--epochs", "2",
                     "--out", str(resumed)]) == 0
    a, meta_a = npz_arrays(straight / "last.npz")
    b, meta_b = npz_arrays(resumed / "last.npz")
    assert sorted(a) == sorted(b) and any(k.startswith("optim/") for k in a)
    for k in a:
        assert np.array_equal(a[k], b[k]), k                 # parameters and Adam state
    assert meta_a["rng_state"] == meta_b["rng_state"] and meta_a["step"] == meta_b["step"]
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert drop(csv_rows(straight / "metrics.csv")) == drop(csv_rows(resumed / "metrics.csv"))
    assert (resumed / "best.npz").exists()
    assert json.loads((resumed / "summary.json").read_text())["epochs_completed"] == 2


def test_ctrl_c_keeps_best_and_exits_130(tiny_digits, tmp_path, monkeypatch, capsys):
    real, calls = EpochBatches.__call__, []

    def interrupted_in_epoch_2(self, rng):                  # the first batch of each epoch draws an order
        calls.append(self.i == 0)
        if sum(calls) == 2:
            raise KeyboardInterrupt
        return real(self, rng)

    monkeypatch.setattr(EpochBatches, "__call__", interrupted_in_epoch_2)
    out = tmp_path / "run"
    code = train.main(["--task", "digits", "--no-interactive", "--size", "small", "--epochs", "3",
                     "--batch-size", "256", "--out", str(out)])
    assert code == 130
    assert (out / "best.npz").exists() and (out / "curves.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["epochs_completed"] == 1
    assert summary["test_accuracy"] is not None
    assert len(csv_rows(out / "metrics.csv")) == 1
    printed = capsys.readouterr().out
    assert "interrupted" in printed and "--resume" in printed and str(out) in printed


def bad_inputs(tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a checkpoint")
    return [["--task", "poetry"], ["--epochs", "0"], ["--epochs", "many"], ["--lr", "-1"],
            ["--lr", "nan"], ["--batch-size", "0"], ["--seed", "-3"], ["--size", "huge"],
            ["--device", "tpu"], ["--resume", str(tmp_path / "missing.npz")],
            ["--resume", str(text_file)], ["--out", str(text_file)]]


def test_bad_input_exits_2_without_traceback(tiny_digits, tmp_path, capsys):
    for args in bad_inputs(tmp_path):
        assert train.main(args + ["--no-interactive"]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err, (args, err)


def test_resume_refuses_finished_run_and_changed_flags(tiny_digits, tmp_path, capsys, no_plots):
    out = tmp_path / "run"
    assert train.main(["--task", "sentences", "--no-interactive", "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert train.main(["--resume", str(out / "last.npz"), "--no-interactive"]) == 2
    assert "already has 1 epochs" in capsys.readouterr().err
    assert train.main(["--resume", str(out / "last.npz"), "--task", "digits", "--epochs", "3"]) == 2
    assert "--task digits differs" in capsys.readouterr().err


def test_help_exits_0(tiny_digits, capsys):
    assert train.main(["--help"]) == 0
    assert "--resume" in capsys.readouterr().out


def test_argument_count_and_digit_range_reach_the_data(tiny_digits, tmp_path, no_plots):
    out = tmp_path / "run"
    assert train.main([*FAST, "--n-args", "4", "--digits", "2-7", "--out", str(out)]) == 0
    _, meta = npz_arrays(out / "best.npz")
    assert (meta["task"]["n_args"], meta["task"]["low"], meta["task"]["high"]) == (4, 2, 7)
    config = digits.DigitsConfig(size="small", n_args=4, low=2, high=7)
    ids, _, _ = digits.generate(config)
    args = ids[:, 2:-1] - digits.DIGIT0                     # [op, (, 4 digits, )]
    assert ids.shape[1] == 7 and args.min() >= 2 and args.max() <= 7


@pytest.mark.parametrize("flags", [["--digits", "9-1"], ["--digits", "0-10"], ["--n-args", "1"]])
def test_bad_argument_count_or_digit_range_exits_2(tiny_digits, flags, capsys):
    assert train.main(["--no-interactive", *flags]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


# ---- --task qa ------------------------------------------------------------------------------------------------

QA_TINY = ["--context", "48", "--batch-size", "2", "--eval-interval", "2", "--eval-batches", "2",
           "--no-interactive"]


def test_the_cli_turns_a_bad_file_into_exit_2_and_one_line_before_any_run_folder(tmp_path, capsys,
                                                                                 monkeypatch):
    bad = tmp_path / "qa.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"answer": "a"}\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for argv, says in (([], f"{bad}:2: no 'question' field"),
                       (["--mix-ratio", "0.5"], "--mix-ratio needs --mix-data"),
                       (["--mix-ratio", "1"], "--mix-ratio")):
        code = train.main(["--task", "qa", "--data", str(bad), *QA_TINY, *argv])
        err = capsys.readouterr().err
        assert code == 2 and len(err.splitlines()) == 1 and says in err, err
    code = train.main(["--task", "lm", "--data", str(bad), "--mix-data", str(bad), *QA_TINY])
    assert code == 2 and "--mix-data is for qa, not lm" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_train_step_by_step_task_qa_reports_exact_match(tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "facts.jsonl", facts(20))
    mix = tmp_path / "mix.txt"
    mix.write_text("the colour of the sky is blue and grass is green.\n" * 20, encoding="utf-8")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", COLUMNS="80")
    done = subprocess.run([sys.executable, str(ROOT / "train_step_by_step.py"), "--task", "qa", "--data",
                           str(data), "--mix-data", str(mix), "--mix-ratio", "0.5", *QA_TINY, "--steps", "4",
                           "--eval-pairs", "2", "--out", "run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["task"] == "qa" and s["config"]["settings"]["mix_ratio"] == 0.5
    assert 0 <= s["val_exact_match"] <= 1 and 0 <= s["train_exact_match"] <= 1
    assert len(s["answers"]) == 2 and {"question", "answer", "given", "exact"} <= set(s["answers"][0])
    assert "step 2: exact match" in done.stdout and "on 2 held-out pairs" in done.stdout
    assert "exact match (best.npz, greedy): held out" in done.stdout and "--chat" in done.stdout
    task = json.loads((tmp_path / "run" / "config.json").read_text())
    assert task["task"] == "qa" and task["mix_data"] == str(mix)
    resumed = subprocess.run([sys.executable, str(ROOT / "train_step_by_step.py"), "--resume", "run",
                              "--steps", "6"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["step"] == 6
    best = str(tmp_path / "run" / "best.npz")                # the REPL asks it as it was taught
    sent, stream = [], qa.stream_tokens
    monkeypatch.setattr(handlers, "stream_tokens", lambda model, ids, *a, **k: sent.append(list(ids))
                        or stream(model, ids, *a, **k))
    assert repl.main(["--checkpoint", best, "--chat", "--prompt", "colour of item a?", "--temperature", "0",
                      "--max-new-tokens", "3"]) == 0
    tok = load_checkpoint(best).tokenizer
    assert tokenizer_from_dict(tok).decode(sent[0]) == CHAT_TEMPLATE.format(input="colour of item a?")
