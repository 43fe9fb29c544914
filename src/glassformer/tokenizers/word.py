"""WordTokenizer: whitespace-separated words, one id each, specials first; for small tasks."""
from collections import Counter

from ..errors import UserError
from .base import VocabTokenizer, check_specials


class WordTokenizer(VocabTokenizer):
    """Words split on whitespace; an unknown word is a UserError unless an unk token is set."""

    type, units, sep = "word", "words", " "

    def __init__(self, words, specials=(), unk=None):
        self.specials = check_specials(specials, unk)
        words = [w for w in words if w not in self.specials]   # a special may also be listed as a word
        for w in words:
            if not isinstance(w, str) or not w or len(w.split()) != 1:
                raise UserError(f"WordTokenizer: {w!r} is not a single whitespace-free word")
        if len(set(words)) != len(words):
            raise UserError("WordTokenizer: the word list contains duplicates")
        self._set_vocab(words, unk)

    @classmethod
    def from_text(cls, text, specials=(), unk=None, min_count=1):
        """Vocabulary = words seen at least min_count times, most frequent first (ties alphabetical)."""
        counts = Counter(text.split())
        words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(words, specials, unk)

    def encode(self, text):
        """text: a string (split on whitespace) or an already split list of words."""
        words = text.split() if isinstance(text, str) else list(text)
        stoi = self.stoi
        try:
            return [stoi[w] for w in words]
        except KeyError:
            pass
        if self.unk_id is not None:
            return [stoi.get(w, self.unk_id) for w in words]
        pos, w = next((i, w) for i, w in enumerate(words) if w not in stoi)
        raise UserError(f"word {w!r} (word {pos}) is not in the vocabulary of {len(stoi)} tokens; "
                        "rebuild the tokenizer from this text or set unk=")
