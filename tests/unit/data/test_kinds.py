"""Choosing a loader (data/kinds.py): a source's kind from its name and first bytes, or as asked."""
import pytest

from glassformer.errors import UserError
from glassformer.data import detect_kind, open_source
from unit.data.test_sources import WIKITEXT, write
from unit.data.test_wikipedia import DUMP


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
