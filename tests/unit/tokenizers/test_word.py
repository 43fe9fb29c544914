"""WordTokenizer (tokenizers/word.py): specials, unknown words, a vocabulary from text."""
import pytest

from glassformer.errors import UserError
from glassformer.tokenizers import WordTokenizer
from unit.tokenizers.test_bpe import json_trip


def test_word_specials_encode_decode():
    tok = WordTokenizer(["one", "two", "three"], specials=["<PAD>", "<START>", "<END>"])
    assert tok.vocab_size == 6 and tok.token_id("<END>") == 2
    ids = tok.encode("<START> two one <END>")
    assert ids == [1, 4, 3, 2]
    assert tok.decode(ids) == "<START> two one <END>"
    assert tok.encode(["three", "one"]) == [5, 3]


def test_word_unknown_and_from_text():
    tok = WordTokenizer.from_text("b a b c b a", specials=["<PAD>"])
    assert tok.itos == ["<PAD>", "b", "a", "c"]              # most frequent first, ties alphabetical
    with pytest.raises(UserError, match="'zebra'"):
        tok.encode("a zebra")
    tok = WordTokenizer.from_text("b a b c b a", unk="<UNK>", min_count=2)
    assert tok.encode("c b") == [tok.token_id("<UNK>"), tok.token_id("b")]
    assert json_trip(tok).itos == tok.itos
