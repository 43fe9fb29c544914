"""Faults an attacker-style review found in glassformer.data (issue 10), each pinned by a test.

Pipes read once, WikiText titles, XML sniffing, a token cache that checks itself, the wikitext cleaner,
and a UserError (what, where, what to do) for every bad file a user can give.
"""
import errno
import gzip
import json
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from glassformer.data import (build_tokens, clean_wikitext, corpus, detect_kind, load_corpus, open_source,
                              read_wikitext)
from glassformer.errors import UserError

from datapaths import DATA  # noqa: E402


class ByteTokenizer:
    """UTF-8 bytes are the ids (vocab 256 unless told)."""

    def __init__(self, vocab_size=256, shift=0):
        self.vocab_size, self.shift = vocab_size, shift

    def encode(self, text):
        return [b + self.shift for b in text.encode("utf-8")]

    def to_dict(self):
        return {"type": "bytes", "vocab_size": self.vocab_size, "shift": self.shift}


def within(seconds, fn, *args):
    """fn(*args) in a thread; fails (instead of hanging) if it takes longer than seconds."""
    result = {}

    def run():
        try:
            result["value"] = fn(*args)
        except BaseException as e:          # re-raised in the test's thread
            result["error"] = e
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__} did not finish within {seconds} s"
    if "error" in result:
        raise result["error"]
    return result["value"]


def feed(write_end, data):
    """Write data into a pipe from a daemon thread (a pipe holds only ~64 KiB), then close it."""
    def run():
        with os.fdopen(write_end, "wb") as f:
            f.write(data)
    threading.Thread(target=run, daemon=True).start()


def pipe_with(data):
    """A /dev/fd path of a pipe that yields data; the caller closes the returned read fd."""
    r, w = os.pipe()
    feed(w, data)
    return r, Path(f"/dev/fd/{r}")


needs_dev_fd = pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="no /dev/fd on this system")

TEXT = "".join(f"line {i}: the quick brown fox é\n" for i in range(8000))    # ~250 KB, past the 64 KiB sniff
PAGE = "<page><title>T{0}</title><ns>0</ns><id>{0}</id><revision><text>Body {0} {1}.</text></revision></page>\n"
DUMP = ('<?xml version="1.0"?>\n<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">\n'
        + "".join(PAGE.format(i, "x" * 300) for i in range(600)) + "</mediawiki>\n")


# ---- 2. a pipe is sniffed without losing its first bytes ---------------------------------------------------------

@needs_dev_fd
def test_text_from_a_pipe_keeps_its_first_64_kib():
    r, path = pipe_with(TEXT.encode())
    try:
        source = open_source(path)
        assert source.kind == "txt"
        assert "".join(within(30, list, source)) == TEXT
    finally:
        os.close(r)


@needs_dev_fd
def test_xml_dump_from_a_pipe():
    assert len(DUMP) > 1 << 17
    r, path = pipe_with(DUMP.encode())
    try:
        docs = within(30, list, open_source(path))
        assert len(docs) == 600 and docs[0].startswith("T0\n\nBody 0 x")
    finally:
        os.close(r)


def test_fifo_tokens_are_built_in_memory_not_cached(tmp_path):
    fifo = tmp_path / "stories"
    os.mkfifo(fifo)
    text = "Once upon a time.<|endoftext|>" * 4000

    def writer():
        with open(fifo, "wb") as f:        # blocks until the loader opens the FIFO for reading
            f.write(text.encode())
    threading.Thread(target=writer, daemon=True).start()
    source = within(30, open_source, fifo)
    assert source.kind == "stories"
    tokens, meta = within(30, build_tokens, [source], ByteTokenizer(), tmp_path / "c", 0)
    assert bytes(np.asarray(tokens, np.uint8)) == b"Once upon a time.\0" * 3999 + b"Once upon a time."
    assert meta["cached"] is False and not (tmp_path / "c").exists()
    with pytest.raises(UserError, match="read only once"):
        list(source)
    with pytest.raises(UserError, match="is a pipe.*open_source"):
        detect_kind(fifo)                  # sniffing it here would lose its first bytes


# ---- 3. WikiText titles stand between blank lines --------------------------------------------------------------

WIKITEXT = (" \n = Team = \n \n The team played . \n \n = = Record = = \n \n"
            " = Games Played ; <unk> = \n = Goals ; A = \n 12 ; 3 \n \n = Next = \n \n Text . \n \n = Last = \n")


def test_wikitext_content_lines_shaped_like_titles_stay_in_their_article(tmp_path):
    path = tmp_path / "wiki.tokens"
    path.write_text(WIKITEXT, encoding="utf-8")
    docs = list(read_wikitext(path))
    assert [d.split("\n")[0] for d in docs] == [" = Team = ", " = Next = ", " = Last = "]
    assert " = Goals ; A = " in docs[0] and "".join(docs) == WIKITEXT[len(" \n"):]


