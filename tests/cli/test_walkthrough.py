"""The walk (glassformer.cli.walkthrough, .stages): every stage read from the real forward, q to skip, only
on a terminal (--walk, --no-pause), 80 columns, and numbers a learner can check by hand."""
import io
import re

import numpy as np
import pytest

from glassformer.cli import stages, train, walkthrough
from glassformer.cli.common import TokenNames
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.models import ModelConfig, build_model, lm_config
from glassformer.optim.optimizers import Adam, AdamW, decay_mask
from glassformer.optim.optimizers import warmup_cosine
from glassformer.tasks import digits
from glassformer.tokenizers import CharTokenizer

pytestmark = pytest.mark.usefixtures("tiny_digits")       # --size small: 300 examples (conftest.py)


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


# ---- 80 columns, numbers a learner can check -----------------------------------------------------------

TEXT = "Question: who is it?\nAnswer: a cat.\nROMEO: hi there!\n"


def digits_walk(lr_at=None):
    task = digits.DigitsConfig(size="small")
    cfg = ModelConfig(vocab_size=len(digits.VOCAB), d_model=64, n_heads=4, n_layers=2, d_ff=256,
                      max_len=16, n_classes=10)
    model = build_model(cfg, np.random.default_rng(0))
    ids = np.array([digits.encode("Max", [5, 3, 9], length=task.seq_len)])
    out, opt = io.StringIO(), Adam(model.get_parameters(), lr=1e-3)
    walkthrough.walk(model, ids, np.array([9]), digits.VOCAB, CrossEntropyLoss(), opt,
                     ask=lambda prompt: "", out=out)
    return model, out.getvalue()


def char_lm_walk(n_layers=1):
    tok = CharTokenizer.from_text(TEXT)
    model = build_model(lm_config("tiny", tok.vocab_size, n_layers=n_layers, max_len=64),
                        np.random.default_rng(0))
    x = np.array([tok.encode(TEXT[:13])])
    named = model.named_parameters()
    opt = AdamW([pg for _, pg in named], lr=1e-3, weight_decay=0.1, decay=decay_mask(named))
    out = io.StringIO()
    walkthrough.walk(model, x[:, :12], x[:, 1:13], TokenNames(tok), CrossEntropyLoss(), opt,
                     ask=lambda prompt: "", out=out,
                     lr_at=lambda step: warmup_cosine(step, 1e-3, 100, 1000, 1e-4))
    return model, out.getvalue()


@pytest.mark.parametrize("walk", [digits_walk, char_lm_walk])
def test_walk_fits_80_columns_and_wider_terminals_use_their_width(walk, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    text = walk()[1]
    assert max(map(len, text.splitlines())) <= 80
    monkeypatch.setenv("COLUMNS", "140")
    assert 80 < max(map(len, walk()[1].splitlines())) <= 140


def test_relu_zeros_never_print_as_minus_zero(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    model, text = digits_walk()
    relu = model.blocks[0].ffn.act
    hidden = relu.forward(np.array([-1.0, 2.0]))
    assert np.signbit(hidden[0]) and hidden[0] == 0       # x * (x > 0): ReLU makes -0.0
    assert f"{hidden[0]:+.3f}" == "-0.000"                 # which the old format printed
    assert "-0.000" not in text and " 0.000" in stage_text(text, "block 0 feed-forward")
    assert stages.num(-0.0) == stages.num(-0.0004) == stages.num(0.0) == " 0.000"
    assert stages.vec(np.array([-0.0, 0.5, -0.25])) == "[ 0.000 +0.500 -0.250]"


def test_char_walk_says_character_and_its_rows_align(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    text = char_lm_walk()[1]
    assert "the next character at each position" in text and "vocabulary of 24 characters" in text
    assert "a score for every character" in stage_text(text, "LM head")
    assert "word" not in text
    rows = [r for r in stage_text(text, "positions").splitlines() if r.startswith("  t=")]
    assert len(rows) == 12 and len({r.index(" PE [") for r in rows}) == 1     # t=9 and t=10 align
    assert "t=10 " in rows[10]


def test_lm_walk_heatmaps_are_scaled_per_head(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    model, text = char_lm_walk()
    attention = stage_text(text, "block 0 attention")
    maps = re.findall(r"darkest = [^\n]*\n(.*?)\nscale: ' ' 0\.00, '░' ([\d.]+)", attention, re.S)
    assert len(maps) == model.config.n_heads
    for rows, quarter in maps:
        assert float(quarter) < 0.25                       # not the absolute 0..1 scale
        for row in rows.splitlines()[1:]:                 # every query row shows its weights
            assert set(row[2:]) - {" ", "·"}, row
    w = model.blocks[0].attn.last_attention_weights[0, 0]  # each row sums to 1 ...
    from glassformer.visualization import ascii_heatmap
    old = ascii_heatmap(w, list("abcdefghijkl"), list("abcdefghijkl"), vmax=float(w.max()))
    assert any(not set(r[2:]) - {" ", "·"} for r in old.splitlines()[1:-1])  # ... yet printed blank


def numbers(line):
    return [float(x) for x in re.findall(r"[-+]?\d+\.\d+(?:e[-+]\d+)?", line)]


def test_optimizer_stage_can_be_checked_by_hand(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    text = stage_text(char_lm_walk()[1], "optimizer update")
    assert "AdamW" in text and "decay mask" in text and "language model" in text
    assert "learning rate lr = 1e-05" in text             # warm-up step 1 of 100, not the peak 1e-3
    assert "1 - beta1^t = 0.1, 1 - beta2^t = 0.001" in text
    line = {ln.split("=")[0].strip(): ln for ln in text.splitlines()}
    m_hat = numbers(line["m_hat"])[-1]
    v_hat = numbers(line["v_hat"])[-1]
    update = -1e-5 * m_hat / (np.sqrt(v_hat) + 1e-8)
    assert numbers(line["update"])[-1] == pytest.approx(update, rel=1e-3)
    change = numbers(line["change"])
    assert change[0] == pytest.approx(change[1], rel=1e-2, abs=1e-9)   # after - before = by hand
    digits_text = stage_text(digits_walk()[1], "optimizer update")
    assert "optimizer: Adam," in digits_text and "digits and sentences" in digits_text
    assert "lr = 0.001: constant" in digits_text and "beta2 = 0.999" in digits_text
