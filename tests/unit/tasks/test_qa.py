"""Q&A pairs (tasks/qa.py): read and checked with where they came from, the chat template the REPL shares,
the loss on the answer's tokens only."""
import io
import json

import numpy as np
import pytest

from glassformer.cli import handlers
from glassformer.runner import qa
from glassformer.errors import UserError
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.models import build_model, lm_config
from glassformer.tasks import qa as pairs_mod
from glassformer.tasks.qa import CHAT_TEMPLATE, QAPair, mask_prompt, masked_example, read_pairs

COLOURS = ["red", "green", "blue", "yellow", "black", "white", "pink", "grey"]


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
