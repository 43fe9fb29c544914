"""The checkpoint REPL, test_model_manually.py (glassformer.cli.repl, .handlers): in process, and as a user runs
it in a subprocess: streaming, Ctrl-C, --json, --num-samples, --prompt-file, special tokens, 80 columns."""
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
from glassformer.cli import repl
from glassformer.generate import TextStream, generate_text, generate_tokens
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.models import ModelConfig, build_model, lm_config
from glassformer.optim.optimizers import AdamW
from glassformer.tasks import digits, sentences
from glassformer.tokenizers import ByteLevelBPE, CharTokenizer, WordTokenizer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "test_model_manually.py")
SHIPPED = ROOT / "checkpoints" / "digits.npz"
BANNER_END = "type help for commands, quit to leave"
TOP3 = re.compile(r"top-3: (\d) (\d\.\d{3})  (\d) (\d\.\d{3})  (\d) (\d\.\d{3})")


def save_digits(path, nested=False):
    """An untrained 2-layer, 2-head digits classifier: behaviour, not accuracy, is tested.

    Header as train_step_by_step.py writes it (WordTokenizer dict, task fields beside "name"), or
    nested: {"type": "digits", "vocab": [...]} and {"name": "digits", "config": {...}}.
    """
    task = digits.DigitsConfig(size="small")
    cfg = ModelConfig(vocab_size=len(digits.VOCAB), d_model=16, n_heads=2, n_layers=2, d_ff=32,
                      max_len=task.seq_len)
    if nested:
        tokenizer, meta = {"type": "digits", "vocab": digits.VOCAB}, {"config": task.to_dict()}
    else:
        tokenizer = {"type": "word", "version": 1, "specials": digits.VOCAB[:2],
                     "words": digits.VOCAB[2:], "unk": None}
        meta = {**task.to_dict(), "operations": digits.OPERATIONS}
    return save_checkpoint(path, build_model(cfg, np.random.default_rng(0)), tokenizer=tokenizer,
                           task={"name": "digits", **meta})


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory):
    return save_digits(tmp_path_factory.mktemp("ckpt") / "digits.npz")


@pytest.fixture(scope="module")
def sentences_ckpt(tmp_path_factory):
    """A tiny decoder trained 150 steps on the eight sentences (under a second)."""
    vocab = sentences.vocabulary()
    cfg = ModelConfig(vocab_size=len(vocab), kind="decoder_lm", d_model=32, n_heads=2, n_layers=1,
                      d_ff=64, max_len=16)
    model = build_model(cfg, np.random.default_rng(0))
    x, y = sentences.dataset(vocab)
    opt = AdamW(model.get_parameters(), lr=1e-2, weight_decay=0.0)
    loss_fn = CrossEntropyLoss(ignore_index=sentences.PAD)
    for _ in range(150):
        opt.zero_grad()
        loss_fn.forward(model.forward(x), y)
        model.backward(loss_fn.backward())
        opt.step()
    path = tmp_path_factory.mktemp("ckpt") / "sentences.npz"
    return save_checkpoint(path, model, tokenizer={"type": "word", "vocab": vocab},
                           task={"name": "sentences"})


