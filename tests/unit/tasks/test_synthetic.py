"""Synthetic tasks: content of each generator, seeded hashing, the .npz cache, char-LM windows."""
import numpy as np
import pytest

from glassformer.errors import UserError
from glassformer.tasks.base import BOS, EOS, IGNORE, PAD
from glassformer.tasks.dataset import load_dataset
from glassformer.tasks.registry import TASKS, make_task, task_class
from glassformer.tasks.synthetic import (DagTask, RepeatedTokens, SequenceTask, VariableEvaluation,
                                         VariableRenaming)
from glassformer.tasks.text import CharLM

SMALL = dict(n_train=40, n_test=10)


def tokens(task, row):
    return [task.vocab[i] for i in row]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_same_config_same_hash_and_arrays(name, tmp_path):
    a, b = make_task(name, **SMALL), make_task(name, **SMALL)
    assert a.key() == b.key()
    da = load_dataset(a, cache=tmp_path)
    db = load_dataset(b, cache=tmp_path / "other")        # generated afresh, not read back
    for split in ("train", "test"):
        assert set(getattr(da, split)) == set(getattr(db, split))
        for k, v in getattr(da, split).items():
            np.testing.assert_array_equal(v, getattr(db, split)[k])


@pytest.mark.parametrize("name", sorted(TASKS))
def test_different_seed_different_hash_and_data(name, tmp_path):
    a, b = make_task(name, seed=0, **SMALL), make_task(name, seed=1, **SMALL)
    assert a.key() != b.key()
    first = next(iter(load_dataset(a, cache=tmp_path).train))
    assert not np.array_equal(load_dataset(a, cache=tmp_path).train[first],
                              load_dataset(b, cache=tmp_path).train[first])


def test_cache_file_is_written_once_and_read_back(tmp_path, monkeypatch):
    task = make_task("renaming", **SMALL)
    data = load_dataset(task, cache=tmp_path)
    path = tmp_path / f"{task.key()}.npz"
    assert path.exists() and not list(tmp_path.glob("*.tmp"))
    monkeypatch.setattr(VariableRenaming, "generate", lambda self: pytest.fail("regenerated"))
    again = load_dataset(task, cache=tmp_path)
    np.testing.assert_array_equal(again.train["inputs"], data.train["inputs"])
    with np.load(path, allow_pickle=False) as f:          # plain arrays: no pickle needed
        assert "train.inputs" in f.files and "__meta__" in f.files


def test_corrupt_cache_is_regenerated(tmp_path):
    task = make_task("sequence", **SMALL)
    (tmp_path / f"{task.key()}.npz").write_bytes(b"not a zip file")
    data = load_dataset(task, cache=tmp_path)
    assert data.train["src"].shape == (40, 8)
    assert load_dataset(task, cache=tmp_path).train["src"].shape == (40, 8)   # rewritten


def test_test_rows_never_repeat_training_rows():
    task = make_task("sequence", length=2, n_symbols=3, n_train=50, n_test=50)   # 9 distinct rows
    data = task.generate()
    seen = {r.tobytes() for r in data["train"]["src"]}
    assert all(r.tobytes() not in seen for r in data["test"]["src"])


def test_renaming_answer_follows_the_chain():
    task = VariableRenaming(depth=3, n_chains=2, n_queries=2, **SMALL)
    data = task.sample(np.random.default_rng(0), 20)
    for row, target, answers in zip(data["inputs"], data["targets"], data["answers"]):
        toks = tokens(task, row)
        assert toks[0] == "<bos>" and toks[-2] == "?" and toks[-4] == "?"
        env = {}
        for i in range(1, len(toks) - 4, 2):                # statements x=y: two tokens
            x, y = toks[i:i + 2]
            env[x] = env[y] if y in env else y
        for pos in np.flatnonzero(target != IGNORE):        # rhs variables and queries: the value
            assert task.vocab[target[pos]] == env[toks[pos]]
        np.testing.assert_array_equal(np.flatnonzero(answers), [len(toks) - 3, len(toks) - 1])
        used = set(toks[2:len(toks) - 4:2])                 # right-hand sides
        assert toks[-3] != toks[-1] and not {toks[-3], toks[-1]} & used   # two chain ends
    assert data["inputs"].shape == (20, 1 + 2 * 3 * 2 + 4)
    text = task.decode(data["inputs"][0])
    assert text.startswith("<bos> ") and text.count("=") == 6 and text.count(" ? ") == 2


