"""CharTokenizer (tokenizers/char.py): round trips, specials first, unknown characters, bad ids."""
import numpy as np
import pytest

from glassformer.errors import UserError
from glassformer.tokenizers import CharTokenizer
from unit.tokenizers.test_bpe import json_trip


def test_char_round_trip_specials_first_and_json():
    tok = CharTokenizer.from_text("hello world", specials=["<PAD>", "<END>"])
    assert tok.vocab_size == 2 + len(set("hello world"))
    assert tok.token_id("<PAD>") == 0 and tok.token_id("<END>") == 1
    ids = tok.encode("world hello")
    assert min(ids) >= 2 and tok.decode(ids) == "world hello"
    back = json_trip(tok)
    assert isinstance(back, CharTokenizer) and back.encode("hold") == tok.encode("hold")


def test_char_unknown_is_user_error_naming_it_unless_unk():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(UserError, match="'z'"):
        tok.encode("abz")
    tok = CharTokenizer.from_text("abc", unk="<UNK>")
    assert tok.encode("abz") == [tok.token_id("a"), tok.token_id("b"), tok.token_id("<UNK>")]
    assert json_trip(tok).unk_id == tok.unk_id


def test_char_decode_bad_id():
    tok = CharTokenizer.from_text("ab")
    with pytest.raises(UserError, match="id 7"):
        tok.decode([0, 7])
    assert tok.decode(np.array([1, 0])) == "ba"
