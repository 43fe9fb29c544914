"""python -m glassformer.evaluate: every token scored once by the sliding window, perplexities, the CLI."""
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from glassformer import evaluate
from glassformer.cli import evaluate as evaluate_cli
from glassformer.checkpoint import save_checkpoint
from glassformer.data import count_words
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.models import build_model, lm_config
from glassformer.tokenizers import CharTokenizer
from datapaths import DATA

ROOT = Path(__file__).resolve().parents[2]
SHAKESPEARE = DATA / "tinyshakespeare" / "input.txt"
TEXT = "the cat sat on the mat. a dog ran to the cat.\n" * 6


def tiny_lm(vocab_size, max_len=8, seed=0):
    return build_model(lm_config("tiny", vocab_size, d_model=16, n_heads=2, n_layers=1, max_len=max_len),
                       np.random.default_rng(seed))


def brute_force_nll(model, tokens, context, stride):
    """Each target alone: the windows start at 0, stride, 2 stride, ... (and one ends at the end); a
    target is scored in the first window holding it, from the tokens of that window before it."""
    n = len(tokens) - 1
    T = min(context, n)
    starts = list(range(0, n - T + 1, min(stride, T)))
    if starts[-1] + T < n:
        starts.append(n - T)
    model.eval()
    loss, total = CrossEntropyLoss(), 0.0
    for p in range(1, n + 1):                               # the target tokens[p]
        s = next(s for s in starts if s + T >= p)
        logits = model.forward(np.asarray(tokens)[None, s:p])  # (1, p - s, V)
        total += float(loss.forward(logits[:, -1:], np.asarray(tokens)[None, p:p + 1]))
    return total


# ---- the sliding window -------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 16, 17, 23, 40])
@pytest.mark.parametrize("context, stride", [(8, 4), (8, 1), (8, 8), (8, 3), (8, 7), (1, 1), (5, 2)])
def test_sliding_windows_score_every_target_once_with_enough_context(n, context, stride):
    starts, done = evaluate.sliding_windows(n, context, stride)
    T = min(context, n)
    seen = []
    for i, (s, d) in enumerate(zip(starts, done)):
        scored = [p for p in range(s + 1, s + T + 1) if p > d]
        assert scored, f"window {i} at {s} scores nothing"
        left = [p - s for p in scored]                       # tokens read before predicting p
        assert max(left) <= T and (i == 0 or min(left) >= T - min(stride, T) + 1)
        seen += scored
    assert sorted(seen) == list(range(1, n + 1))             # each target exactly once
    assert starts[0] == 0 and starts[-1] + T == n            # the last window ends at the text's end


@pytest.mark.parametrize("n_tokens, context, stride", [(23, 8, 4), (23, 8, 1), (23, 8, 8), (8, 8, 4),
                                                       (9, 8, 4), (5, 8, 4), (2, 8, 4), (30, 8, 3)])
def test_score_tokens_equals_a_per_token_loop(n_tokens, context, stride, monkeypatch):
    model = tiny_lm(11, max_len=context)
    tokens = np.random.default_rng(1).integers(0, 11, n_tokens)
    want = brute_force_nll(model, tokens, context, stride)
    monkeypatch.setattr(evaluate, "LOGIT_FLOATS", 3 * context * 11)   # batches of 3 windows: chunks too
    model.train()
    total, n = evaluate.score_tokens(model, tokens, context, stride)
    assert n == n_tokens - 1 and total == pytest.approx(want, rel=1e-5)
    assert model.training                                    # left as it was found


def test_score_tokens_of_one_token_scores_nothing_and_bad_strides_are_refused():
    assert evaluate.score_tokens(tiny_lm(5), [3], 8, 4) == (0.0, 0)
    with pytest.raises(evaluate.UserError, match="stride"):
        evaluate.sliding_windows(10, 8, 0)


