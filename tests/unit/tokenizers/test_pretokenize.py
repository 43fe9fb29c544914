"""GPT-2's pre-tokenizer (tokenizers/pretokenize.py): the splits of its letter, number and space classes."""
from glassformer.tokenizers.bpe import gpt2_pattern


def test_gpt2_pretokenizer_matches_reference_splits():
    # expected splits from GPT-2's \p{L}/\p{N}/\s regex (Unicode White_Space: \x1c is not whitespace)
    cases = {"a\x1cb  c": ["a", "\x1c", "b", " ", " c"],
             "½Ⅷ² ٣4 _a_": ["½Ⅷ²", " ٣4", " _", "a", "_"],
             "don't I'M you'll": ["don", "'t", " I", "'", "M", " you", "'ll"],
             "a  \n  b\r\n\r\nc": ["a", "  \n ", " b", "\r\n\r", "\n", "c"],
             "\t\tfoo   ": ["\t", "\t", "foo", "   "],
             "漢字😀!! ok": ["漢字", "😀!!", " ok"]}
    for text, pieces in cases.items():
        assert gpt2_pattern().findall(text) == pieces
