"""Tests for glassformer.data: streaming loaders, the wikitext cleaner, the token cache, splits and windows."""
import bz2
import functools
import json
from pathlib import Path

import numpy as np
import pytest

from glassformer.errors import UserError
from glassformer.data import (Continuation, build_tokens, clean_wikitext, detect_kind, load_corpus, open_source,
                              random_windows, read_blocks, read_jsonl, read_stories, read_txt, read_wikipedia,
                              read_wikitext, sequential_windows, split_tokens, token_dtype)
from glassformer.data import sources

from datapaths import DATA  # noqa: E402


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


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---- plain text -----------------------------------------------------------------------------------------------

def test_txt_folder_is_recursive_and_sorted(tmp_path):
    write(tmp_path / "b" / "z.txt", "third\n")
    write(tmp_path / "a.txt", "first\n")
    write(tmp_path / "b" / "a.txt", "second\n")
    write(tmp_path / "notes.md", "not read\n")
    assert list(read_txt(tmp_path)) == ["first\n", "second\n", "third\n"]


def test_txt_big_file_streams_in_pieces_cut_at_line_ends(tmp_path):
    text = "".join(f"line {i} é\n" for i in range(500))
    pieces = list(read_txt(write(tmp_path / "big.txt", text), piece_chars=300))
    assert len(pieces) > 10 and "".join(pieces) == text
    assert not isinstance(pieces[0], Continuation) and all(isinstance(p, Continuation) for p in pieces[1:])
    assert all(p.endswith("\n") for p in pieces)


def test_blocks_rejoin_multibyte_characters_cut_by_the_block_size(tmp_path):
    text = "héllo wörld ✓ 𝄞 end\n" * 3
    path = write(tmp_path / "u.txt", text)
    assert "".join(read_blocks(path, block=3)) == text


def test_not_utf8_reports_byte_offset_and_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"ok\nab\xe9cd\n")
    with pytest.raises(UserError, match=r"byte 5 \(line 2\).*UTF-8"):
        list(read_txt(path))


def test_missing_path_and_empty_folder_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        list(read_txt(tmp_path / "nope.txt"))
    with pytest.raises(UserError, match="no such file"):
        open_source(tmp_path / "nope.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .txt files"):
        list(read_txt(tmp_path / "empty"))


# ---- WikiText ---------------------------------------------------------------------------------------------------

WIKITEXT = (" \n = Alpha = \n \n Alpha is a letter . \n \n = = History = = \n \n It is old . \n"
            " = Goals ; A = \n It ends . \n \n = Beta = \n \n Beta follows . \n")   # a title has blank lines around it


def test_wikitext_splits_on_top_level_headings_only(tmp_path):
    docs = list(read_wikitext(write(tmp_path / "wiki.train.tokens", WIKITEXT)))
    assert len(docs) == 2
    assert docs[0].startswith(" = Alpha = ") and "= = History = =" in docs[0]
    assert " = Goals ; A = \n It ends" in docs[0]                 # a content line shaped like a title
    assert docs[1] == " = Beta = \n \n Beta follows . \n"
    assert "".join(docs) == WIKITEXT[len(" \n"):]      # verbatim, only the blank preamble dropped


# ---- JSONL ------------------------------------------------------------------------------------------------------

def test_jsonl_one_document_per_line(tmp_path):
    lines = [json.dumps({"text": "Once upon a time."}), "", json.dumps({"text": "Lily ran.\nThe end.", "id": 2})]
    assert list(read_jsonl(write(tmp_path / "s.jsonl", "\n".join(lines) + "\n"))) == \
        ["Once upon a time.", "Lily ran.\nThe end."]


@pytest.mark.parametrize("bad, message", [('{"text": "a"', "line 3: not valid JSON"),
                                          ('{"story": "a"}', "line 3: no string field 'text'"),
                                          ('["a"]', "line 3: no string field")])
def test_jsonl_bad_line_names_its_number(tmp_path, bad, message):
    path = write(tmp_path / "s.jsonl", '{"text": "ok"}\n{"text": "ok"}\n' + bad + "\n")
    with pytest.raises(UserError, match=message):
        list(read_jsonl(path))


