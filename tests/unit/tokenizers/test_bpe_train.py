"""BPE training (tokenizers/bpe_train.py): incremental merges equal a naive recount, files streamed, text
versus paths, the progress line, bad input."""
from collections import Counter
from pathlib import Path

import pytest

from glassformer.errors import UserError
from glassformer.tokenizers import ByteLevelBPE
from glassformer.tokenizers.bpe import count_pretokens, gpt2_pattern, learn_merges
from unit.tokenizers.test_bpe import small_corpus


def naive_merges(words, freqs, n_merges, first_id=256):
    """Reference BPE: recount every pair after every merge (slow, obviously right)."""
    words, merges = [list(w) for w in words], []
    for k in range(n_merges):
        counts = Counter()
        for w, f in zip(words, freqs):
            for pair in zip(w, w[1:]):
                counts[pair] += f
        if not counts:
            break
        a, b = min(counts, key=lambda p: (-counts[p], p))          # ties: smallest ids
        new = first_id + k
        merges.append((a, b, new))
        for j, w in enumerate(words):
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == (a, b):
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[j] = out
    return merges


def test_incremental_merges_equal_naive_recount():
    counts = count_pretokens(small_corpus(1500, seed=3) + "aaaa aaaaa abab ababab" * 3)
    words, freqs = [list(w.encode()) for w in counts], list(counts.values())
    fast = learn_merges([list(w) for w in words], freqs, 300)
    assert fast == naive_merges(words, freqs, 300)
    assert len(learn_merges([[1, 2]], [1], 10)) == 1                # stops when no pair is left


def test_file_streaming_matches_whole_text(tmp_path):
    text = "a  \n  b\r\n\r\nc \n\n\n x\t\n  y" + small_corpus(400, seed=2) + "tail  "
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode())
    whole = Counter(gpt2_pattern().findall(text))
    assert count_pretokens(path) == whole
    assert count_pretokens([path, path]) == Counter({k: 2 * v for k, v in whole.items()})
    a = ByteLevelBPE.train(text, 300, progress=False)
    b = ByteLevelBPE.train(path, 300, progress=False)
    assert a.merges == b.merges


def test_progress_line_on_stderr(capsys):
    ByteLevelBPE.train(small_corpus(300), 280, progress=True)
    err = capsys.readouterr().err
    assert "merges/s" in err and "ETA" in err


def test_train_bad_input():
    with pytest.raises(UserError, match="vocab_size"):
        ByteLevelBPE.train("abc", 100, progress=False)
    with pytest.raises(UserError, match="cannot read"):
        ByteLevelBPE.train(Path("/nonexistent/file.txt"), 300, progress=False)


def test_train_str_is_text_and_a_path_shaped_str_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "train.txt"
    path.write_text("the cat sat on the mat " * 20, encoding="utf-8")
    with pytest.raises(UserError, match=r"names a file.*Path\("):
        ByteLevelBPE.train(str(path), 300, progress=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="names a file"):
        ByteLevelBPE.train("train.txt", 300, progress=False)
    with pytest.raises(UserError, match="looks like a file name"):
        ByteLevelBPE.train("path/to/train.txt", 300, progress=False)
    with pytest.raises(UserError, match="expected text"):
        ByteLevelBPE.train(b"bytes are not text", 300, progress=False)
    with pytest.raises(UserError, match="expected text"):
        ByteLevelBPE.train(["ok", 3], 300, progress=False)
    assert ByteLevelBPE.train("zebra", 300, progress=False).decode([]) == ""   # one word of text is text


def test_train_on_an_iterable_of_texts_and_paths(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("aaa bbb aaa\n", encoding="utf-8")
    texts = ["aaa bbb", " ccc aaa"]
    assert count_pretokens(texts) == Counter(["aaa", " bbb", " ccc", " aaa"])    # one document each
    assert count_pretokens(iter([path, "x y"])) == Counter(["aaa", " bbb", " aaa", "\n", "x", " y"])
    assert ByteLevelBPE.train(iter(texts), 300, progress=False).merges == \
        ByteLevelBPE.train(texts, 300, progress=False).merges


def test_train_file_not_utf8_names_the_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"fine line\nsecond caf\xe9\n")
    with pytest.raises(UserError, match=r"latin1.txt: not UTF-8 text at byte 20"):
        ByteLevelBPE.train(path, 300, progress=False)
    with pytest.raises(UserError, match="cannot read"):
        ByteLevelBPE.train(tmp_path, 300, progress=False)                  # a folder


def test_text_stream_counts_the_pretokens_of_the_joined_text():
    """text_stream(docs) (what --tokenizer bpe trains on, never holding the text whole) counts exactly the
    pre-tokens of "\n".join(docs), whatever whitespace the documents start or end with."""
    import random
    from collections import Counter
    from glassformer.tokenizers.bpe_train import count_pretokens, gpt2_pattern, text_stream
    rng, atoms = random.Random(0), ["a", " ", "\n", "  ", "1", "'s", "!", "\t", "\xa0", "<|endoftext|>", "é"]
    for _ in range(500):
        docs = ["".join(rng.choice(atoms) for _ in range(rng.randint(1, 12))) for _ in range(rng.randint(1, 5))]
        joined = Counter()
        for part in "\n".join(docs).split("<|endoftext|>"):
            joined.update(gpt2_pattern().findall(part))
        assert count_pretokens(text_stream(docs), ("<|endoftext|>",)) == joined, docs
