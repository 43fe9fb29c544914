"""test_model_manually.py as a user runs it (subprocesses), and what a learner sees: streaming, Ctrl-C,
--json, --num-samples, --prompt-file, special tokens, 80 columns, the walk's numbers."""
import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from glassformer.checkpoint import save_checkpoint
from glassformer.cli import stages, walkthrough
from glassformer.cli.common import TokenNames
from glassformer.generate import TextStream, generate_text, generate_tokens
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.models import ModelConfig, build_model, lm_config
from glassformer.optim.optimizers import Adam, AdamW, decay_mask
from glassformer.optim.schedules import warmup_cosine
from glassformer.tasks import digits
from glassformer.tokenizers import ByteLevelBPE, CharTokenizer, WordTokenizer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "test_model_manually.py")
TEXT = "Question: who is it?\nAnswer: a cat.\nROMEO: hi there!\n"


def script(*argv, stdin="", env=None, timeout=30):
    """(exit status, stdout, stderr) of the real script."""
    proc = subprocess.run([sys.executable, SCRIPT, *map(str, argv)], input=stdin, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return proc.returncode, proc.stdout, proc.stderr


def char_lm(path, specials=(), max_len=32, favour=None):
    """Save an untrained 1-layer char LM; favour=token makes that token's logit win every time."""
    tok = CharTokenizer.from_text(TEXT, specials=specials)
    cfg = lm_config("tiny", tok.vocab_size, d_model=16, n_heads=2, n_layers=1, max_len=max_len,
                    tie_weights=favour is None)
    model = build_model(cfg, np.random.default_rng(0))
    if favour is not None:                                  # h[0] = LN(x)[0] + 10; W[0, favour] = 10
        model.ln_f.beta[0] = 10.0
        model.head.W[0, tok.token_id(favour)] = 10.0
    save_checkpoint(path, model, tokenizer=tok.to_dict(), task={"name": "lm", "context": max_len})
    return path, model, tok


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return char_lm(tmp_path_factory.mktemp("ckpt") / "lm.npz")


# ---- streaming and Ctrl-C ------------------------------------------------------------------------

def start(argv, stdin=""):
    """The script running in the background, Ctrl-C (SIGINT) raising KeyboardInterrupt in it."""
    proc = subprocess.Popen([sys.executable, SCRIPT, *map(str, argv)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    proc.stdin.write(stdin.encode())
    proc.stdin.close()
    proc.stdin = None                                       # so communicate() leaves it alone
    return proc


def read_until(proc, n, seconds=15):
    """The first n characters the process printed, or a failure if they take longer than `seconds`."""
    data, deadline = b"", time.monotonic() + seconds
    while len(data) < n:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"nothing more printed within {seconds} s (printed so far: {data!r})"
        chunk = os.read(proc.stdout.fileno(), n - len(data))
        assert chunk, f"the process ended after printing {data!r}"
        data += chunk
    return data.decode()


def finish(proc):
    """(rest of stdout, stderr) as text once the process has ended."""
    out, err = proc.communicate(timeout=20)
    return out.decode(), err.decode()


def test_reply_streams_and_ctrl_c_keeps_what_was_printed(lm):
    greedy = "hi" + generate_text(lm[1], lm[2], "hi", 400, temperature=0)
    proc = start(["--checkpoint", lm[0], "--prompt", "hi", "--temperature", "0",
                  "--max-new-tokens", "100000"])
    try:
        first = read_until(proc, 12)                        # a reply of 100,000 tokens has begun
        assert proc.poll() is None and greedy.startswith(first)
        proc.send_signal(signal.SIGINT)
        out, err = finish(proc)
    finally:
        proc.kill()
    text = first + out
    assert proc.returncode == 130 and "Traceback" not in err
    kept, stopped = text.rsplit("\n", 2)[:2]
    assert stopped == "(stopped)" and len(kept) >= 12 and greedy.startswith(kept[:400])


def test_ctrl_c_in_the_loop_stops_one_reply_and_the_loop_goes_on(lm):
    proc = start(["--checkpoint", lm[0], "--temperature", "0", "--max-new-tokens", "100000"],
                 stdin="hi\nset max_tokens 3\nhi\n")
    try:
        read_until(proc, 200)                               # the banner, then the reply streams
        proc.send_signal(signal.SIGINT)
        out, err = finish(proc)
    finally:
        proc.kill()
    assert proc.returncode == 0 and err == ""
    lines = out.splitlines()
    stop = lines.index("(stopped)")
    assert lines[stop + 1:] == ["max_tokens 3", "hi" + generate_text(lm[1], lm[2], "hi", 3, temperature=0),
                                "(3 new tokens)"]


def test_text_stream_prints_a_multibyte_character_only_when_whole():
    tokens = [bytes([b]) for b in range(256)] + [b"<|endoftext|>"]
    tok = ByteLevelBPE(tokens, [], specials={"<|endoftext|>": 256})   # bytes only: é is 2 ids
    text = "héllo wörld \u20ac \U0001f600!"
    ids = tok.encode(text)
    stream = TextStream(tok)
    pieces = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == text == tok.decode(ids)
    assert "\ufffd" not in "".join(pieces) and "" in pieces   # a cut character waits
    assert [p for p in pieces if p][-3:] == [" ", "\U0001f600", "!"]
    stream = TextStream(tok)                                # a character cut off at the end
    assert "".join(stream.push(i) for i in ids[:2]) + stream.flush() == tok.decode(ids[:2]) == "h\ufffd"


# ---- --json, --num-samples, --prompt-file, --max-new-tokens ------------------------------------

def test_json_lines_hold_ids_text_and_settings(lm):
    argv = ["--checkpoint", lm[0], "--prompt", "ROMEO:", "--json", "--num-samples", "3",
            "--temperature", "1.5", "--top-k", "5", "--max-new-tokens", "12", "--seed", "7"]
    rc, out, err = script(*argv)
    assert rc == 0 and err == ""
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["sample"] for r in records] == [1, 2, 3]
    for r in records:
        assert r["prompt"] == "ROMEO:" and r["prompt_ids"] == lm[2].encode("ROMEO:")
        assert len(r["new_ids"]) == 12 and r["text"] == lm[2].decode(r["new_ids"])
        assert r["settings"] == {"temperature": 1.5, "top_k": 5, "top_p": None, "max_tokens": 12,
                                 "seed": 7, "chat": False}
    assert len({r["text"] for r in records}) == 3             # three draws of one seeded stream
    assert script(*argv)[1] == out                            # the same seed, the same samples


def test_prompt_file_is_the_whole_prompt(lm, tmp_path):
    path = tmp_path / "prompt.txt"
    path.write_text("Question: who?\nAnswer:", encoding="utf-8")
    rc, out, _ = script("--checkpoint", lm[0], "--prompt-file", path, "--json", "--temperature", "0",
                        "--max-new-tokens", "4")
    record = json.loads(out)
    assert rc == 0 and record["prompt"] == "Question: who?\nAnswer:"
    assert record["text"] == generate_text(lm[1], lm[2], "Question: who?\nAnswer:", 4, temperature=0)
    rc, out, err = script("--checkpoint", lm[0], "--prompt-file", tmp_path / "none.txt")
    assert rc == 2 and err.startswith("error: --prompt-file") and "Traceback" not in err
    rc, _, err = script("--checkpoint", lm[0], "--prompt-file", path, "--prompt", "hi")
    assert rc == 2 and "not allowed with" in err


@pytest.mark.parametrize("flags, words", [(["--max-new-tokens", "100001"], "from 1 to 100,000"),
                                          (["--max-new-tokens", "0"], "from 1 to 100,000"),
                                          (["--num-samples", "0"],
                                           "--num-samples: 0 is not a whole number from 1 to 10,000"),
                                          (["--json", "--attention", "on"], "drop --attention")])
def test_out_of_range_flags_exit_2_with_one_line(lm, flags, words):
    rc, out, err = script("--checkpoint", lm[0], "--prompt", "hi", *flags)
    assert rc == 2 and out == "" and err.startswith("error: ") and words in err
    assert len(err.splitlines()) == 1


def test_help_shows_the_new_flags():
    rc, out, _ = script("--help")
    assert rc == 0 and all(f in out for f in ("--json", "--num-samples", "--prompt-file", "100,000"))


# ---- special tokens ------------------------------------------------------------------------------

def test_special_tokens_are_never_sampled(tmp_path):
    path, model, tok = char_lm(tmp_path / "pad.npz", specials=["<pad>"], favour="<pad>")
    pad = tok.token_id("<pad>")
    assert generate_tokens(model, tok.encode("hi"), 5, temperature=0) == [pad] * 5   # unmasked: <pad>
    for flags in (["--temperature", "0"], ["--temperature", "1", "--seed", "3"]):
        rc, out, _ = script("--checkpoint", path, "--prompt", "hi", "--json", "--max-new-tokens", "20",
                            *flags)
        record = json.loads(out)
        assert rc == 0 and len(record["new_ids"]) == 20 and pad not in record["new_ids"]
        assert "<pad>" not in record["text"]
    assert "<pad>" not in generate_text(model, tok, "hi", 20, temperature=0)


def test_the_end_of_text_token_may_still_end_the_reply(tmp_path):
    path, model, tok = char_lm(tmp_path / "eos.npz", specials=["<pad>", "<|endoftext|>"],
                               favour="<|endoftext|>")
    rc, out, _ = script("--checkpoint", path, "--prompt", "hi", "--temperature", "0")
    assert rc == 0 and out.splitlines() == ["hi", "<end of text>"]


def test_sentences_never_sample_pad_or_start(tmp_path):
    from glassformer.cli import handlers
    from glassformer.tasks import sentences
    vocab = sentences.vocabulary()
    cfg = ModelConfig(vocab_size=len(vocab), kind="decoder_lm", d_model=16, n_heads=2, n_layers=1,
                      d_ff=32, max_len=16)
    model = build_model(cfg, np.random.default_rng(0))
    model.blocks[-1].ln2.beta[0] = 10.0                     # the tied head: tok_emb.W[<PAD>] wins
    model.tok_emb.W[sentences.PAD, 0] = 10.0
    assert set(generate_tokens(model, [sentences.START], 4, temperature=0)) == {sentences.PAD}
    words = WordTokenizer(vocab[len(sentences.SPECIALS):], specials=sentences.SPECIALS)
    path = save_checkpoint(tmp_path / "s.npz", model, tokenizer=words.to_dict(), task={"name": "sentences"})
    rc, out, err = script("--checkpoint", path, "--prompt", "the", "--max-new-tokens", "6")
    assert err == "" and rc == 0 and out.startswith("the | ") and "<PAD>" not in out and "<START>" not in out
    assert handlers.SentencesHandler.__mro__[1] is handlers.Sampler


# ---- the attention view: a window of a long text, 80 columns ------------------------------------

def test_attention_after_a_reply_longer_than_the_context(tmp_path):
    path = char_lm(tmp_path / "short.npz", max_len=8)[0]
    rc, out, _ = script("--checkpoint", path, "--prompt", "hi there", "--max-new-tokens", "5",
                        "--attention", "on", env={"COLUMNS": "80"})
    assert rc == 0 and "the text is 13 tokens, longer than the context of 8" in out
    assert "positions 5..12" in out and max(map(len, out.splitlines())) <= 80


def test_attention_rows_fit_80_columns_and_say_which_window(lm):
    rc, out, _ = script("--checkpoint", lm[0], "--prompt", "hi", "--max-new-tokens", "60",
                        "--attention", "all", env={"COLUMNS": "80"})
    lines = out.splitlines()
    assert rc == 0 and max(map(len, lines)) <= 80
    assert re.search(r"\(last (\d+) of 32 tokens shown: positions (\d+)\.\.61\)", out)
    rc, wide, _ = script("--checkpoint", lm[0], "--prompt", "hi", "--max-new-tokens", "60",
                         "--attention", "on", env={"COLUMNS": "200"})
    assert max(map(len, wide.splitlines())) > 80 and "tokens shown" not in wide


def test_banner_and_help_fit_80_columns(lm, tmp_path):
    from glassformer.tasks import sentences
    vocab = sentences.vocabulary()                          # its banner lists every known word
    model = build_model(ModelConfig(vocab_size=len(vocab), kind="decoder_lm", d_model=8, n_heads=2,
                                    n_layers=1, d_ff=8, max_len=16), np.random.default_rng(0))
    words = WordTokenizer(vocab[len(sentences.SPECIALS):], specials=sentences.SPECIALS)
    path = save_checkpoint(tmp_path / "s.npz", model, tokenizer=words.to_dict(), task={"name": "sentences"})
    for ckpt in (path, lm[0]):
        rc, out, _ = script("--checkpoint", ckpt, stdin="help\n", env={"COLUMNS": "80"})
        assert rc == 0 and "commands:" in out and max(map(len, out.splitlines())) <= 80


# ---- the walk: 80 columns, numbers a learner can check --------------------------------------------

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


def stage(text, name):
    return next(p.split("===\n", 1)[1] for p in text.split("\n=== stage ")[1:]
                if p.split(" ===")[0].split(": ", 1)[1] == name)


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
    assert "-0.000" not in text and " 0.000" in stage(text, "block 0 feed-forward")
    assert stages.num(-0.0) == stages.num(-0.0004) == stages.num(0.0) == " 0.000"
    assert stages.vec(np.array([-0.0, 0.5, -0.25])) == "[ 0.000 +0.500 -0.250]"


def test_char_walk_says_character_and_its_rows_align(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    text = char_lm_walk()[1]
    assert "the next character at each position" in text and "vocabulary of 24 characters" in text
    assert "a score for every character" in stage(text, "LM head")
    assert "word" not in text
    rows = [r for r in stage(text, "positions").splitlines() if r.startswith("  t=")]
    assert len(rows) == 12 and len({r.index(" PE [") for r in rows}) == 1     # t=9 and t=10 align
    assert "t=10 " in rows[10]


def test_lm_walk_heatmaps_are_scaled_per_head(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    model, text = char_lm_walk()
    attention = stage(text, "block 0 attention")
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
    text = stage(char_lm_walk()[1], "optimizer update")
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
    digits_text = stage(digits_walk()[1], "optimizer update")
    assert "optimizer: Adam," in digits_text and "digits and sentences" in digits_text
    assert "lr = 0.001: constant" in digits_text and "beta2 = 0.999" in digits_text
