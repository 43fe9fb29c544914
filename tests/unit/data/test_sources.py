"""The streaming loaders (data/sources.py): plain text, WikiText, JSONL and TinyStories, read in pieces."""
import functools
import json

import pytest

from glassformer.errors import UserError
from glassformer.data import (Continuation, detect_kind, open_source, read_blocks, read_jsonl, read_stories,
                              read_txt, read_wikitext)
from glassformer.data import sources

from datapaths import data_path


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


# ---- the shared real data (skipped when absent) -----------------------------------------------------------------


def test_tinystories_sample():
    path = data_path("tinystories-sample/tinystories_sample.txt")
    assert detect_kind(path) == "stories"
    stories = list(read_stories(path))
    assert len(stories) == 2316 and stories[0].startswith("One day, a little girl named Lily")


def test_wikitext2_valid():
    path = data_path("wikitext-2/valid.txt")
    assert detect_kind(path) == "wikitext"
    docs = list(read_wikitext(path))
    assert all(d.startswith(" = ") and not d.startswith(" = = ") for d in docs)
    assert "".join(docs) == path.read_text(encoding="utf-8")[len(" \n"):]