def run(argv, stdin=""):
    """(exit status, stdout, stderr) of one main() call, without a terminal."""
    out, err = io.StringIO(), io.StringIO()
    rc = repl.main([str(a) for a in argv], stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def assert_user_error(rc, out, err):
    assert rc == 2
    assert err.startswith("error:") and "Traceback" not in err + out


def test_expr_prints_digit_top3_and_correct_answer(digits_ckpt):
    rc, out, err = run(["--checkpoint", digits_ckpt, "--expr", "Max ( 5 3 9 )"])
    assert rc == 0 and err == ""
    pred = re.search(r"Max \( 5 3 9 \) -> (\d)\s+\(correct answer: 9, (right|WRONG)\)", out)
    assert pred
    m = TOP3.search(out)
    assert m
    probs = [float(p) for p in m.groups()[1::2]]
    assert m.group(1) == pred.group(1)                      # the prediction is the top-1 digit
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-3
    assert len(set(m.groups()[0::2])) == 3
    assert "attention" not in out                           # off unless asked for


def test_expr_is_tolerant_of_case_commas_and_spacing(digits_ckpt):
    rc, out, _ = run(["--checkpoint", digits_ckpt, "--expr", "max(5,3,9)"])
    assert rc == 0 and "Max ( 5 3 9 ) ->" in out and "correct answer: 9" in out


def test_nested_task_config_and_vocab_header(tmp_path):
    path = save_digits(tmp_path / "nested.npz", nested=True)
    rc, out, _ = run(["--checkpoint", path, "--expr", "Last(2 8)"])
    assert rc == 0 and "correct answer: 8" in out and TOP3.search(out)


def test_expr_with_fewer_arguments_is_padded(digits_ckpt):
    rc, out, _ = run(["--checkpoint", digits_ckpt, "--expr", "first(7)", "--attention", "on"])
    assert rc == 0 and "First ( 7 ) ->" in out and "correct answer: 7" in out
    assert "[PAD]" in out                                   # the heatmap shows every position


def test_attention_all_shows_every_layer_and_head(digits_ckpt):
    rc, out, _ = run(["--checkpoint", digits_ckpt, "--expr", "Min(4 1 7)", "--attention", "all"])
    assert rc == 0
    titles = re.findall(r"block (\d), head (\d)", out)              # from 0, as the walk and PNGs
    assert titles == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]


@pytest.mark.parametrize("expr, words", [("Mean(1 2 3)", "unknown operation"),
                                         ("Max(5, a, 9)", "single digits"),
                                         ("Max 5 3 9", "parentheses"),
                                         ("Max(1 2 3 4 5)", "more than"),
                                         ("Max(5 $ 9)", "unexpected character")])
def test_bad_expression_exits_2_with_one_message(digits_ckpt, expr, words):
    rc, out, err = run(["--checkpoint", digits_ckpt, "--expr", expr])
    assert_user_error(rc, out, err)
    assert words in err and len(err.strip().splitlines()) == 1


def test_missing_checkpoint_file(tmp_path):
    rc, out, err = run(["--checkpoint", tmp_path / "nope.npz", "--expr", "Max(1 2 3)"])
    assert_user_error(rc, out, err)
    assert "nope.npz" in err and "train_step_by_step.py" in err


def test_missing_default_checkpoint_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(["--expr", "Max(1 2 3)"])
    assert_user_error(rc, out, err)
    assert "checkpoints/digits.npz" in err and "train_step_by_step.py --task digits" in err
    assert "--checkpoint" in err


def test_corrupt_checkpoint_file(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(np.random.default_rng(0).bytes(500))
    assert_user_error(*run(["--checkpoint", path, "--expr", "Max(1 2 3)"]))


def test_truncated_checkpoint_file(tmp_path, digits_ckpt):
    path = tmp_path / "cut.npz"
    path.write_bytes(digits_ckpt.read_bytes()[:-100])
    assert_user_error(*run(["--checkpoint", path, "--expr", "Max(1 2 3)"]))


def test_npz_that_is_not_a_glassformer_checkpoint(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3))
    rc, out, err = run(["--checkpoint", path])
    assert_user_error(rc, out, err)
    assert "not a glassformer checkpoint" in err


def test_unknown_task_names_the_known_ones(tmp_path):
    cfg = ModelConfig(vocab_size=5, d_model=8, n_heads=2, n_layers=1, d_ff=8, max_len=4)
    path = save_checkpoint(tmp_path / "chess.npz", build_model(cfg, np.random.default_rng(0)),
                           task={"name": "chess"})
    rc, out, err = run(["--checkpoint", path, "--expr", "e4"])
    assert_user_error(rc, out, err)
    assert "'chess'" in err and "digits" in err and "sentences" in err


def test_bad_flag_values_exit_2(digits_ckpt):
    assert_user_error(*run(["--checkpoint", digits_ckpt, "--max-new-tokens", "0"]))
    assert repl.main(["--attention", "sideways"], stdout=io.StringIO(), stderr=io.StringIO()) == 2


