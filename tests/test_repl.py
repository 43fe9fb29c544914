"""Tests for the checkpoint REPL (glassformer.cli.repl, behind test_model_manually.py)."""
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glassformer.checkpoint import save_checkpoint
from glassformer.cli import repl
from glassformer.losses import CrossEntropyLoss
from glassformer.models import ModelConfig, build_model
from glassformer.optimizers import AdamW
from glassformer.tasks import digits, sentences

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "digits.npz"
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
    titles = re.findall(r"layer (\d)/2, head (\d)/2", out)
    assert titles == [("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")]


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
    assert out.index("attention view: on") < out.index("Max ( 5 3 9 ) ->") < out.index("layer 2/2")
    assert len(re.findall(r"layer 2/2, head \d/2", out)) == 2   # only the answer given while on
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


def test_ctrl_c_exits_cleanly(digits_ckpt):
    out, err = io.StringIO(), io.StringIO()
    assert repl.main(["--checkpoint", str(digits_ckpt)], stdin=CtrlC(), stdout=out, stderr=err) == 0
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
    assert "<START>" in out and "layer 1/1, head 2/2" in out


def test_sentences_unknown_word_lists_the_vocabulary(sentences_ckpt):
    rc, out, err = run(["--checkpoint", sentences_ckpt, "--expr", "the zebra"])
    assert_user_error(rc, out, err)
    assert "'zebra'" in err and all(w in err.split() for w in ("cat", "mat", "sang", "bird"))


def test_sentences_session(sentences_ckpt):
    rc, out, err = run(["--checkpoint", sentences_ckpt], stdin="a dog\nthe unicorn\nthe bird\n")
    assert rc == 0 and "sentences:" in out and "the bird | sang <END>" in out
    assert re.search(r"^a dog \| .*<END>$", out, re.M) and "'unicorn'" in err


def test_wrapper_script_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "test_model_manually.py"), "--checkpoint",
                           str(tmp_path / "missing.npz")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


@pytest.mark.skipif(not SHIPPED.exists(), reason="checkpoints/digits.npz not shipped yet")
def test_shipped_digits_checkpoint_answers_max():
    rc, out, _ = run(["--checkpoint", SHIPPED, "--expr", "Max ( 5 3 9 )"])
    assert rc == 0 and re.search(r"-> 9\s+\(correct answer: 9, right\)", out)