def test_renaming_constants_first_and_score_switches():
    task = VariableRenaming(depth=3, n_chains=3, dense=False, **SMALL)
    data = task.sample(np.random.default_rng(1), 10)
    for row, target in zip(data["inputs"], data["targets"]):
        toks = tokens(task, row)
        assert all(toks[i].isdigit() for i in (2, 4, 6))    # the constants come first
        assert not any(toks[i].isdigit() for i in range(8, len(toks) - 2, 2))
        assert np.flatnonzero(target != IGNORE).tolist() == [len(toks) - 1]   # the query only
    only_dense = VariableRenaming(depth=3, n_chains=3, score_queries=False, **SMALL)
    d = only_dense.sample(np.random.default_rng(1), 5)
    assert (d["targets"][d["answers"]] == IGNORE).all() and (d["targets"] != IGNORE).sum() == 5 * 6
    with pytest.raises(UserError, match="nothing to learn"):
        VariableRenaming(dense=False, score_queries=False)


def test_evaluation_answer_is_the_arithmetic_mod_n():
    task = VariableEvaluation(n_vars=3, ops="+-*", **SMALL)
    data = task.sample(np.random.default_rng(1), 30)
    for row, target in zip(data["inputs"], data["targets"]):
        toks = tokens(task, row)
        env = {}
        for i in range(1, len(toks) - 2, 5):                # x = p op q
            x, _, p, op, q = toks[i:i + 5]
            p, q = (env[o] if o in env else int(o) for o in (p, q))
            env[x] = {"+": p + q, "-": p - q, "*": p * q}[op] % 10
        assert int(task.vocab[target[-1]]) == env[toks[-1]]
        assert (target[:-1] == IGNORE).all()


def test_dag_reach_answers_are_reachability_and_balanced():
    task = DagTask(mode="reach", n_nodes=5, n_edges=4, **SMALL)
    data = task.sample(np.random.default_rng(2), 200)
    answers = []
    for row, target in zip(data["inputs"], data["targets"]):
        toks = tokens(task, np.append(row, target[-1]))
        q = toks.index("?")
        edges = [(toks[i], toks[i + 2]) for i in range(1, q, 3)]
        u, v, ans = toks[q + 1:q + 4]
        reach, frontier = set(), [u]
        while frontier:
            n = frontier.pop()
            for a, b in edges:
                if a == n and b not in reach:
                    reach.add(b)
                    frontier.append(b)
        assert ans == ("yes" if v in reach else "no")
        answers.append(ans)
    assert 0.35 < answers.count("yes") / len(answers) < 0.65


def test_dag_order_targets_are_the_path():
    task = DagTask(mode="order", n_nodes=4, **SMALL)
    data = task.sample(np.random.default_rng(3), 5)
    for row, target in zip(data["inputs"], data["targets"]):
        toks = tokens(task, row)
        q = toks.index("?")
        nxt = dict((toks[i], toks[i + 2]) for i in range(1, q, 3))
        order = [n for n in set(nxt) if n not in nxt.values()]       # the source
        while order[-1] in nxt:
            order.append(nxt[order[-1]])
        assert [task.vocab[t] for t in target[target != IGNORE]] == order
        assert (target[:q] == IGNORE).all()