def test_scripted_session(digits_ckpt):
    script = "help\nattention on\nMax ( 5 3 9 )\nattention off\ngarbage\n\nmin(4,1,7)\nquit\nLast(1 2)\n"
    rc, out, err = run(["--checkpoint", digits_ckpt], stdin=script)
    assert rc == 0
    assert "commands:" in out and "attention on|all|off" in out
    assert "attention view: on" in out and "attention view: off" in out
    assert out.index("attention view: on") < out.index("Max ( 5 3 9 ) ->") < out.index("block 1, head 0")
    assert len(re.findall(r"block 1, head \d", out)) == 2   # only the answer given while on
    assert "Min ( 4 1 7 ) ->" in out                          # the loop went on after the error
    assert "Last ( 1 2 )" not in out                          # nothing read after quit
    assert err.count("error:") == 1 and "unknown operation 'garbage'" in err
    assert "expr>" not in out                                 # no prompt without a terminal


def test_bad_attention_command_is_an_error_and_the_loop_continues(digits_ckpt):
    rc, out, err = run(["--checkpoint", digits_ckpt], stdin="attention maybe\nexit\n")
    assert rc == 0 and "attention 'maybe'" in err and "attention view" not in out


class TTY(io.StringIO):
    def isatty(self):
        return True


class CtrlC(io.StringIO):
    def readline(self, *args):
        raise KeyboardInterrupt


def test_prompt_only_at_a_terminal_and_eof_exits(digits_ckpt):
    out = io.StringIO()
    rc = repl.main(["--checkpoint", str(digits_ckpt)], stdin=TTY("Max(1 2 3)\n"), stdout=out,
                   stderr=io.StringIO())
    assert rc == 0 and out.getvalue().count("expr> ") == 2      # before the line, then EOF


def test_lm_prompt_at_a_terminal(lm_ckpt):
    for flags, prompt in (([], "text> "), (["--chat"], "question> ")):
        out = io.StringIO()
        rc = repl.main(["--checkpoint", str(lm_ckpt[0]), "--max-new-tokens", "2", *flags],
                       stdin=TTY("hi\n"), stdout=out, stderr=io.StringIO())
        assert rc == 0 and out.getvalue().count(prompt) == 2


def test_ctrl_c_at_the_prompt_exits_130_quietly(digits_ckpt):
    out, err = io.StringIO(), io.StringIO()                 # 130, as Ctrl-C anywhere else; Ctrl-D: 0
    assert repl.main(["--checkpoint", str(digits_ckpt)], stdin=CtrlC(), stdout=out, stderr=err) == 130
    assert err.getvalue() == ""


def test_sentences_continue_a_prefix_until_end(sentences_ckpt):
    rc, out, err = run(["--checkpoint", sentences_ckpt, "--expr", "the bird"])
    assert rc == 0 and err == ""
    assert out.strip() == "the bird | sang <END>"


def test_sentences_max_new_tokens_and_attention(sentences_ckpt):
    rc, out, _ = run(["--checkpoint", sentences_ckpt, "--expr", "The", "--max-new-tokens", "2",
                      "--attention", "on"])
    assert rc == 0
    first = out.splitlines()[0]
    assert first.startswith("the | ") and first.endswith("(stopped after 2 new words)")
    assert len(first.split("|")[1].split()) == 2 + 5          # two words, then "(stopped after 2 new words)"
    assert "<START>" in out and "block 0, head 1" in out


def test_sentences_unknown_word_lists_the_vocabulary(sentences_ckpt):
    rc, out, err = run(["--checkpoint", sentences_ckpt, "--expr", "the zebra"])
    assert_user_error(rc, out, err)
    assert "'zebra'" in err and all(w in err.split() for w in ("cat", "mat", "sang", "bird"))


def test_sentences_session(sentences_ckpt):
    rc, out, err = run(["--checkpoint", sentences_ckpt], stdin="a dog\nthe unicorn\nthe bird\n")
    assert rc == 0 and "sentences:" in out and "the bird | sang <END>" in out
    assert re.search(r"^a dog \| .*<END>$", out, re.M) and "'unicorn'" in err


class ClosedPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_closed_pipe_ends_quietly(lm_ckpt):              # e.g. test_model_manually.py ... | head
    err = io.StringIO()
    rc = repl.main(["--checkpoint", str(lm_ckpt[0]), "--prompt", "hi", "--max-new-tokens", "2"],
                   stdout=ClosedPipe(), stderr=err)
    assert rc == 0 and err.getvalue() == ""


def test_wrapper_script_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "test_model_manually.py"), "--checkpoint",
                           str(tmp_path / "missing.npz")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


@pytest.mark.skipif(not SHIPPED.exists(), reason="checkpoints/digits.npz not shipped yet")
def test_shipped_digits_checkpoint_answers_max():
    rc, out, _ = run(["--checkpoint", SHIPPED, "--expr", "Max ( 5 3 9 )"])
    assert rc == 0 and re.search(r"-> 9\s+\(correct answer: 9, right\)", out)


# ---- language-model checkpoints (task "lm") ---------------------------------------------------

LM_SHIPPED = ROOT / "checkpoints" / "shakespeare_char.npz"
LM_TEXT = "Question: who is it?\nAnswer: a cat.\nROMEO: hi there!\n"


def char_lm(path, specials=(), max_len=32, favour=None):
    """Save an untrained 1-layer char LM; favour=token makes that token's logit win every time."""
    tok = CharTokenizer.from_text(LM_TEXT, specials=specials)
    cfg = lm_config("tiny", tok.vocab_size, d_model=16, n_heads=2, n_layers=1, max_len=max_len,
                    tie_weights=favour is None)
    model = build_model(cfg, np.random.default_rng(0))
    if favour is not None:                                  # h[0] = LN(x)[0] + 10; W[0, favour] = 10
        model.ln_f.beta[0] = 10.0
        model.head.W[0, tok.token_id(favour)] = 10.0
    save_checkpoint(path, model, tokenizer=tok.to_dict(), task={"name": "lm", "context": max_len})
    return path, model, tok


@pytest.fixture(scope="module")
def lm_ckpt(tmp_path_factory):
    """(path, model, tokenizer) of an untrained 1-layer char LM, saved as --task lm saves one."""
    return char_lm(tmp_path_factory.mktemp("ckpt") / "lm.npz")


def greedy(lm_ckpt, prompt, n):
    from glassformer.generate import generate_text
    _, model, tok = lm_ckpt
    return generate_text(model, tok, prompt, n, temperature=0)


def test_lm_prompt_answers_once_and_expr_is_an_alias(lm_ckpt):
    argv = ["--checkpoint", lm_ckpt[0], "--temperature", "0", "--max-new-tokens", "7"]
    rc, out, err = run(argv + ["--prompt", "ROMEO:"], stdin="hi\n")
    assert rc == 0 and err == ""
    assert out.splitlines() == ["ROMEO:" + greedy(lm_ckpt, "ROMEO:", 7), "(7 new tokens)"]
    assert run(argv + ["--expr", "ROMEO:"]) == (rc, out, err)


def test_lm_sampling_is_seeded(lm_ckpt):
    argv = ["--checkpoint", lm_ckpt[0], "--prompt", "a", "--max-new-tokens", "30", "--temperature", "2"]
    a, b, c = run(argv), run(argv), run(argv + ["--seed", "1"])
    assert a == b and a[0] == 0 and a[1] != c[1]


def test_lm_chat_wraps_the_input_as_a_question(lm_ckpt, monkeypatch):
    from glassformer.cli import handlers
    sent, generate = [], handlers.stream_tokens
    monkeypatch.setattr(handlers, "stream_tokens", lambda model, ids, *a, **k: sent.append(list(ids))
                        or generate(model, ids, *a, **k))
    rc, out, err = run(["--checkpoint", lm_ckpt[0], "--chat", "--prompt", "who is it?",
                        "--temperature", "0", "--max-new-tokens", "6"])
    assert rc == 0 and err == ""
    assert lm_ckpt[2].decode(sent[0]) == "Question: who is it?\nAnswer:"
    answer = greedy(lm_ckpt, "Question: who is it?\nAnswer:", 6).split("\nQuestion:")[0].strip()
    assert out.splitlines() == [answer, "(6 new tokens)"]      # the answer only, not the question
    del sent[:]
    rc, out, _ = run(["--checkpoint", lm_ckpt[0], "--chat"], stdin="help\nwho?\n")
    assert rc == 0 and out.startswith("chat: type a question") and len(sent) == 1
    assert lm_ckpt[2].decode(sent[0]) == "Question: who?\nAnswer:"


