"""CharTokenizer: one id per character, specials first (ids 0..k-1), for small tasks and char-level LMs."""
from ..errors import UserError
from .base import Tokenizer, check_ids, check_specials


class CharTokenizer(Tokenizer):
    """Each character is a token; an unknown character is a UserError unless an unk token is set."""

    type = "char"

    def __init__(self, chars, specials=(), unk=None):
        self.specials = check_specials(specials)
        if unk is not None and unk not in self.specials:
            self.specials.append(unk)               # unk is always a special token
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise UserError(f"CharTokenizer: {c!r} is not a single character")
        if len(set(chars)) != len(chars):
            raise UserError("CharTokenizer: the character list contains duplicates")
        self.unk = unk
        self.itos = self.specials + chars           # id -> token
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.unk_id = None if unk is None else self.stoi[unk]
        self._char_ids = {c: self.stoi[c] for c in chars}

    @classmethod
    def from_text(cls, text, specials=(), unk=None):
        """Vocabulary = the sorted set of characters of text."""
        return cls(sorted(set(text)), specials, unk)

    @property
    def vocab_size(self):
        return len(self.itos)

    def token_id(self, token):
        """Id of a special token or a character."""
        if token not in self.stoi:
            raise UserError(f"{token!r} is not in this tokenizer's vocabulary")
        return self.stoi[token]

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

    def decode(self, ids):
        itos = self.itos
        return "".join([itos[i] for i in check_ids(ids, len(itos))])

    def to_dict(self):
        return {"type": "char", "version": 1, "specials": self.specials,
                "chars": self.itos[len(self.specials):], "unk": self.unk}

    @classmethod
    def from_dict(cls, d):
        if d.get("type") != "char":
            raise UserError(f"not a char tokenizer (type {d.get('type')!r})")
        return cls(d["chars"], d.get("specials", ()), d.get("unk"))

