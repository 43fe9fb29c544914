"""Tests for train_step_by_step.py (glassformer.cli.train, .walkthrough): the walk, runs, resume, Ctrl-C, flags."""
import csv
import io
import json

import numpy as np
import pytest

from glassformer.cli import common, stages, train, walkthrough
from glassformer.runner import epochs as run_epochs
from glassformer.runner.epochs import EpochBatches
from glassformer.checkpoint import read_meta
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.models import build_model, lm_config
from glassformer.optim.optimizers import AdamW
from glassformer.tasks import digits

FAST = ["--no-interactive", "--size", "small", "--epochs", "1", "--batch-size", "256"]
SIZE = {"digits": ["--size", "small"], "sentences": []}    # sentences has its 8 sentences: no --size
RUN_FILES = ["best.npz", "last.npz", "metrics.csv", "summary.json", "curves.png",
             "attention_layer0.png", "attention_layer1.png"]


@pytest.fixture(autouse=True)
def tiny_digits(monkeypatch):
    """--size small means 300 examples here (2,000 in real runs): the CLI's logic, at test speed."""
    monkeypatch.setitem(digits.SIZES, "small", 300)


@pytest.fixture
def no_plots(monkeypatch):
    """Skip the PNGs where a test does not look at them (plots are tested on their own)."""
    monkeypatch.setattr(run_epochs, "plot_run", lambda run, out, model: [])


def npz_arrays(path):
    meta, archive = read_meta(path)
    return {k: archive[k] for k in archive.files if k != "__meta__"}, meta


