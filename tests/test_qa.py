"""--task qa: Q&A pairs read and checked, the chat template, answer-only loss, mixing, exact match."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glassformer.checkpoint import load_checkpoint
from glassformer.cli import handlers, repl, train
from glassformer.runner import qa
from glassformer.errors import UserError
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.models import build_model, lm_config
from glassformer.tasks import qa as pairs_mod
from glassformer.tasks.qa import CHAT_TEMPLATE, QAPair, mask_prompt, masked_example, read_pairs
from glassformer.tokenizers import tokenizer_from_dict
from glassformer.train.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
COLOURS = ["red", "green", "blue", "yellow", "black", "white", "pink", "grey"]
TINY = ["--context", "48", "--batch-size", "2", "--eval-interval", "2", "--eval-batches", "2",
        "--no-interactive"]


def facts(n, seed=0):
    """n made-up facts: "colour of item k?" -> a colour."""
    rng = np.random.default_rng(seed)
    return [{"question": f"colour of item {chr(97 + i)}?", "answer": str(rng.choice(COLOURS))}
            for i in range(n)]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def tiny_lm(vocab_size, max_len=48, seed=0):
    return build_model(lm_config("tiny", vocab_size, d_model=32, n_heads=2, n_layers=1, max_len=max_len),
                       np.random.default_rng(seed))


def char_tokenizer(pairs):
    return qa.qa_tokenizer({"tokenizer": "char", "mix_data": None}, pairs, io.StringIO())


# ---- files ----------------------------------------------------------------------------------

def test_jsonl_and_tsv_pairs_are_read_with_where_they_came_from(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_bytes(b'{"question": " Who? ", "answer": "me"}\r\n\n'
                     b'{"question": "Why", "answer": "so", "x": 1}\n')
    assert read_pairs(path) == [QAPair("Who?", "me", f"{path}:1"), QAPair("Why", "so", f"{path}:3")]
    tsv = tmp_path / "qa.tsv"
    tsv.write_text("question\tanswer\nWho?\tme\n\nWhy\tso", encoding="utf-8")   # a header is skipped
    assert [(p.question, p.answer, p.where) for p in read_pairs(tsv)] == \
        [("Who?", "me", f"{tsv}:2"), ("Why", "so", f"{tsv}:4")]


@pytest.mark.parametrize("name, body, says", [
    ("a.jsonl", '{"question": "q", "answer": "a"}\n{"question": "q"\n', "a.jsonl:2: not valid JSON"),
    ("a.jsonl", '["q", "a"]\n', "a.jsonl:1: a JSON list, not an object"),
    ("a.jsonl", "[" * 100_000, "a.jsonl:1: not valid JSON (nested too deeply)"),          # found by fuzzing
    ("a.jsonl", '{"question": ' + "1" * 5000 + "}", "a.jsonl:1: not valid JSON (a number too long"),
    ("a.jsonl", '{"question": "q"}\n', "a.jsonl:1: no 'answer' field"),
    ("a.jsonl", '{"question": 3, "answer": "a"}\n', "a.jsonl:1: a int, not a string, as 'question'"),
    ("a.jsonl", '{"question": "q", "answer": "  "}\n', "a.jsonl:1: the answer is empty"),
    ("a.jsonl", '{"question": "q", "answer": "two\\nlines"}\n', "a.jsonl:1: the answer holds a line break"),
    ("a.tsv", "q\ta\nq only\n", "a.tsv:2: 1 tab-separated field, expected 2"),
    ("a.tsv", "q\ta\tb\n", "a.tsv:1: 3 tab-separated fields, expected 2"),
    ("a.tsv", b"q\ta\nq\t\xff\n", "a.tsv:2: not UTF-8"),
    ("a.tsv", "\n\n", "a.tsv: no question-answer pairs"),
    ("a.txt", "q\ta\n", "a.txt: Q&A pairs come in a .jsonl file"),
])
def test_a_bad_line_is_one_user_error_naming_file_and_line(tmp_path, name, body, says):
    path = tmp_path / name
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    with pytest.raises(UserError) as e:
        read_pairs(path)
    assert str(e.value).startswith(str(tmp_path)) and says in str(e.value)


def test_the_cli_turns_a_bad_file_into_exit_2_and_one_line_before_any_run_folder(tmp_path, capsys,
                                                                                 monkeypatch):
    bad = tmp_path / "qa.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"answer": "a"}\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for argv, says in (([], f"{bad}:2: no 'question' field"),
                       (["--mix-ratio", "0.5"], "--mix-ratio needs --mix-data"),
                       (["--mix-ratio", "1"], "--mix-ratio")):
        code = train.main(["--task", "qa", "--data", str(bad), *TINY, *argv])
        err = capsys.readouterr().err
        assert code == 2 and len(err.splitlines()) == 1 and says in err, err
    code = train.main(["--task", "lm", "--data", str(bad), "--mix-data", str(bad), *TINY])
    assert code == 2 and "--mix-data is for qa, not lm" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# ---- template and masking --------------------------------------------------------------------

def test_the_chat_and_the_training_share_one_template():
    assert handlers.CHAT_TEMPLATE is CHAT_TEMPLATE and handlers.NEXT_QUESTION is pairs_mod.NEXT_QUESTION
    text = pairs_mod.prompt_text("Who?") + pairs_mod.answer_text("me")
    assert text == CHAT_TEMPLATE.format(input="Who?") + " me\n"
    assert pairs_mod.answer_of(" me\nQuestion: next") == "me" == pairs_mod.answer_of("  me ")


def test_the_loss_counts_answer_tokens_only():
    pairs = [QAPair("Who is it?", "me", "x:1")]
    tok = char_tokenizer(pairs)
    prompt = tok.encode(pairs_mod.prompt_text("Who is it?"))
    answer = tok.encode(" me\n") + [tok.token_id("<eos>")]
    x, y = masked_example(prompt, answer)
    full = (prompt + answer)[1:]                             # every next token, unmasked
    assert x == (prompt + answer)[:-1] and y == mask_prompt(full, len(prompt))
    model, loss_fn = tiny_lm(tok.vocab_size), CrossEntropyLoss(ignore_index=-1)
    model.eval()
    logits = model.forward(np.array([x]))

    def loss(targets):
        return float(loss_fn.forward(logits, np.array([mask_prompt(targets, len(prompt))])))

    base = loss(full)
    for q in range(len(prompt) - 1):                         # a question token's target changed
        changed = list(full)
        changed[q] = (changed[q] + 1) % tok.vocab_size
        assert loss(changed) == base
    for a in range(len(prompt) - 1, len(full)):              # an answer token's target changed
        changed = list(full)
        changed[a] = (changed[a] + 1) % tok.vocab_size
        assert loss(changed) != base
    z = logits[0] - logits[0].max(axis=-1, keepdims=True)    # the same loss by hand: answer positions
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    picked = [log_p[j, full[j]] for j in range(len(prompt) - 1, len(full))]
    assert base == pytest.approx(-np.mean(picked), rel=1e-5)


def test_batches_pad_with_ignored_targets_and_mix_plain_windows_with_full_loss():
    pairs = [QAPair("a?", "b", "x:1"), QAPair("a longer one?", "longer", "x:2")]
    tok = char_tokenizer(pairs)
    examples = qa.encode_pairs(pairs, tok, 48)
    x, y = qa.qa_batches(examples, 6, 48)(np.random.default_rng(0))
    width = max(len(e[0]) for e in examples)
    assert x.shape == y.shape == (6, width)
    for row_x, row_y in zip(x, y):
        e = next(e for e in examples if list(row_x[:len(e[0])]) == e[0])
        assert list(row_y[:len(e[1])]) == e[1] and (row_y[len(e[1]):] == -1).all()
    mix = np.arange(200) % tok.vocab_size
    rows = 0
    for seed in range(200):
        x, y = qa.qa_batches(examples, 4, 48, mix, 0.3)(np.random.default_rng(seed))
        assert x.shape == (4, 48)
        plain = [bool((np.diff(x[r]) % tok.vocab_size == 1).all()) for r in range(4)]   # windows of mix
        k = sum(plain)
        assert plain == [False] * (4 - k) + [True] * k        # the plain rows come last,
        assert (y[4 - k:, :-1] == x[4 - k:, 1:]).all() and (y[4 - k:] != -1).all()   # every token scored
        rows += k
    assert abs(rows / (200 * 4) - 0.3) < 0.05                # about 30% of the rows


def test_a_pair_longer_than_the_context_names_its_line():
    pairs = [QAPair("q" * 40, "a", "f.jsonl:7")]
    with pytest.raises(UserError, match="f.jsonl:7: the question and its answer are .* --context 20"):
        qa.encode_pairs(pairs, char_tokenizer(pairs), 20)


# ---- fine-tuning and exact match --------------------------------------------------------------

def test_a_tiny_model_learns_the_facts_exactly():
    pairs = [QAPair(r["question"], r["answer"], f"facts:{i}") for i, r in enumerate(facts(16), 1)]
    tok = char_tokenizer(pairs)
    model = tiny_lm(tok.vocab_size, max_len=48)
    assert qa.exact_match(model, tok, pairs) < 0.5           # it does not know them before
    config = TrainConfig(steps=600, lr=5e-3, min_lr=5e-4, warmup=60, weight_decay=0.0,
                         log_interval=600, eval_interval=0)
    Trainer(model, CrossEntropyLoss(ignore_index=-1), qa.qa_batches(qa.encode_pairs(pairs, tok, 48), 16, 48),
            config, log=io.StringIO()).fit()
    assert qa.exact_match(model, tok, pairs) >= 0.95
    got, ended = qa.greedy_answer(model, tok, pairs[0].question, 20)
    assert ended and got == pairs[0].answer


def test_an_answer_counts_only_when_it_ended_and_equals_the_pairs(monkeypatch):
    pairs = [QAPair("q?", "green", "x:1")]
    tok = char_tokenizer(pairs)
    model = tiny_lm(tok.vocab_size)
    given, ended = qa.greedy_answer(model, tok, "q?", 1)     # one token: ended only if it is the end
    assert ended == (given == "") and len(given) <= 1
    for reply, exact in ((("green", True), True), (("green", False), False), (("gree", True), False)):
        monkeypatch.setattr(qa, "greedy_answer", lambda *a, reply=reply: reply)
        assert qa.answers(model, tok, pairs) == [(reply[0], exact)]


def test_train_step_by_step_task_qa_reports_exact_match(tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "facts.jsonl", facts(20))
    mix = tmp_path / "mix.txt"
    mix.write_text("the colour of the sky is blue and grass is green.\n" * 20, encoding="utf-8")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", COLUMNS="80")
    done = subprocess.run([sys.executable, str(ROOT / "train_step_by_step.py"), "--task", "qa", "--data",
                           str(data), "--mix-data", str(mix), "--mix-ratio", "0.5", *TINY, "--steps", "4",
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