@pytest.mark.parametrize("mode", ["reverse", "sort"])
def test_sequence_targets(mode):
    task = SequenceTask(mode=mode, length=6, n_symbols=10, **SMALL)
    d = task.sample(np.random.default_rng(4), 10)
    want = d["src"][:, ::-1] if mode == "reverse" else np.sort(d["src"], axis=1)
    np.testing.assert_array_equal(d["tgt_in"][:, 1:], want)
    np.testing.assert_array_equal(d["tgt_out"][:, :-1], want)
    assert (d["tgt_in"][:, 0] == BOS).all() and (d["tgt_out"][:, -1] == EOS).all()
    assert d["src"].min() >= 3 and d["src"].max() < len(task.vocab)


def test_repeated_tokens_second_repeat_copies_the_first():
    task = RepeatedTokens(n_symbols=20, length=6, min_length=3, max_prefix=4, **SMALL)
    d = task.sample(np.random.default_rng(5), 50)
    assert set(np.unique(d["period"])) <= set(range(3, 7)) and len(np.unique(d["period"])) > 1
    assert len(np.unique(d["offset"])) > 1
    for row, target, L, o in zip(d["inputs"], d["targets"], d["period"], d["offset"]):
        assert row[0] == BOS
        second = row[o + L:o + 2 * L]                       # inputs drop the row's last token
        np.testing.assert_array_equal(row[o:o + len(second)], second)
        assert (row[o + 2 * L:] == PAD).all()
        real = row[1:o + L]
        assert len(set(real.tolist())) == len(real)        # distinct: one earlier occurrence
        scored = np.flatnonzero(target != IGNORE)
        np.testing.assert_array_equal(scored, np.arange(o + L, o + 2 * L - 1))
        np.testing.assert_array_equal(target[scored], row[scored - L + 1])   # induction target


def test_bad_configs_raise_user_errors():
    with pytest.raises(UserError, match="n_names"):
        make_task("renaming", depth=10, n_chains=3)
    with pytest.raises(UserError, match="mode"):
        make_task("sequence", mode="shuffle")
    with pytest.raises(UserError, match="unknown task"):
        make_task("nope")
    with pytest.raises(UserError, match="task 'dag'"):
        make_task("dag", colour="red")
    with pytest.raises(UserError, match="task 'charlm'"):
        make_task("charlm", colour="red")
    assert task_class("charlm") is CharLM and task_class("dag") is DagTask


def test_charlm_by_name(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("abc " * 100, encoding="utf-8")
    task = make_task("charlm", path=str(path), seq_len=8, n_train=4, n_test=2)
    assert isinstance(task, CharLM) and task.chars == [" ", "a", "b", "c"]


def test_charlm_windows_and_content_hash(tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 20
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(text, encoding="utf-8")
    b.write_text(text, encoding="utf-8")
    ta, tb = CharLM(path=str(a), seq_len=16, n_train=30, n_test=5), \
        CharLM(path=str(b), seq_len=16, n_train=30, n_test=5)
    assert ta.key() == tb.key()                             # same text, other path: same dataset
    d = load_dataset(ta, cache=tmp_path / "cache")
    assert d.train["inputs"].shape == (30, 16) and d.test["inputs"].shape == (5, 16)
    np.testing.assert_array_equal(d.train["inputs"][:, 1:], d.train["targets"][:, :-1])
    assert ta.decode(d.test["inputs"][0]) in text
    b.write_text(text + "!", encoding="utf-8")
    assert CharLM(path=str(b), seq_len=16, n_train=30, n_test=5).key() != ta.key()


def test_charlm_bad_files(tmp_path):
    with pytest.raises(UserError, match="no such text file"):
        CharLM(path=str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00 not utf-8" * 50)
    with pytest.raises(UserError, match="not UTF-8"):
        CharLM(path=str(bad))
    short = tmp_path / "short.txt"
    short.write_text("tiny", encoding="utf-8")
    with pytest.raises(UserError, match="too few"):
        CharLM(path=str(short), seq_len=64)
