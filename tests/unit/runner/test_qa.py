"""The Q&A run (runner/qa.py): batches padded and mixed with plain text, the context bound, exact match, and
a tiny model that learns its facts."""
import io

import numpy as np
import pytest

from glassformer.errors import UserError
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.runner import qa
from glassformer.tasks.qa import QAPair
from glassformer.train.trainer import TrainConfig, Trainer
from unit.tasks.test_qa import char_tokenizer, facts, tiny_lm


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