@pytest.mark.parametrize("split, articles", [("train", 600), ("valid", 60), ("test", 60)])
def test_wikitext2_has_its_published_article_counts(split, articles):
    path = DATA / "wikitext-2" / f"{split}.txt"
    if not path.exists():
        pytest.skip(f"{path} not present")
    docs = list(read_wikitext(path))
    assert len(docs) == articles
    assert "".join(docs) == path.read_text(encoding="utf-8")[len(" \n"):]


# ---- 4. XML needs an XML start --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind", [("<|endoftext|>Once upon a time.<|endoftext|>", "stories"),
                                        ("<unk> is a word here .\n", "txt"),
                                        (" \n = <unk> = \n \n Text . \n", "wikitext"),
                                        ("\ufeff<?xml version='1.0'?><mediawiki/>", "wikipedia"),
                                        ("  <mediawiki xmlns='x'></mediawiki>", "wikipedia")])
def test_detect_kind_reads_xml_only_from_an_xml_start(tmp_path, text, kind):
    path = tmp_path / "data"
    path.write_text(text, encoding="utf-8")
    assert detect_kind(path) == kind


# ---- 5. the token cache checks itself ---------------------------------------------------------------------------

def entry(cache_dir):
    (bin_path,) = cache_dir.glob("*.bin")
    return bin_path, bin_path.with_suffix(".json")


def test_a_corrupt_cache_of_the_right_size_is_rebuilt(tmp_path, capsys):
    path = tmp_path / "t.txt"
    path.write_text("hello world\n", encoding="utf-8")
    load_corpus(path, ByteTokenizer(), cache_dir=tmp_path / "c")
    bin_path, meta_path = entry(tmp_path / "c")
    meta = json.loads(meta_path.read_text())
    assert {"crc32", "sources"} <= set(meta) and "edges_blake2b" in meta["sources"][0]["files"][0]
    bin_path.write_bytes(b"J" + bin_path.read_bytes()[1:])             # same size, one id changed
    again = load_corpus(path, ByteTokenizer(), cache_dir=tmp_path / "c", val_fraction=0.0)
    assert not again.meta["cache_hit"] and bytes(np.asarray(again.train, np.uint8)) == b"hello world\n"
    assert "checksum does not match (the file is corrupt); rebuilding it" in capsys.readouterr().err


def test_a_cache_with_ids_outside_the_vocabulary_is_rebuilt(tmp_path, capsys):
    path = tmp_path / "t.txt"
    path.write_text("abc", encoding="utf-8")
    load_corpus(path, ByteTokenizer(), cache_dir=tmp_path / "c")
    bin_path, meta_path = entry(tmp_path / "c")
    bad = np.array([97, 300, 99], np.uint16)                             # 300: no such token
    bin_path.write_bytes(bad.tobytes())
    meta = json.loads(meta_path.read_text())
    meta["crc32"] = corpus.zlib.crc32(bad.tobytes())                    # a consistent checksum, even
    meta_path.write_text(json.dumps(meta))
    again = load_corpus(path, ByteTokenizer(), cache_dir=tmp_path / "c", val_fraction=0.0)
    assert list(again.train) == [97, 98, 99] and "outside the vocabulary" in capsys.readouterr().err


