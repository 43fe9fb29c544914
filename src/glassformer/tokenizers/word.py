"""WordTokenizer: whitespace-separated words, one id each, specials first; for small tasks."""
from collections import Counter

from ..errors import UserError
from .base import Tokenizer, check_ids, check_specials


class WordTokenizer(Tokenizer):
    """Words split on whitespace; an unknown word is a UserError unless an unk token is set."""

    type = "word"

    def __init__(self, words, specials=(), unk=None):
        self.specials = check_specials(specials)
        if unk is not None and unk not in self.specials:
            self.specials.append(unk)               # unk is always a special token
        words = [w for w in words if w not in self.specials]   # a special may also be listed as a word
        for w in words:
            if not isinstance(w, str) or not w or len(w.split()) != 1:
                raise UserError(f"WordTokenizer: {w!r} is not a single whitespace-free word")
        if len(set(words)) != len(words):
            raise UserError("WordTokenizer: the word list contains duplicates")
        self.unk = unk
        self.itos = self.specials + words           # id -> token
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.unk_id = None if unk is None else self.stoi[unk]

    @classmethod
    def from_text(cls, text, specials=(), unk=None, min_count=1):
        """Vocabulary = words seen at least min_count times, most frequent first (ties alphabetical)."""
        counts = Counter(text.split())
        words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(words, specials, unk)

    @property
    def vocab_size(self):
        return len(self.itos)

    def token_id(self, token):
        """Id of a word or special token."""
        if token not in self.stoi:
            raise UserError(f"{token!r} is not in this tokenizer's vocabulary")
        return self.stoi[token]

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

    def decode(self, ids):
        itos = self.itos
        return " ".join([itos[i] for i in check_ids(ids, len(itos))])

    def to_dict(self):
        return {"type": "word", "version": 1, "specials": self.specials,
                "words": self.itos[len(self.specials):], "unk": self.unk}

    @classmethod
    def from_dict(cls, d):
        if d.get("type") != "word":
            raise UserError(f"not a word tokenizer (type {d.get('type')!r})")
        return cls(d["words"], d.get("specials", ()), d.get("unk"))