# ---- TinyStories ------------------------------------------------------------------------------------------------

def test_stories_split_on_endoftext_and_drop_the_cut_last_story(tmp_path, monkeypatch):
    text = "One day, Lily.\n<|endoftext|>\nBen ran.\n<|endoftext|>\n<|endoftext|>\nThe ca"
    path = write(tmp_path / "stories.txt", text)
    assert list(read_stories(path)) == ["One day, Lily.", "Ben ran."]
    assert list(read_stories(path, drop_partial=False)) == ["One day, Lily.", "Ben ran.", "The ca"]
    monkeypatch.setattr(sources, "read_blocks", functools.partial(read_blocks, block=5))   # separators cut by blocks
    assert list(read_stories(path)) == ["One day, Lily.", "Ben ran."]


# ---- Wikipedia XML ----------------------------------------------------------------------------------------------

DUMP = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11">
  <siteinfo><sitename>Wikipedia</sitename></siteinfo>
  <page><title>Anarchism</title><ns>0</ns><id>12</id>
    <revision><id>1</id><text xml:space="preserve">{{Infobox|a={{nested|x}}}}'''Anarchism''' is a [[political philosophy|philosophy]].&lt;ref name="a"&gt;Cite {{x}}&lt;/ref&gt; See [[anarchy]].