def test_chat_is_only_for_lm_checkpoints(digits_ckpt):
    rc, out, err = run(["--checkpoint", digits_ckpt, "--chat"])
    assert_user_error(rc, out, err)
    assert "--chat is for language-model" in err and len(err.splitlines()) == 1


def test_lm_set_commands_change_the_sampling(lm_ckpt):
    script = ("set\nset temperature 0\nset max_tokens 5\nset\nROMEO:\n"
              "set temperature 5\nset top_k 1\nROMEO:\n"            # top-k 1: greedy at any temperature
              "set top_k off\nset top-p 1e-9\nROMEO:\n"              # top-p tiny: only the likeliest
              "set top_p off\nset\nquit\nROMEO:\n")
    rc, out, err = run(["--checkpoint", lm_ckpt[0]], stdin=script)
    assert rc == 0 and err == ""
    lines = out.splitlines()
    lines = lines[lines.index(BANNER_END) + 1:]             # the banner wraps at the terminal's width
    assert lines[0] == "temperature 0.8, top_k off, top_p off, max_tokens 200"   # the lm defaults
    assert lines[1:4] == ["temperature 0.0", "max_tokens 5",
                          "temperature 0.0, top_k off, top_p off, max_tokens 5"]
    answer = "ROMEO:" + greedy(lm_ckpt, "ROMEO:", 5)
    assert lines.count(answer) == 3 and lines.count("(5 new tokens)") == 3
    assert "top_k 1" in lines and "top_k off" in lines and "top_p 1e-09" in lines
    assert lines[-1] == "temperature 5.0, top_k off, top_p off, max_tokens 5"


@pytest.mark.parametrize("command, words", [
    ("set temperature -1", "temperature must be a number in [0.0001, 100] or 0 (0 = greedy)"),
    ("set temperature hot", "temperature must be"), ("set temperature nan", "temperature must be"),
    ("set top_k 0", "top_k must be a whole number from 1 to 2,147,483,647 or off"),
    ("set top_k 2.5", "top_k must be"),
    ("set top_p 1.5", "top_p must be a number in (0, 1]"), ("set top_p 0", "top_p must be"),
    ("set max_tokens 0", "max_tokens must be a whole number from 1 to 100,000"),
    ("set max_tokens 100001", "from 1 to 100,000"), ("set max_tokens x", "max_tokens"),
    ("set colour red", "unknown setting 'colour'"), ("set temperature", "use set NAME VALUE"),
    ("set top_k 1 2", "use set NAME VALUE")])
def test_lm_bad_set_is_one_error_and_the_loop_goes_on(lm_ckpt, command, words):
    rc, out, err = run(["--checkpoint", lm_ckpt[0]], stdin=f"{command}\nset\n")
    assert rc == 0 and err.startswith("error: ") and words in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert out.splitlines()[-1] == "temperature 0.8, top_k off, top_p off, max_tokens 200"  # unchanged


def test_lm_help_lists_the_set_commands_digits_help_does_not(lm_ckpt, digits_ckpt):
    _, out, _ = run(["--checkpoint", lm_ckpt[0]], stdin="help\nclear\nexit\nROMEO:\n")
    assert "set temperature T" in out and "set max_tokens N" in out and "quit, exit" in out
    assert "new tokens" not in out                            # nothing answered after exit
    rc, out, err = run(["--checkpoint", digits_ckpt], stdin="help\nset temperature 0\n")
    assert rc == 0 and "set temperature" not in out and "nothing to set" in err