def read_metrics(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("task", ["digits", "sentences"])
def test_run_writes_every_file(tmp_path, capsys, task):
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
    rows = read_metrics(out / "metrics.csv")
    assert list(rows[0]) == train.METRIC_FIELDS and len(rows) == 1
    _, meta = npz_arrays(out / "best.npz")
    assert meta["task"]["name"] == task and meta["tokenizer"]["type"] == "word"
    assert meta["rng_state"] is not None and meta["optimizer"]["class"] == "Adam"
    assert meta["extra"]["epoch"] == 1
    assert "test accuracy" in capsys.readouterr().out or task == "sentences"


def make_run(task):
    settings = {"task": task, "size": "small", "batch_size": 32, "lr": 1e-3, "seed": 0, "epochs": 1}
    return train.Run(settings)


def walk_run(task, answers):
    run = make_run(task)
    ids, targets = run.task.walk_example()
    asked, out = [], io.StringIO()

    def ask(prompt):
        asked.append(prompt)
        answer = answers[min(len(asked), len(answers)) - 1]
        if answer is EOFError:
            raise EOFError
        return answer

    before = {k: v.copy() for k, v in run.model.state_dict().items()}
    shown = walkthrough.walk(run.model, ids, targets, run.task.vocab, run.loss_fn, run.optimizer, ask, out)
    unchanged = all(np.array_equal(before[k], v) for k, v in run.model.state_dict().items())
    return run, shown, asked, out.getvalue(), unchanged


@pytest.mark.parametrize("task,head", [("digits", "pooling + classifier head"),
                                       ("sentences", "LM head")])
def test_walk_prints_every_stage(task, head):
    run, shown, asked, text, unchanged = walk_run(task, [""])
    names = ["tokens", "embeddings", "positions", "block 0 attention", "block 0 add & norm",
             "block 0 feed-forward", "block 1 attention", "block 1 add & norm (after the FFN)",
             head, "softmax", "loss", "backward", "optimizer update"]
    for name in names:
        assert f": {name} ===" in text, name
    assert len(shown) == len(asked) == walkthrough.count_stages(run.model) == 16
    assert "the one pass every stage above was read from" in text
    assert "head 3: row = query token" in text and "blocks.0.attn.qkv" in text
    assert unchanged and run.optimizer.t == 0               # the update is undone after the walk
    if task == "sentences":
        assert "causal mask" in text and "··" in text


@pytest.mark.parametrize("answers,n_shown", [(["", "", "q"], 3), ([" Q "], 1), ([EOFError], 1)])
def test_walk_q_skips_to_training(answers, n_shown):
    run, shown, asked, text, unchanged = walk_run("digits", answers)
    assert len(shown) == len(asked) == n_shown
    assert f"stage {n_shown + 1}/" not in text and "skipping the rest" in text
    assert unchanged and run.optimizer.t == 0


def stage_text(text, name):
    """The printed body of the stage called `name`."""
    return next(part.split("===\n", 1)[1] for part in text.split("\n=== stage ")[1:]
                if part.split(" ===")[0].split(": ", 1)[1] == name)


def pre_ln_lm():
    """A small GPT-2 style model (pre-LN, tied head, learned positions), its vocabulary and a window."""
    model = build_model(lm_config("tiny", 20, d_model=32, n_heads=4, n_layers=2, max_len=16),
                        np.random.default_rng(1))
    ids = np.random.default_rng(2).integers(0, 20, (1, 9))
    return model, [f"w{i}" for i in range(20)], ids[:, :8], ids[:, 1:]


def blocks_by_hand(model, ids):
    """(r1, x1, r2, x2) of every block, written out in the order each norm placement documents."""
    x, out = model.pos.forward(model.tok_emb.forward(ids)), []
    for b in model.blocks:
        if b.norm_first:                                    # x + f(LN(x))
            r1 = x1 = x + b.attn.forward(b.ln1.forward(x))
            r2 = x2 = x1 + b.ffn.forward(b.ln2.forward(x1))
        else:                                               # LN(x + f(x))
            r1 = x + b.attn.forward(x)
            x1 = b.ln1.forward(r1)
            r2 = x1 + b.ffn.forward(x1)
            x2 = b.ln2.forward(r2)
        out.append((r1, x1, r2, x2))
        x = x2
    return out


@pytest.mark.parametrize("kind", ["post-LN digits", "pre-LN lm"])
def test_walk_stages_come_from_the_real_forward(kind):
    if kind == "post-LN digits":
        run = make_run("digits")
        model, vocab, loss_fn = run.model, run.task.vocab, run.loss_fn
        ids, targets = run.task.walk_example()
    else:
        model, vocab, ids, targets = pre_ln_lm()
        loss_fn = CrossEntropyLoss()
    assert model.blocks[0].norm_first == (kind == "pre-LN lm")
    model.eval()
    logits = model.forward(ids)
    hand = blocks_by_hand(model, ids)
    recorded = walkthrough.Pass(model, ids)
    np.testing.assert_array_equal(recorded.logits, logits)  # the walk's pass is model.forward
    for i, want in enumerate(hand):
        got = recorded.block(i)
        for key, w in zip(("r1", "x1", "r2", "x2"), want):
            np.testing.assert_allclose(got[key], w, rtol=1e-5, atol=1e-6, err_msg=f"block {i} {key}")
    out = io.StringIO()
    walkthrough.walk(model, ids, targets, vocab, loss_fn, AdamW(model.get_parameters()),
                     ask=lambda prompt: "", out=out)
    text = out.getvalue()
    loss = float(CrossEntropyLoss().forward(logits, targets))
    assert f"{type(loss_fn).__name__}: {loss:.4f}" in stage_text(text, "loss")
    r1 = hand[0][0][0]                                      # (T, C): block 0's residual sum
    norm = stage_text(text, "block 0 add & norm")
    if kind == "pre-LN lm":
        assert "pre-LN: ln1 normalises x first" in stage_text(text, "block 0 attention")
        assert "pre-LN: no norm here" in norm
        assert f"{vocab[ids[0, 0]]} mean {stages.num(r1[0].mean())} std {r1[0].std():.3f}" in norm
        z = logits[0, -1]
        assert f"{vocab[int(z.argmax())]:<8} score {z.max():+.2f}" in stage_text(text, "LM head")
        assert "tied LM head" in stage_text(text, "backward")
    else:
        assert "pre-LN" not in text and "then x = ln1(r)" in norm
        x1 = hand[0][1][0]
        assert (f"{stages.num(r1[0].mean())} {r1[0].std():6.3f}          "
                f"{stages.num(x1[0].mean())}") in norm              # a mean of ~1e-9 prints 0.000
        head = stage_text(text, "pooling + classifier head")
        z = [f"{c}:{v:+.2f}" for c, v in enumerate(logits[0])]
        assert f"logits: {' '.join(z[:5])}\n        {' '.join(z[5:])}" in head   # 80 columns


def test_walk_runs_the_forward_once_and_unwraps_every_layer(monkeypatch):
    model, vocab, ids, targets = pre_ln_lm()
    calls, forward = [], model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    block_calls, block_forward = [], model.blocks[1].forward
    monkeypatch.setattr(model.blocks[1], "forward",
                        lambda *a, **k: block_calls.append(1) or block_forward(*a, **k))
    shown = walkthrough.walk(model, ids, targets, vocab, CrossEntropyLoss(),
                             AdamW(model.get_parameters()), ask=lambda prompt: "", out=io.StringIO())
    assert len(shown) == walkthrough.count_stages(model) and calls == [1] and block_calls == [1]
    wrapped = [name for name, layer in walkthrough.named_layers(model) if "forward" in vars(layer)]
    assert wrapped == ["blocks.1"]                          # only the test's own counter is left
    assert model.blocks[1].forward is not block_forward


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_walk_runs_only_on_a_terminal(tmp_path, monkeypatch, no_plots):
    calls = []
    monkeypatch.setattr(train, "walk", lambda *a, **k: calls.append(a))
    args = ["--task", "sentences", "--epochs", "1", "--out", str(tmp_path / "a")]
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert train.main(args) == 0 and not calls
    monkeypatch.setattr("sys.stdin", FakeTTY(""))
    assert train.main(args) == 0 and len(calls) == 1
    assert train.main(args + ["--no-interactive"]) == 0 and len(calls) == 1


def test_the_walk_skipped_for_want_of_a_terminal_says_so_in_one_line(tmp_path, monkeypatch, capsys, no_plots):
    calls = []
    monkeypatch.setattr(train, "walk", lambda *a, **k: calls.append(a))
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    args = ["--task", "sentences", "--epochs", "1"]
    assert train.main(args + ["--out", str(tmp_path / "a")]) == 0 and not calls
    said = capsys.readouterr().out.splitlines()
    assert said.count(walkthrough.SKIPPED) == 1 and len(walkthrough.SKIPPED) <= 80, said
    for flags in (["--no-walk"], ["--no-interactive"]):     # asked for: nothing to say
        assert train.main(args + flags + ["--out", str(tmp_path / flags[0])]) == 0 and not calls
        assert walkthrough.SKIPPED not in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", FakeTTY(""))
    assert train.main(args + ["--out", str(tmp_path / "tty")]) == 0 and len(calls) == 1
    assert walkthrough.SKIPPED not in capsys.readouterr().out


def test_walk_forces_the_walk_and_no_pause_prints_it_all_without_waiting(tmp_path, monkeypatch, capsys, no_plots):
    """--walk with a piped stdin reads Enter from it (here: EOF, so it stops after stage 1); --no-pause never
    reads it and prints every stage, for a script; --walk with --no-walk is one error line, exit 2."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    args = ["--task", "sentences", "--epochs", "1"]
    assert train.main(args + ["--walk", "--out", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "=== stage 1/" in out and "=== stage 2/" not in out and walkthrough.SKIPPED not in out
    assert train.main(args + ["--no-pause", "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    total = out.split("=== stage 1/")[1].split(":")[0]
    assert f"=== stage {total}/{total}: optimizer update ===" in out and "skipping the rest" not in out
    assert train.main(args + ["--walk", "--no-walk", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --walk or --no-pause") and "keep one" in err[0]


def test_no_pause_walks_a_language_model_too(tmp_path, monkeypatch, capsys):
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question. " * 40)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert train.main(["--task", "lm", "--data", str(text), "--tokenizer", "char", "--preset", "tiny",
                       "--context", "8", "--steps", "1", "--no-pause", "--out", str(tmp_path / "lm")]) == 0
    out = capsys.readouterr().out
    assert ": optimizer update ===" in out and "skipping the rest" not in out


def test_progress_line_is_rewritten_on_a_terminal():
    out = io.StringIO()
    progress = common.Progress(out, live=True, epochs=2, n_batches=3, first_epoch=0)
    progress.begin(1)
    progress.on_batch(2, 3, 0.5)
    progress.end_epoch({"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "val_loss": 0.4,
                        "val_acc": 0.9, "seconds": 0.1}, True)
    assert out.getvalue().startswith("\repoch 1/2  batch 3/3  loss 0.5000") and "ETA" in out.getvalue()


@pytest.mark.parametrize("task", ["digits", "sentences"])
def test_resume_continues_bit_for_bit(tmp_path, task, no_plots):
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
    assert drop(read_metrics(straight / "metrics.csv")) == drop(read_metrics(resumed / "metrics.csv"))
    assert (resumed / "best.npz").exists()
    assert json.loads((resumed / "summary.json").read_text())["epochs_completed"] == 2


def test_ctrl_c_keeps_best_and_exits_130(tmp_path, monkeypatch, capsys):
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
    assert len(read_metrics(out / "metrics.csv")) == 1
    printed = capsys.readouterr().out
    assert "interrupted" in printed and "--resume" in printed and str(out) in printed


def bad_inputs(tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a checkpoint")
    return [["--task", "poetry"], ["--epochs", "0"], ["--epochs", "many"], ["--lr", "-1"],
            ["--lr", "nan"], ["--batch-size", "0"], ["--seed", "-3"], ["--size", "huge"],
            ["--device", "tpu"], ["--resume", str(tmp_path / "missing.npz")],
            ["--resume", str(text_file)], ["--out", str(text_file)]]


def test_bad_input_exits_2_without_traceback(tmp_path, capsys):
    for args in bad_inputs(tmp_path):
        assert train.main(args + ["--no-interactive"]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err, (args, err)


def test_resume_refuses_finished_run_and_changed_flags(tmp_path, capsys, no_plots):
    out = tmp_path / "run"
    assert train.main(["--task", "sentences", "--no-interactive", "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert train.main(["--resume", str(out / "last.npz"), "--no-interactive"]) == 2
    assert "already has 1 epochs" in capsys.readouterr().err
    assert train.main(["--resume", str(out / "last.npz"), "--task", "digits", "--epochs", "3"]) == 2
    assert "--task digits differs" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert train.main(["--help"]) == 0
    assert "--resume" in capsys.readouterr().out


def test_argument_count_and_digit_range_reach_the_data(tmp_path, no_plots):
    out = tmp_path / "run"
    assert train.main([*FAST, "--n-args", "4", "--digits", "2-7", "--out", str(out)]) == 0
    _, meta = npz_arrays(out / "best.npz")
    assert (meta["task"]["n_args"], meta["task"]["low"], meta["task"]["high"]) == (4, 2, 7)
    config = digits.DigitsConfig(size="small", n_args=4, low=2, high=7)
    ids, _, _ = digits.generate(config)
    args = ids[:, 2:-1] - digits.DIGIT0                     # [op, (, 4 digits, )]
    assert ids.shape[1] == 7 and args.min() >= 2 and args.max() <= 7


@pytest.mark.parametrize("flags", [["--digits", "9-1"], ["--digits", "0-10"], ["--n-args", "1"]])
def test_bad_argument_count_or_digit_range_exits_2(flags, capsys):
    assert train.main(["--no-interactive", *flags]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
