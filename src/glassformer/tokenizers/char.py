"""CharTokenizer: one id per character, specials first (ids 0..k-1), for small tasks and char-level LMs."""
from ..errors import UserError
from .base import VocabTokenizer, check_specials


class CharTokenizer(VocabTokenizer):
    """Each character is a token; an unknown character is a UserError unless an unk token is set."""

    type, units, sep = "char", "chars", ""

    def __init__(self, chars, specials=(), unk=None):
        self.specials = check_specials(specials, unk)
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise UserError(f"CharTokenizer: {c!r} is not a single character")
        if len(set(chars)) != len(chars):
            raise UserError("CharTokenizer: the character list contains duplicates")
        self._set_vocab(chars, unk)
        self._char_ids = {c: self.stoi[c] for c in chars}

    @classmethod
    def from_text(cls, text, specials=(), unk=None):
        """Vocabulary = the sorted set of characters of text."""
        return cls(sorted(set(text)), specials, unk)

    def encode(self, text):
        ids = self._char_ids
        try:
            return [ids[c] for c in text]
        except KeyError:
            pass
        if self.unk_id is not None:
            return [ids.get(c, self.unk_id) for c in text]
        pos, c = next((i, c) for i, c in enumerate(text) if c not in ids)
        raise UserError(f"character {c!r} (U+{ord(c):04X}) at position {pos} is not in the vocabulary "
                        f"of {len(ids)} characters; rebuild the tokenizer from this text or set unk=")