def test_lm_unknown_character_names_the_known_ones(lm_ckpt):
    rc, out, err = run(["--checkpoint", lm_ckpt[0], "--max-new-tokens", "2"], stdin="Zoë\nhi\n")
    assert rc == 0 and len(err.splitlines()) == 1
    assert "'Zë'" in err and "Question" not in err and "!" in err
    assert "(2 new tokens)" in out                            # the next line was answered


def test_ctrl_c_during_a_reply_keeps_what_was_printed_and_the_loop_goes_on(lm_ckpt, monkeypatch):
    from glassformer.cli import handlers
    calls, generate = [], handlers.stream_tokens

    def interrupted_once(model, *a, **k):                  # Ctrl-C after the third new token
        calls.append(1)
        tokens = generate(model, *a, **k)
        if len(calls) > 1:
            return tokens
        return (i if n < 3 else (_ for _ in ()).throw(KeyboardInterrupt) for n, i in enumerate(tokens))
    monkeypatch.setattr(handlers, "stream_tokens", interrupted_once)
    argv = ["--checkpoint", lm_ckpt[0], "--max-new-tokens", "5", "--temperature", "0"]
    rc, out, err = run(argv, stdin="hi\nhi\n")
    assert rc == 0 and err == ""
    first = "hi" + greedy(lm_ckpt, "hi", 5)
    assert out.split(BANNER_END + "\n")[1].splitlines() == [first[:5], "(stopped)", first,
                                                           "(5 new tokens)"]
    calls.clear()
    assert run(argv + ["--prompt", "hi"])[:2] == (130, first[:5] + "\n(stopped)\n")


def test_lm_attention_view_labels_the_tokens(lm_ckpt):
    rc, out, _ = run(["--checkpoint", lm_ckpt[0], "--prompt", "hi there", "--max-new-tokens", "2",
                      "--attention", "on"])
    assert rc == 0 and "block 0, head 1" in out
    assert "\u2423" in out                                   # the space of "hi there", made visible


@pytest.mark.skipif(not LM_SHIPPED.exists(), reason="checkpoints/shakespeare_char.npz not shipped")
def test_shipped_shakespeare_checkpoint_continues_romeo():
    argv = ["--checkpoint", LM_SHIPPED, "--prompt", "ROMEO:", "--max-new-tokens", "40"]
    rc, out, err = run(argv + ["--temperature", "0"])
    assert rc == 0 and err == ""
    first, note = out.splitlines()[0], out.splitlines()[-1]
    assert first.startswith("ROMEO:") and note == "(40 new tokens)"
    assert len(out) == len("ROMEO:") + 40 + len("\n(40 new tokens)\n")   # 40 characters added
    assert run(argv + ["--temperature", "0"]) == (rc, out, err)          # greedy: the same every time
    rc, out, _ = run(["--checkpoint", LM_SHIPPED, "--chat", "--temperature", "0",
                      "--max-new-tokens", "20"], stdin="set\nWho art thou?\n")
    assert rc == 0 and "max_tokens 20" in out and "(20 new tokens)" in out


# ---- streaming, --json, --num-samples -----------------------------------------------------------

