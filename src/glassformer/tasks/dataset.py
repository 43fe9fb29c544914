"""Seeded, cached datasets: a task's arrays saved as .cache/glassformer/<hash>.npz (atomic write, no pickle).

The same config gives the same arrays on every machine. Decoder tasks give inputs (N, T) and targets
(N, T), IGNORE where a position is not scored; encoder-decoder tasks give src (N, S), tgt_in and
tgt_out (N, T + 1).
"""
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..files import atomic_write
from ..inputs import open_input, parse_json
from .base import SyntheticTask


def cache_dir(path=None):
    """Where datasets are cached: path, else $GLASSFORMER_CACHE, else ./.cache/glassformer."""
    return Path(path or os.environ.get("GLASSFORMER_CACHE") or Path(".cache") / "glassformer")


@dataclass
class Dataset:
    """A generated (or cached) dataset: its task, hash key, and train/test arrays."""
    task: SyntheticTask
    key: str
    train: dict
    test: dict

    @property
    def vocab(self):
        return self.task.vocab


def save_arrays(path, arrays, meta):
    """Write {name: array} and a JSON meta entry to one .npz atomically: one rename covers both."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        np.savez(f, __meta__=np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8), **arrays)
    return path


def load_arrays(path):
    """(meta, {name: array}) from save_arrays, or None when the file is missing or unreadable."""
    try:
        with open_input(path, "checkpoint", binary=True) as file, np.load(file, allow_pickle=False) as f:
            meta = parse_json(bytes(f["__meta__"]), str(path))
            return meta, {k: f[k] for k in f.files if k != "__meta__"}
    except (UserError, OSError, ValueError, KeyError, EOFError, UnicodeDecodeError):
        return None


def load_dataset(task, cache=None, use_cache=True):
    """The task's dataset, read from the cache when an entry with the same key and config exists."""
    key, meta = task.key(), json.loads(json.dumps(task.identity()))   # tuples -> lists, as read
    path = cache_dir(cache) / f"{key}.npz"
    found = load_arrays(path) if use_cache else None
    if found is not None and found[0] == meta:
        split = {"train": {}, "test": {}}
        for name, arr in found[1].items():
            s, field = name.split(".", 1)
            split[s][field] = arr
        return Dataset(task, key, split["train"], split["test"])
    data = task.generate()
    if use_cache:
        save_arrays(path, {f"{s}.{k}": v for s, arrays in data.items() for k, v in arrays.items()},
                    meta)
    return Dataset(task, key, data["train"], data["test"])