def test_word_level_perplexity_of_a_uniform_model_is_v_to_the_tokens_per_word(tmp_path):
    path = tmp_path / "wiki.test.tokens"                     # WikiText by its name
    path.write_text(" = Title = \n \n the cat sat \n on the mat \n", encoding="utf-8")
    words = 3 + 1 + 0 + 1 + 3 + 1 + 3 + 1                   # words + one <eos> per line
    assert count_words(path) == words
    model = tiny_lm(7)
    model.tok_emb.W[...] = 0                                 # tied head: every logit 0, p = 1/7
    tokens = np.arange(30) % 7
    report = evaluate.evaluate_tokens(model, tokens, 8, 4, words_of=path)
    assert report["tokens"] == 29 and report["loss"] == pytest.approx(math.log(7))
    assert report["ppl"] == pytest.approx(7)
    assert report["words"] == words and report["word_ppl"] == pytest.approx(7 ** (29 / words))
    plain = tmp_path / "plain.txt"
    plain.write_text("the cat\n", encoding="utf-8")
    assert "word_ppl" not in evaluate.evaluate_tokens(model, tokens, 8, 4, words_of=plain)


# ---- the command line ---------------------------------------------------------------------------

@pytest.fixture
def lm_checkpoint(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    model = tiny_lm(tok.vocab_size, max_len=16)
    path = tmp_path / "lm.npz"
    save_checkpoint(path, model, tokenizer=tok.to_dict(), task={"name": "lm"})
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    return path, model, tok, tmp_path / "text.txt"


def run(argv, capsys):
    code = evaluate_cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_prints_the_figures_and_json_matches_the_library(lm_checkpoint, capsys):
    path, model, tok, text = lm_checkpoint
    code, out, err = run([path, "--data", text], capsys)
    assert code == 0, err
    want = evaluate.evaluate_tokens(model, tok.encode(TEXT), 16, 8)
    assert f"perplexity {want['ppl']:.3f}" in out and f"{len(TEXT) - 1:,} tokens scored" in out
    assert "windows of 16 every 8" in out and "scored" in err   # progress on stderr
    code, out, _ = run([path, "--data", text, "--json", "--context", "10", "--stride", "3"], capsys)
    record = json.loads(out)
    assert code == 0 and len(out.splitlines()) == 1
    assert (record["context"], record["stride"], record["tokens"]) == (10, 3, len(TEXT) - 1)
    assert record["loss"] == pytest.approx(evaluate.score_tokens(model, tok.encode(TEXT), 10, 3)[0]
                                           / (len(TEXT) - 1), rel=1e-6)
    code, out, _ = run([path, "--data", text, "--json", "--max-tokens", "20"], capsys)
    assert code == 0 and json.loads(out)["tokens"] == 20 and "word_ppl" not in out


def test_a_run_folder_means_its_best_checkpoint(lm_checkpoint, capsys):
    path, _, _, text = lm_checkpoint
    path.rename(path.with_name("best.npz"))
    code, out, err = run([path.parent, "--data", text, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["tokens"] == len(TEXT) - 1


def test_a_hugging_face_folder_scores_as_the_checkpoint_it_was_exported_from(lm_checkpoint, tmp_path, capsys):
    from glassformer.export import export
    path, _, _, text = lm_checkpoint
    export(path, tmp_path / "hf", stdout=io.StringIO())
    (code, ours, _), (hf_code, theirs, err) = (run([p, "--data", text, "--json"], capsys)
                                                for p in (path, tmp_path / "hf"))
    assert code == hf_code == 0, err
    ours, theirs = json.loads(ours), json.loads(theirs)
    assert theirs["tokens"] == ours["tokens"] and theirs["loss"] == pytest.approx(ours["loss"], rel=1e-6)


@pytest.mark.parametrize("extra, says", [
    (["--stride", "20"], "--stride 20 is above --context 16"),
    (["--context", "40"], "--context 40 is longer than the model's 16 positions"),
    (["--context", "0"], "--context: 0 is not a whole number from 1 to 1,048,576"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_flags_exit_2_with_one_line(lm_checkpoint, capsys, extra, says):
    path, _, _, text = lm_checkpoint
    code, out, err = run([path, "--data", text, *extra], capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("error: ") and says in err


def test_bad_files_exit_2_with_one_line(lm_checkpoint, tmp_path, capsys):
    path, model, tok, text = lm_checkpoint
    digits = ROOT / "checkpoints" / "digits.npz"             # an encoder classifier
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    unknown = tmp_path / "greek.txt"
    unknown.write_text("αβγ", encoding="utf-8")
    short = tmp_path / "short.txt"
    short.write_text("t", encoding="utf-8")
    cases = [([path, "--data", tmp_path / "missing.txt"], "missing.txt"),
             ([digits, "--data", text], "not a language model"),
             ([junk, "--data", text], "junk.npz"),
             ([path, "--data", unknown], "greek.txt"),
             ([path, "--data", short], "nothing to score")]
    for argv, says in cases:
        code, out, err = run(argv, capsys)
        lines = [line for line in err.splitlines() if line.startswith("error")]
        assert code == 2 and out == "" and len(lines) == 1 and says in lines[0], (argv, err)


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="shared/data/tinyshakespeare is not here")
def test_the_shipped_checkpoint_scores_shakespeare_below_uniform(capsys):
    ckpt = ROOT / "checkpoints" / "shakespeare_char.npz"
    if not ckpt.exists():
        pytest.skip("checkpoints/shakespeare_char.npz not shipped")
    code, out, err = run([ckpt, "--data", SHAKESPEARE, "--max-tokens", "2000", "--json"], capsys)
    record = json.loads(out)
    assert code == 0 and record["tokens"] == 2000 and record["ppl"] < 65 / 4   # far below uniform


# ---- the held-out split: --split val, --from-fraction ---------------------------------------------

def test_split_val_scores_the_very_tokens_training_validated_on(lm_checkpoint, capsys):
    """--split val is the cut --task lm made (runner.lm_data.load_text: the last 10%), token for token."""
    from glassformer.runner.lm_data import load_text
    path, model, tok, text = lm_checkpoint
    corpus, _ = load_text({"data": str(text), "val_data": None, "test_data": None}, tok)
    tokens, first = evaluate.scored_part(evaluate.text_tokens(text, tok), "val")
    assert first == len(corpus.train) and np.array_equal(tokens, corpus.val) and 0 < len(tokens) < 40
    code, out, err = run([path, "--data", text, "--split", "val", "--json"], capsys)
    record = json.loads(out)
    want = evaluate.evaluate_tokens(model, np.asarray(corpus.val), 16, 8)
    assert code == 0 and (record["first_token"], record["tokens"]) == (first, len(corpus.val) - 1)
    assert record["loss"] == pytest.approx(want["loss"], rel=1e-6)
    assert "word_ppl" not in record                           # a part of the file: no word count


@pytest.mark.parametrize("fraction, says", [("-0.1", "-0.1 is not a number in [0, 1)"),
                                             ("1", "1 is not a number in [0, 1)"),
                                             ("1.5", "1.5 is not a number in [0, 1)"),
                                             ("nan", "'nan' is not a number in [0, 1) (it is not finite)"),
                                             ("abc", "'abc' is not a number")])
def test_a_bad_fraction_exits_2_with_one_line(lm_checkpoint, capsys, fraction, says):
    path, _, _, text = lm_checkpoint
    code, out, err = run([path, "--data", text, "--from-fraction", fraction], capsys)
    assert code == 2 and out == "" and err.startswith("error: ") and len(err.splitlines()) == 1
    assert "argument --from-fraction" in err and says in err


def test_split_and_from_fraction_are_one_choice(lm_checkpoint, capsys):
    path, _, _, text = lm_checkpoint
    code, _, err = run([path, "--data", text, "--split", "val", "--from-fraction", "0.5"], capsys)
    assert code == 2 and "not allowed with" in err


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="shared/data/tinyshakespeare is not here")
def test_split_val_and_from_fraction_0_9_agree_on_shakespeare(capsys):
    ckpt = ROOT / "checkpoints" / "shakespeare_char.npz"
    records = [json.loads(run([ckpt, "--data", SHAKESPEARE, "--max-tokens", "300", "--json", *part],
                              capsys)[1]) for part in (["--split", "val"], ["--from-fraction", "0.9"])]
    assert records[0] == {**records[1], "seconds": records[0]["seconds"]}
    assert (records[0]["first_token"], records[0]["text_tokens"]) == (1_003_855, 1_115_394)   # 10%