def test_chat_answer_streamed_in_pieces_is_the_whole_reply_cut_and_stripped():
    from glassformer.cli.handlers import NEXT_QUESTION, ChatAnswer
    rng = np.random.default_rng(0)
    parts = [" ", "\n", "a", "b c", "\nQ", "Question", ":", "\nQuestion:", "Ques", "\nQues"]
    for _ in range(2000):
        body = "".join(rng.choice(parts, size=rng.integers(0, 9)))
        cuts = sorted(rng.integers(0, len(body) + 1, size=rng.integers(0, 5)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
        answer, shown = ChatAnswer(), []
        for piece in pieces:
            shown.append(answer.push(piece))
            if answer.done:
                break
        else:
            shown.append(answer.flush())
        assert "".join(shown) == body.split(NEXT_QUESTION)[0].strip(), (body, pieces)


class Writes(io.StringIO):
    """A stream that counts the writes that end in a flush (what a terminal shows at once)."""

    def __init__(self):
        super().__init__()
        self.flushed = []

    def flush(self):
        self.flushed.append(self.getvalue())


def test_lm_reply_is_flushed_token_by_token(lm_ckpt):
    out = Writes()
    rc = repl.main(["--checkpoint", str(lm_ckpt[0]), "--prompt", "hi", "--temperature", "0",
                    "--max-new-tokens", "10"], stdout=out, stderr=io.StringIO())
    whole = "hi" + greedy(lm_ckpt, "hi", 10)
    assert rc == 0 and out.getvalue() == whole + "\n(10 new tokens)\n"
    shown = [s for s in out.flushed if s and not s.endswith("\n")]   # mid-reply states
    assert len(shown) >= 10 and all(whole.startswith(s) for s in shown)


def test_sentences_stream_word_by_word_and_json(sentences_ckpt):
    out = Writes()
    rc = repl.main(["--checkpoint", str(sentences_ckpt), "--prompt", "the bird"], stdout=out,
                   stderr=io.StringIO())
    assert rc == 0 and out.getvalue() == "the bird | sang <END>\n"
    assert "the bird |" in out.flushed and "the bird | sang" in out.flushed
    rc, text, _ = run(["--checkpoint", sentences_ckpt, "--prompt", "the bird", "--json"])
    record = json.loads(text)
    assert rc == 0 and record["text"] == "sang" and record["ended"] and record["sample"] == 1
    assert record["settings"]["temperature"] == 0.0 and record["prompt_ids"][0] == sentences.START


def test_digits_json_and_num_samples(digits_ckpt):
    rc, out, _ = run(["--checkpoint", digits_ckpt, "--expr", "Max(5 3 9)", "--json"])
    record = json.loads(out)
    assert rc == 0 and record["correct_answer"] == 9 and len(record["probabilities"]) == 10
    assert record["prediction"] == int(np.argmax(record["probabilities"]))
    rc, out, err = run(["--checkpoint", digits_ckpt, "--expr", "Max(5 3 9)", "--num-samples", "2"])
    assert_user_error(rc, out, err)
    assert "--num-samples is for sentences and lm" in err


def test_num_samples_prints_each_sample(lm_ckpt):
    rc, out, _ = run(["--checkpoint", lm_ckpt[0], "--prompt", "a", "--num-samples", "2",
                      "--max-new-tokens", "3", "--temperature", "2"])
    assert rc == 0 and out.startswith("[sample 1/2]\na") and out.endswith("(3 new tokens)\n")
    first, second = out.split("[sample 2/2]\n")
    assert first.endswith("(3 new tokens)\n") and second.startswith("a") and first != "[sample 1/2]\n" + second


def test_json_loop_prints_only_json_lines(lm_ckpt):
    rc, out, err = run(["--checkpoint", lm_ckpt[0], "--json", "--max-new-tokens", "2"], stdin="hi\nho\n")
    assert rc == 0 and err == ""
    assert [json.loads(line)["prompt"] for line in out.splitlines()] == ["hi", "ho"]


# ---- test_model_manually.py as a user runs it (subprocesses) ----------------------------------------

def script(*argv, stdin="", env=None, timeout=30):
    """(exit status, stdout, stderr) of the real script."""
    proc = subprocess.run([sys.executable, SCRIPT, *map(str, argv)], input=stdin, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return proc.returncode, proc.stdout, proc.stderr


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


def test_reply_streams_and_ctrl_c_keeps_what_was_printed(lm_ckpt):
    greedy = "hi" + generate_text(lm_ckpt[1], lm_ckpt[2], "hi", 400, temperature=0)
    proc = start(["--checkpoint", lm_ckpt[0], "--prompt", "hi", "--temperature", "0",
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


def test_ctrl_c_in_the_loop_stops_one_reply_and_the_loop_goes_on(lm_ckpt):
    proc = start(["--checkpoint", lm_ckpt[0], "--temperature", "0", "--max-new-tokens", "100000"],
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
    assert lines[stop + 1:] == ["max_tokens 3", "hi" + generate_text(lm_ckpt[1], lm_ckpt[2], "hi", 3, temperature=0),
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

def test_json_lines_hold_ids_text_and_settings(lm_ckpt):
    argv = ["--checkpoint", lm_ckpt[0], "--prompt", "ROMEO:", "--json", "--num-samples", "3",
            "--temperature", "1.5", "--top-k", "5", "--max-new-tokens", "12", "--seed", "7"]
    rc, out, err = script(*argv)
    assert rc == 0 and err == ""
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["sample"] for r in records] == [1, 2, 3]
    for r in records:
        assert r["prompt"] == "ROMEO:" and r["prompt_ids"] == lm_ckpt[2].encode("ROMEO:")
        assert len(r["new_ids"]) == 12 and r["text"] == lm_ckpt[2].decode(r["new_ids"])
        assert r["settings"] == {"temperature": 1.5, "top_k": 5, "top_p": None, "max_tokens": 12,
                                 "seed": 7, "chat": False}
    assert len({r["text"] for r in records}) == 3             # three draws of one seeded stream
    assert script(*argv)[1] == out                            # the same seed, the same samples


def test_prompt_file_is_the_whole_prompt(lm_ckpt, tmp_path):
    path = tmp_path / "prompt.txt"
    path.write_text("Question: who?\nAnswer:", encoding="utf-8")
    rc, out, _ = script("--checkpoint", lm_ckpt[0], "--prompt-file", path, "--json", "--temperature", "0",
                        "--max-new-tokens", "4")
    record = json.loads(out)
    assert rc == 0 and record["prompt"] == "Question: who?\nAnswer:"
    assert record["text"] == generate_text(lm_ckpt[1], lm_ckpt[2], "Question: who?\nAnswer:", 4, temperature=0)
    rc, out, err = script("--checkpoint", lm_ckpt[0], "--prompt-file", tmp_path / "none.txt")
    assert rc == 2 and err.startswith("error: --prompt-file") and "Traceback" not in err
    rc, _, err = script("--checkpoint", lm_ckpt[0], "--prompt-file", path, "--prompt", "hi")
    assert rc == 2 and "not allowed with" in err


@pytest.mark.parametrize("flags, words", [(["--max-new-tokens", "100001"], "from 1 to 100,000"),
                                          (["--max-new-tokens", "0"], "from 1 to 100,000"),
                                          (["--num-samples", "0"],
                                           "--num-samples: 0 is not a whole number from 1 to 10,000"),
                                          (["--json", "--attention", "on"], "drop --attention")])
def test_out_of_range_flags_exit_2_with_one_line(lm_ckpt, flags, words):
    rc, out, err = script("--checkpoint", lm_ckpt[0], "--prompt", "hi", *flags)
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


def test_attention_rows_fit_80_columns_and_say_which_window(lm_ckpt):
    rc, out, _ = script("--checkpoint", lm_ckpt[0], "--prompt", "hi", "--max-new-tokens", "60",
                        "--attention", "all", env={"COLUMNS": "80"})
    lines = out.splitlines()
    assert rc == 0 and max(map(len, lines)) <= 80
    assert re.search(r"\(last (\d+) of 32 tokens shown: positions (\d+)\.\.61\)", out)
    rc, wide, _ = script("--checkpoint", lm_ckpt[0], "--prompt", "hi", "--max-new-tokens", "60",
                         "--attention", "on", env={"COLUMNS": "200"})
    assert max(map(len, wide.splitlines())) > 80 and "tokens shown" not in wide


def test_banner_and_help_fit_80_columns(lm_ckpt, tmp_path):
    vocab = sentences.vocabulary()                          # its banner lists every known word
    model = build_model(ModelConfig(vocab_size=len(vocab), kind="decoder_lm", d_model=8, n_heads=2,
                                    n_layers=1, d_ff=8, max_len=16), np.random.default_rng(0))
    words = WordTokenizer(vocab[len(sentences.SPECIALS):], specials=sentences.SPECIALS)
    path = save_checkpoint(tmp_path / "s.npz", model, tokenizer=words.to_dict(), task={"name": "sentences"})
    for ckpt in (path, lm_ckpt[0]):
        rc, out, _ = script("--checkpoint", ckpt, stdin="help\n", env={"COLUMNS": "80"})
        assert rc == 0 and "commands:" in out and max(map(len, out.splitlines())) <= 80