== History ==
Early [http://example.com thinkers] &amp;amp; others.&lt;ref name="b" /&gt;
[[File:A.jpg|thumb|A [[caption]] here]]
[[Category:Politics]]</text></revision></page>
  <page><title>AccessibleComputing</title><ns>0</ns><id>10</id><redirect title="Computer accessibility" />
    <revision><text>#REDIRECT [[Computer accessibility]]</text></revision></page>
  <page><title>Old</title><ns>0</ns><id>11</id><revision><text>#redirect [[New]]</text></revision></page>
  <page><title>Wikipedia:About</title><ns>4</ns><id>13</id><revision><text>Project page.</text></revision></page>
  <page><title>Zebra</title><ns>0</ns><id>14</id><revision><text>A ''zebra'' is striped.</text></revision></page>
</mediawiki>
"""
DUMP_DOCS = ["Anarchism\n\nAnarchism is a philosophy. See anarchy.\n\nHistory\nEarly thinkers & others.",
             "Zebra\n\nA zebra is striped."]


def test_wikipedia_xml_articles_only(tmp_path):
    assert list(read_wikipedia(write(tmp_path / "dump.xml", DUMP))) == DUMP_DOCS
    assert list(read_wikipedia(write(tmp_path / "d.xml", DUMP), include_title=False))[1] == "A zebra is striped."


def test_wikipedia_bz2_reads_like_xml(tmp_path):
    path = tmp_path / "dump.xml.bz2"
    path.write_bytes(bz2.compress(DUMP.encode()))
    assert detect_kind(path) == "wikipedia"
    assert list(open_source(path)) == DUMP_DOCS


def test_wikipedia_bad_inputs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not <mediawiki>"):
        list(read_wikipedia(write(tmp_path / "feed.xml", "<rss><channel/></rss>")))
    with pytest.raises(UserError, match="line 8, column 41: not well-formed"):      # </page> closes <title>
        list(read_wikipedia(write(tmp_path / "broken.xml", DUMP.replace("</title><ns>0", "<ns>0", 1))))
    latin1 = tmp_path / "latin1.xml"
    latin1.write_bytes(DUMP.replace("Zebra", "Z\xe9bra").encode("latin-1"))
    with pytest.raises(UserError, match="line 13.*not well-formed.*UTF-8"):
        list(read_wikipedia(latin1))
    corrupt = tmp_path / "corrupt.xml.bz2"
    corrupt.write_bytes(b"BZh9" + bytes(range(200)))
    with pytest.raises(UserError, match="corrupt or truncated"):
        list(read_wikipedia(corrupt))
    truncated = tmp_path / "truncated.xml.bz2"
    truncated.write_bytes(bz2.compress(DUMP.encode() * 3)[:-40])
    with pytest.raises(UserError, match="corrupt or truncated"):
        list(read_wikipedia(truncated))


@pytest.mark.parametrize("markup, plain", [
    ("a {{t|x={{u|{{v}}}}}} b", "a  b"),
    ("a\n{| class=x\n|-\n| 1 || {| \n| nested\n|}\n|}\nb", "a\n\nb"),
    ("x<ref>cite {{c}} [[l]]</ref>y<ref name=q/>z<ref name='r' >w</ref>.", "xyz."),
    ("[[Paris|the capital]] and [[Lyon]]s", "the capital and Lyons"),
    ("[[File:F.png|thumb|left|A [[Seine|river]] at [[Paris]]]]Text", "Text"),
    ("[[Image:I.jpg]][[Category:Cities| ]][[:Category:Cities]] [[de:Paris]]", "Category:Cities"),
    ("see [http://x.org/p?q=1 the site] or [https://y.org]", "see the site or"),
    ("'''bold''' and ''italic'' and '''''both'''''", "bold and italic and both"),
    ("intro\n== Life ==\ntext\n=== Early years===\nmore", "intro\n\nLife\ntext\n\nEarly years\nmore"),
    ("a<!-- hidden -->b<br/>c<span style='x'>d</span>&nbsp;&ndash;&amp;", "abcd\u00a0\u2013&"),
    ("* one\n# two\n: three", "one\ntwo\nthree"),
    ("stray }} and {{ unclosed template", "stray  and"),
])
def test_clean_wikitext(markup, plain):
    assert clean_wikitext(markup) == plain


# ---- choosing a loader ------------------------------------------------------------------------------------------

def test_detect_kind(tmp_path):
    assert detect_kind(tmp_path) == "txt"
    assert detect_kind(write(tmp_path / "a.jsonl", '{"text": "x"}\n')) == "jsonl"
    assert detect_kind(write(tmp_path / "wiki.valid.tokens", WIKITEXT)) == "wikitext"
    assert detect_kind(write(tmp_path / "w.txt", WIKITEXT)) == "wikitext"
    assert detect_kind(write(tmp_path / "s.txt", "Hi.<|endoftext|>Bye.")) == "stories"
    assert detect_kind(write(tmp_path / "dump-p10p30", DUMP)) == "wikipedia"
    assert detect_kind(write(tmp_path / "plain.txt", "First Citizen:\nSpeak.\n")) == "txt"
    with pytest.raises(UserError, match="unknown source kind"):
        open_source(tmp_path / "plain.txt", kind="csv")
    with pytest.raises(UserError, match="only kind='txt' reads folders"):
        open_source(tmp_path, kind="jsonl")


# ---- token cache ------------------------------------------------------------------------------------------------

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


# ---- windows ----------------------------------------------------------------------------------------------------

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


# ---- the shared real data (skipped when absent) -----------------------------------------------------------------

def shared(relative):
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def test_wikipedia_sample_dump():
    (path,) = shared("wikipedia-sample").glob("*.bz2")
    assert detect_kind(path) == "wikipedia"
    docs = list(read_wikipedia(path))
    # 206 pages: 106 ns-0 articles, 99 ns-0 redirects, 1 ns-4 redirect (the data README's "100 redirects")
    assert len(docs) == 106
    assert docs[0].startswith("Anarchism\n\nAnarchism is a political philosophy")
    for doc in docs:
        assert "{{" not in doc and "[[" not in doc and "<ref" not in doc and "}}" not in doc, doc[:60]


def test_tinystories_sample():
    path = shared("tinystories-sample/tinystories_sample.txt")
    assert detect_kind(path) == "stories"
    stories = list(read_stories(path))
    assert len(stories) == 2316 and stories[0].startswith("One day, a little girl named Lily")


def test_wikitext2_valid():
    path = shared("wikitext-2/valid.txt")
    assert detect_kind(path) == "wikitext"
    docs = list(read_wikitext(path))
    assert all(d.startswith(" = ") and not d.startswith(" = = ") for d in docs)
    assert "".join(docs) == path.read_text(encoding="utf-8")[len(" \n"):]