def test_an_edit_that_keeps_size_and_mtime_is_seen(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("first version\n", encoding="utf-8")
    st = path.stat()
    load_corpus(path, ByteTokenizer(), cache_dir=tmp_path / "c")
    path.write_text("other version\n", encoding="utf-8")                # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))                  # same mtime
    again = load_corpus(path, ByteTokenizer(), cache_dir=tmp_path / "c", val_fraction=0.0)
    assert not again.meta["cache_hit"] and bytes(np.asarray(again.train, np.uint8)) == b"other version\n"


def dead_pid():
    """A process id that no process has now."""
    for pid in range(4_000_000, 4_100_000):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    pytest.skip("no free process id found")


def test_temp_files_of_killed_builds_are_removed(tmp_path):
    cache = tmp_path / "c"
    cache.mkdir()
    dead = cache / f".tokens-0123456789abcdef0123.bin.{dead_pid()}.deadbeef.tmp"
    live = cache / f".tokens-0123456789abcdef0123.bin.{os.getppid()}.cafecafe.tmp"   # our parent still runs
    dead.write_bytes(b"half a build")
    live.write_bytes(b"another build in progress")
    path = tmp_path / "t.txt"
    path.write_text("abc", encoding="utf-8")
    load_corpus(path, ByteTokenizer(), cache_dir=cache)
    assert not dead.exists() and live.exists()


def test_a_tokenizer_id_beyond_its_vocab_size_is_caught_while_building(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abc", encoding="utf-8")
    with pytest.raises(ValueError, match="id 99 outside 0..98"):                    # 'c' is 99
        load_corpus(path, ByteTokenizer(vocab_size=99), cache_dir=tmp_path / "c")
    assert list(load_corpus(path, ByteTokenizer(vocab_size=101, shift=1), cache_dir=tmp_path / "c",
                            val_fraction=0.0).train) == [98, 99, 100]


# ---- 7. the wikitext cleaner ------------------------------------------------------------------------------------

@pytest.mark.parametrize("markup, plain", [
    ("''Iliad'''s sequel", "Iliad's sequel"),                            # italic, then an apostrophe
    ("l'''amour''' and ''it''", "lamour and it"),
    ("''''four''''", "'four'"),                                          # 4 = ' + bold
    ("x<y and y>z", "x<y and y>z"),                                      # not a tag
    ("3 < 5 > 2, a<b>bold</b>c<br/>d<BR>e<span class='k'>f</span>", "3 < 5 > 2, aboldcdef"),
    ("intro {{cite web\n| url = x\n\nNext paragraph {{lang|fr}} stays.", "intro\n\nNext paragraph  stays."),
    ("a {| class=x\n| 1\n\nb", "a\n\nb"),                                # an unclosed table, too
    ("{{a}} {{b {{c}} d\n\ne", "e"),
    ("called ''{{lang|es|La Voz}}'' (English)", "called  (English)"),          # a cut template parts two runs
    ("name '''{{lang|fr|''Temps''}}'''<ref>r</ref>) is", "name ) is"),
    ("in the ''[[Republic (Plato)|''Republic'']]'' wants", "in the Republic wants"),
    ("phrase ''[[Insha'Allah|{{transl|ar|in sha}}]]'' (meaning)", "phrase Insha'Allah (meaning)"),
    ("==Etymology==\n{{Related articles|x}}\nThe term", "Etymology\nThe term"),
])
def test_clean_wikitext_faults(markup, plain):
    assert clean_wikitext(markup) == plain


def test_an_unclosed_template_does_not_take_the_article_with_it():
    article = "Lead.\n\n{{Infobox\n| name = x\n\n" + "".join(f"Paragraph {i}.\n\n" for i in range(50))
    assert clean_wikitext(article).count("Paragraph") == 50


def test_cleaning_many_unclosed_templates_is_linear():
    text = "{{x\n\nword. " * 20000
    start = time.perf_counter()
    assert clean_wikitext(text).count("word.") == 20000
    assert time.perf_counter() - start < 5.0


# ---- 8. every bad file is a UserError that says what, where and what to do ------------------------------------

def test_nul_bytes_are_a_binary_file(tmp_path):
    path = tmp_path / "archive.txt"
    path.write_bytes(b"name.txt" + b"\0" * 100 + b"hello")               # a tar header: valid UTF-8
    with pytest.raises(UserError, match=r"archive.txt: NUL byte at byte 8 \(line 1\): a binary file"):
        load_corpus(path, ByteTokenizer(), cache_dir=tmp_path / "c")


def test_a_corrupt_gzip_block_is_a_user_error(tmp_path):
    path = tmp_path / "t.txt.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + np.random.default_rng(0).bytes(200))   # zlib.error inside gzip
    with pytest.raises(UserError, match="t.txt.gz: cannot read it.*corrupt or truncated"):
        load_corpus(path, ByteTokenizer(), cache_dir=tmp_path / "c")
    path.write_bytes(gzip.compress(b"hello") + b"\x1f\x8b\x08\x00" + np.random.default_rng(0).bytes(200))
    with pytest.raises(UserError, match="corrupt or truncated"):
        detect_kind(path)


def test_a_socket_is_a_user_error(tmp_path):
    path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with pytest.raises(UserError, match="s: cannot open it"):
            open_source(path)
    finally:
        server.close()


def test_a_cache_that_cannot_be_written_is_a_user_error(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    path.write_text("abc", encoding="utf-8")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(corpus, "atomic_write", full)
    with pytest.raises(UserError, match="cannot write the token cache .No space left on device.*cache_dir="):
        load_corpus(path, ByteTokenizer(), cache_dir=tmp_path / "c")


@pytest.mark.parametrize("error, message", [(PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
                                            (OSError(errno.EIO, "Input/output error"), "Input/output error")])
def test_an_unreadable_file_is_a_user_error(tmp_path, monkeypatch, error, message):
    path = tmp_path / "locked.txt"
    path.write_text("secret", encoding="utf-8")
    real_open = open

    def guarded(file, *args, **kwargs):    # as root, chmod cannot make a file unreadable: fake it
        if str(file) == str(path):
            raise error
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr("builtins.open", guarded)
    for load in (lambda: load_corpus(path, ByteTokenizer(), cache_dir=tmp_path / "c"),      # sniffs it first
                 lambda: build_tokens([open_source(path, kind="txt")], ByteTokenizer(), tmp_path / "c"),
                 lambda: list(open_source(path, kind="txt"))):
        with pytest.raises(UserError, match=f"(?i)locked.txt: .*{message}"):
            load()


def test_folders_and_files_given_for_the_wrong_kind(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("x")
    with pytest.raises(UserError, match="notes: folder holds no .txt files"):
        load_corpus(tmp_path / "notes", ByteTokenizer(), cache_dir=tmp_path / "c")
    with pytest.raises(UserError, match="only kind='txt' reads folders"):
        open_source(tmp_path / "notes", kind="wikitext")
    with pytest.raises(UserError, match="no such file"):
        open_source(tmp_path / "missing.txt", kind="txt")
