"""Character-level language modelling from any UTF-8 text file, as a cached synthetic-style task."""
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..inputs import read_text as read_input_text
from .base import SPECIALS, VERSION, SyntheticTask, check_positive


@dataclass(frozen=True)
class CharLMConfig:
    path: str = ""
    seq_len: int = 64                  # T: characters per window
    max_chars: int = 0                 # 0: the whole file; else its first max_chars characters
    test_fraction: float = 0.1         # the file's tail, cut into non-overlapping test windows
    n_train: int = 5000                # random windows from the head
    n_test: int = 200
    seed: int = 0

    def __post_init__(self):
        check_positive(self, "seq_len", "n_train", "n_test")
        if not 0.0 < self.test_fraction < 1.0:
            raise UserError(f"test_fraction={self.test_fraction} must be in (0, 1)")


def read_text(path, max_chars=0):
    """The file's text; UserError when it is missing or not UTF-8."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{path}: no such text file; give charlm a UTF-8 file with path=FILE")
    text = read_input_text(p, "text", max_bytes=1 << 30)    # a pipe or device refused; UTF-8 checked
    return text[:max_chars] if max_chars else text


class CharLM(SyntheticTask):
    """Windows of a text file: inputs = chars t..t+T-1, targets = chars t+1..t+T (all scored)."""

    name, config_class = "charlm", CharLMConfig

    def __init__(self, config=None, **params):
        config = config if config is not None else CharLMConfig(**params)
        self.text = read_text(config.path, config.max_chars)
        if len(self.text) * config.test_fraction < config.seq_len + 1:
            raise UserError(f"{config.path}: {len(self.text)} characters are too few for test "
                            f"windows of seq_len={config.seq_len}; use a longer file or a smaller "
                            "seq_len")
        self.chars = sorted(set(self.text))
        super().__init__(config)

    @property
    def vocab(self):
        return SPECIALS + self.chars

    def decode(self, ids):
        return "".join(self.vocab[i] for i in np.asarray(ids).reshape(-1) if i >= len(SPECIALS))

    def encode(self, text):
        """Characters -> ids; UserError on a character the file did not contain."""
        unknown = sorted(set(text) - set(self.chars))
        if unknown:
            raise UserError(f"characters {unknown[:10]} do not occur in {self.config.path}")
        return self.ids(list(text))

    def identity(self):
        """The file's content hash stands for its path: the same text gives the same dataset."""
        config = asdict(self.config)
        config["path"] = hashlib.sha256(self.text.encode("utf-8")).hexdigest()
        return {"task": self.name, "version": VERSION, "config": config}

    def generate(self):
        c, T = self.config, self.config.seq_len
        ids = np.array(self.ids(self.text), dtype=np.int64)
        cut = int(len(ids) * (1.0 - c.test_fraction))
        head, tail = ids[:cut], ids[cut:]
        rng = np.random.default_rng(c.seed)
        starts = rng.integers(0, len(head) - T, c.n_train)                  # random train windows
        train = head[starts[:, None] + np.arange(T + 1)]                    # (N, T + 1)
        n_test = min(c.n_test, (len(tail) - 1) // T)
        test = tail[:n_test * T + 1]
        test = np.stack([test[i * T:i * T + T + 1] for i in range(n_test)])  # non-overlapping
        return {"train": {"inputs": train[:, :-1], "targets": train[:, 1:]},
                "test": {"inputs": test[:, :-1], "targets": test[:, 1:]}}
