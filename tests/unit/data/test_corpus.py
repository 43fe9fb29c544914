"""The token cache and the batches (data/corpus.py): tokens written once and checked, the split, windows,
and language-model batches whose targets are the inputs shifted by one."""
import functools
import json

import numpy as np
import pytest

from glassformer.data import (build_tokens, lm_batches, load_corpus, open_source, random_windows, read_blocks,
                              sequential_windows, sources, split_tokens, token_dtype)
from glassformer.errors import UserError
from unit.data.test_sources import write


def test_lm_batches_are_shifted_windows():
    tokens = np.arange(100, dtype=np.uint16)
    x, y = lm_batches(tokens, 5, 7)(np.random.default_rng(0))
    assert x.shape == y.shape == (5, 7)
    np.testing.assert_array_equal(y, x + 1)
    with pytest.raises(UserError, match="shorter than context"):
        lm_batches(tokens[:5], 2, 7)


# ---- the token cache -----------------------------------------------------------------------------------------


class ByteTokenizer:
    """Tiny test tokenizer: UTF-8 bytes are the ids; counts encode calls."""

    def __init__(self, vocab_size=256, tag="bytes"):
        self.vocab_size, self.tag, self.calls = vocab_size, tag, 0

    def encode(self, text):
        self.calls += 1
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(ids).decode("utf-8")

    def to_dict(self):
        return {"type": "bytes", "tag": self.tag, "vocab_size": self.vocab_size}


def as_bytes(tokens):
    return np.asarray(tokens, dtype=np.uint8).tobytes()


def test_corpus_tokens_eot_and_split(tmp_path):
    write(tmp_path / "docs" / "a.txt", "ab")
    write(tmp_path / "docs" / "b.txt", "cd")
    corpus = load_corpus(tmp_path / "docs", ByteTokenizer(), val_fraction=0.4, cache_dir=tmp_path / "c", eot_id=0)
    assert list(corpus.train) == [97, 98, 0] and list(corpus.val) == [99, 100]
    assert corpus.meta["n_documents"] == 2 and corpus.meta["dtype"] == "uint16" and corpus.vocab_size == 256


def test_eot_goes_between_files_not_between_pieces(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "read_blocks", functools.partial(read_blocks, block=4))
    write(tmp_path / "docs" / "a.txt", "line1\nline2\nline3\n")
    write(tmp_path / "docs" / "b.txt", "x")
    original = sources.read_txt
    monkeypatch.setattr(sources, "read_txt", lambda p: original(p, piece_chars=6))
    tokens, meta = build_tokens([open_source(tmp_path / "docs")], ByteTokenizer(), tmp_path / "c", eot_id=255)
    assert as_bytes(tokens).split(b"\xff") == [b"line1\nline2\nline3\n", b"x"]
    assert meta["n_documents"] == 2


def test_cache_hit_skips_tokenising_and_changes_invalidate(tmp_path, capsys):
    path = write(tmp_path / "story.txt", "Once upon a time.\n" * 50)
    first = load_corpus(path, ByteTokenizer(), cache_dir=tmp_path / "c", progress=True)
    assert "MB/s" in capsys.readouterr().err and not first.meta["cache_hit"]
    tok = ByteTokenizer()
    second = load_corpus(path, tok, cache_dir=tmp_path / "c")
    assert tok.calls == 0 and second.meta["cache_hit"]
    assert isinstance(second.train, np.memmap) and not second.train.flags.writeable
    np.testing.assert_array_equal(second.train, first.train)
    other = ByteTokenizer(tag="other")
    assert not load_corpus(path, other, cache_dir=tmp_path / "c").meta["cache_hit"] and other.calls == 1
    write(path, "Changed text.\n")
    tok = ByteTokenizer()
    changed = load_corpus(path, tok, cache_dir=tmp_path / "c", val_fraction=0.0)
    assert tok.calls == 1 and as_bytes(changed.train) == b"Changed text.\n"
    assert not list((tmp_path / "c").glob("*.tmp"))
    sidecars = [json.loads(p.read_text()) for p in (tmp_path / "c").glob("*.json")]
    assert len(sidecars) == 3 and all({"n_tokens", "dtype", "sources", "tokenizer_sha256"} <= set(s)
                                      for s in sidecars)


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    path = write(tmp_path / "t.txt", "hello world\n")
    load_corpus(path, ByteTokenizer(), cache_dir=tmp_path / "c")
    (bin_file,) = (tmp_path / "c").glob("*.bin")
    bin_file.write_bytes(b"\x00")                 # size no longer matches the sidecar
    tok = ByteTokenizer()
    again = load_corpus(path, tok, cache_dir=tmp_path / "c", val_fraction=0.0)
    assert tok.calls == 1 and as_bytes(again.train) == b"hello world\n"


def test_uint16_or_uint32_by_vocab(tmp_path):
    assert token_dtype(256) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32 and token_dtype(50257, eot_id=70000) == np.uint32
    path = write(tmp_path / "t.txt", "ab")
    big = load_corpus(path, ByteTokenizer(vocab_size=70000), cache_dir=tmp_path / "c", val_fraction=0.0)
    assert big.train.dtype == np.uint32 and list(big.train) == [97, 98]


def test_empty_corpus_is_a_user_error(tmp_path):
    path = write(tmp_path / "blank.jsonl", "\n\n")
    with pytest.raises(UserError, match="no text found"):
        load_corpus(path, ByteTokenizer(), cache_dir=tmp_path / "c")
    assert not list((tmp_path / "c").iterdir())


def test_val_path_gives_the_validation_split(tmp_path):
    train = write(tmp_path / "train.txt", "abc")
    val = write(tmp_path / "valid.txt", "xy")
    corpus = load_corpus(train, ByteTokenizer(), cache_dir=tmp_path / "c", val_path=val)
    assert as_bytes(corpus.train) == b"abc" and as_bytes(corpus.val) == b"xy"


def test_split_tokens():
    train, val = split_tokens(np.arange(10), 0.25)
    assert list(train) == list(range(8)) and list(val) == [8, 9]
    assert len(split_tokens(np.arange(10), 0.0)[1]) == 0
    with pytest.raises(UserError, match="val_fraction"):
        split_tokens(np.arange(10), 1.0)


# ---- windows ---------------------------------------------------------------------------------------------------


def test_random_windows_shapes_shift_and_reproducibility():
    tokens = np.arange(1000, dtype=np.uint16)
    x, y = random_windows(tokens, batch_size=8, context=16, rng=np.random.default_rng(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == np.int64
    np.testing.assert_array_equal(y, x + 1)                               # y is x shifted by one
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)                  # contiguous windows
    x2, _ = random_windows(tokens, 8, 16, np.random.default_rng(0))
    x3, _ = random_windows(tokens, 8, 16, np.random.default_rng(1))
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(x, x3)
    starts = np.concatenate([random_windows(np.arange(20), 256, 4, rng)[0][:, 0] for rng in range(4)])
    assert starts.min() == 0 and starts.max() == 20 - 4 - 1              # every start, last one included


def test_sequential_windows_cover_tokens_once():
    tokens = np.arange(103)
    batches = list(sequential_windows(tokens, batch_size=4, context=10))
    assert [len(x) for x, _ in batches] == [4, 4, 2]
    xs = np.concatenate([x for x, _ in batches]).ravel()
    np.testing.assert_array_equal(xs, np.arange(100))
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]).ravel(), np.arange(1, 101))
    with pytest.raises(UserError, match="shorter than context"):
        list(sequential_windows(np.arange(5), 2, 5))
