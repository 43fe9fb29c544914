"""The interface every tokenizer shares, and JSON save/load (atomic, no pickle); registry.py reads any kind."""
import json

from .. import inputs
from ..errors import UserError
from ..files import atomic_write


class Tokenizer:
    """text <-> list of ids; to_dict() is plain JSON so a tokenizer can ride in a checkpoint header."""

    type = None                                     # "char" | "word" | "bpe", the key in to_dict()

    def encode(self, text):
        raise NotImplementedError

    def decode(self, ids):
        raise NotImplementedError

    @property
    def vocab_size(self):
        raise NotImplementedError

    def to_dict(self):
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d):
        raise NotImplementedError

    def save(self, path):
        """Write to_dict() as JSON atomically, so readers never see half a file."""
        with atomic_write(path) as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)

    @classmethod
    def load(cls, path):
        """A tokenizer of this class from a .save() file; tokenizers.load_tokenizer reads any kind."""
        if cls.type is None:
            raise TypeError(f"{cls.__name__} is abstract: use glassformer.tokenizers.load_tokenizer(path)")
        d = read_json(path)
        got = d.get("type") if isinstance(d, dict) else type(d).__name__
        if got != cls.type:
            raise UserError(f"{path}: holds a {got!r} tokenizer, not a {cls.type!r} one")
        return rebuild(cls, d, where=str(path))


class VocabTokenizer(Tokenizer):
    """A fixed token list, specials first (ids 0..k-1) then the units (characters or words); decode joins with sep."""

    sep = ""                                        # what decode puts between tokens
    units = None                                    # to_dict key of the non-special tokens: "chars" | "words"

    def _set_vocab(self, units, unk):
        """itos/stoi from self.specials (unk among them) and the already checked units."""
        self.unk = unk
        self.itos = self.specials + units           # id -> token
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.unk_id = None if unk is None else self.stoi[unk]

    @property
    def vocab_size(self):
        return len(self.itos)

    def token_id(self, token):
        """Id of a special token or a unit."""
        if token not in self.stoi:
            raise UserError(f"{token!r} is not in this tokenizer's vocabulary")
        return self.stoi[token]

    def decode(self, ids):
        itos = self.itos
        return self.sep.join([itos[i] for i in check_ids(ids, len(itos))])

    def to_dict(self):
        return {"type": self.type, "version": 1, "specials": self.specials,
                self.units: self.itos[len(self.specials):], "unk": self.unk}

    @classmethod
    def from_dict(cls, d):
        if d.get("type") != cls.type:
            raise UserError(f"not a {cls.type} tokenizer (type {d.get('type')!r})")
        return cls(d[cls.units], d.get("specials", ()), d.get("unk"))


def read_text(path):
    """A UTF-8 tokenizer file's text (bounded; a FIFO or device refused); bad bytes name the line."""
    return inputs.read_text(path, "tokenizer")


def read_json(path):
    """Parse a tokenizer's JSON file (bounded depth, size and numbers); any fault is a UserError naming it."""
    return inputs.read_json(path, "tokenizer")


def rebuild(cls, d, where):
    """cls.from_dict(d), a malformed dict reported as a UserError that names where it came from."""
    try:
        return cls.from_dict(d)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{where}: malformed {d['type']!r} tokenizer ({type(e).__name__}: {e})") from None


def check_specials(specials, unk=None):
    """Specials as a list of distinct non-empty strings; unk, if given, is appended unless already there."""
    specials = list(specials)
    for s in specials:
        if not isinstance(s, str) or not s:
            raise UserError(f"special token {s!r} must be a non-empty string")
    if len(set(specials)) != len(specials):
        raise UserError(f"special tokens {specials} contain duplicates")
    if unk is not None and unk not in specials:
        specials.append(unk)                        # unk is always a special token
    return specials


def check_ids(ids, n):
    """ids as a list of Python ints in [0, n), or a UserError naming the first bad one."""
    try:
        ids = [int(i) for i in ids]
    except (TypeError, ValueError):
        raise UserError(f"decode: ids must be a sequence of integers, got {ids!r:.80}") from None
    if ids and (min(ids) < 0 or max(ids) >= n):
        bad = next(i for i in ids if not 0 <= i < n)
        raise UserError(f"decode: id {bad} is outside the vocabulary (size {n})")
    return ids
