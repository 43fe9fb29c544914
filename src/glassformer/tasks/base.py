"""What every generated task shares: the special tokens, config checks, and the SyntheticTask base class.

A task is a generator class built from a frozen config dataclass; identity() (task name, generator
version, every config field) names its dataset, which dataset.py draws from a seeded NumPy Generator
and caches.
"""
import hashlib
import json
from dataclasses import asdict

import numpy as np

from ..errors import UserError

VERSION = 2                            # bump when a generator changes: old caches stop matching
SPECIALS = ["<pad>", "<bos>", "<eos>"]
PAD, BOS, EOS = 0, 1, 2
IGNORE = -1                            # target at an unscored position (CrossEntropyLoss ignore_index)
NAMES = [chr(c) for c in range(ord("a"), ord("z") + 1)]


def names(n):
    """n variable or node names: a..z, then a1..z1, a2..."""
    return [NAMES[i % 26] + (str(i // 26) if i >= 26 else "") for i in range(n)]


def check_positive(config, *fields):
    """UserError unless each config.<field> is at least 1."""
    for name in fields:
        if getattr(config, name) < 1:
            raise UserError(f"{type(config).__name__}.{name}={getattr(config, name)} must be a "
                            "positive integer")


def check_choice(config, name, allowed):
    """UserError unless config.<name> is one of allowed."""
    if getattr(config, name) not in allowed:
        raise UserError(f"{type(config).__name__}.{name}={getattr(config, name)!r}: use one of "
                        f"{', '.join(map(repr, allowed))}")


class SyntheticTask:
    """Base class: a vocabulary, a sample(rng, n) -> {name: array}, and a seeded, cached dataset."""

    name = ""
    kind = "decoder"                   # or "seq2seq"
    config_class = None

    def __init__(self, config=None, **params):
        self.config = config if config is not None else self.config_class(**params)
        self.token_id = {tok: i for i, tok in enumerate(self.vocab)}

    @property
    def vocab(self):
        return SPECIALS

    def sample(self, rng, n):
        raise NotImplementedError

    def ids(self, tokens):
        return [self.token_id[t] for t in tokens]

    def decode(self, ids):
        """ids -> text, padding dropped."""
        return " ".join(self.vocab[i] for i in np.asarray(ids).reshape(-1) if i != PAD)

    def encode(self, text):
        """Text as decode() writes it (tokens split by spaces) -> ids; UserError on unknown tokens."""
        tokens = text.split()
        unknown = [t for t in tokens if t not in self.token_id]
        if unknown:
            raise UserError(f"unknown tokens {unknown[:5]} for task {self.name!r}; its vocabulary "
                            f"is {' '.join(self.vocab[:40])}{' ...' if len(self.vocab) > 40 else ''}")
        return self.ids(tokens)

    def identity(self):
        """What names the dataset: task, generator version and config (JSON-able)."""
        return {"task": self.name, "version": VERSION, "config": asdict(self.config)}

    def key(self):
        """16 hex digits naming this dataset: a hash of identity()."""
        text = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def generate(self):
        """{"train": arrays, "test": arrays}: n_train + n_test draws, test rows seen in train dropped."""
        rng = np.random.default_rng(self.config.seed)
        n_train, n_test = self.config.n_train, self.config.n_test
        data = self.sample(rng, n_train + n_test)
        train = {k: v[:n_train] for k, v in data.items()}
        test = {k: v[n_train:] for k, v in data.items()}
        first = next(iter(data))                            # inputs or src: what the model sees
        seen = {row.tobytes() for row in train[first]}
        fresh = np.array([row.tobytes() not in seen for row in test[first]], dtype=bool)
        return {"train": train, "test": {k: v[fresh] for k, v in test.items()}}
