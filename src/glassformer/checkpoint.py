"""Checkpoints: one .npz with the parameter arrays plus a JSON `__meta__` entry; no pickle, atomic.

load_checkpoint is the one loader: any model family (meta["extra"]["family"]), from the file or
from a run folder (experiments' model.npz, train_step_by_step's or the LM CLI's best.npz).

meta = {"format": "glassformer", "version": 1, "config": ModelConfig, "tokenizer": {...}, "task": {...},
        "step": int, "metrics": {...}, "rng_state": {...}, "optimizer": {"class", "t", "lr"}}
Arrays: "param/<dotted name>" for the model, "optim/<name>" for optimizer state (Adam's m and v).
"""
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backend import to_numpy
from .errors import UserError
from .files import atomic_write
from .models import ModelConfig, build_model
from .research import EncoderDecoder, EncoderDecoderConfig, ToyConfig, build_toy_model

FORMAT, VERSION = "glassformer", 1
# meta["extra"]["family"] -> (config class, builder(config, rng)); no family: a ModelConfig model
# ("decoder_lm" is experiments' name for it; either kind builds through build_model).
FAMILIES = {"decoder_lm": (ModelConfig, build_model), "toy": (ToyConfig, build_toy_model),
            "encoder_decoder": (EncoderDecoderConfig, EncoderDecoder)}
RUN_FILES = ("model.npz", "best.npz")   # in a run folder: experiments' model, the CLIs' best one


@dataclass
class Checkpoint:
    """What load_checkpoint returns: the rebuilt model and everything saved beside it."""
    model: object
    config: object                     # ModelConfig, ToyConfig or EncoderDecoderConfig
    meta: dict
    optimizer_state: dict = field(default_factory=dict)

    @property
    def tokenizer(self):
        return self.meta.get("tokenizer")

    @property
    def task(self):
        return self.meta.get("task")

    @property
    def step(self):
        return self.meta.get("step", 0)

    @property
    def metrics(self):
        return self.meta.get("metrics", {})

    @property
    def experiment(self):
        """The Experiment (as a dict) of a glassformer.experiments run, else None."""
        return (self.meta.get("extra") or {}).get("experiment")

    def rng(self):
        """A NumPy Generator in exactly the saved state (so a resumed run draws the same numbers)."""
        rng = np.random.default_rng()
        if self.meta.get("rng_state"):
            rng.bit_generator.state = self.meta["rng_state"]
        return rng


def save_checkpoint(path, model, tokenizer=None, task=None, optimizer=None, step=0, rng=None,
                    metrics=None, extra=None):
    """Write model + metadata to `path` atomically (glassformer.files.atomic_write)."""
    path = Path(path)
    meta = {"format": FORMAT, "version": VERSION, "config": model.config.to_dict(),
            "tokenizer": tokenizer, "task": task, "step": int(step), "metrics": metrics or {},
            "rng_state": rng.bit_generator.state if rng is not None else None, "extra": extra or {}}
    arrays = {f"param/{name}": to_numpy(p) for name, (p, _) in model.named_parameters()}
    if optimizer is not None:
        state = optimizer.state_dict()
        meta["optimizer"] = {"class": type(optimizer).__name__, "t": state["t"], "lr": state["lr"]}
        arrays.update({f"optim/{k}": to_numpy(v) for k, v in state["arrays"].items()})
    meta_bytes = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:                 # readers see the old file or the new one
        np.savez(f, __meta__=meta_bytes, **arrays)
    return path


def checkpoint_file(path):
    """The checkpoint a path names: the file itself, or a run folder's model.npz or best.npz."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in RUN_FILES:
        if (path / name).exists():
            return path / name
    raise UserError(f"{path}: no {' or '.join(RUN_FILES)} in this folder; give a checkpoint file "
                    "or a run folder (python -m glassformer.experiments, train_step_by_step.py)")


def read_meta(path):
    """The JSON header and the open archive of a checkpoint file, validated; UserError if not one."""
    path = Path(path)
    hint = "train one with: python train_step_by_step.py --task digits"
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint file; {hint}")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a .npz checkpoint (not a zip archive; truncated or another "
                        f"kind of file?); {hint}")
    try:
        archive = np.load(path, allow_pickle=False)
        raw = archive["__meta__"]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise UserError(f"{path}: not a readable .npz checkpoint ({e}); the file may be truncated "
                        f"or corrupt: {hint}") from None
    except KeyError:
        raise UserError(f"{path}: not a glassformer checkpoint (no __meta__ entry); {hint}") from None
    try:
        meta = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: the checkpoint header is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path}: not a glassformer checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise UserError(f"{path}: checkpoint format version {meta.get('version')} is not supported "
                        f"(this glassformer reads version {VERSION})")
    if "config" not in meta:
        raise UserError(f"{path}: the checkpoint header has no model config")
    return meta, archive


def load_checkpoint(path, device=None):
    """Rebuild the model saved in `path` (a file or run folder; optionally on "cpu"/"cuda"), of any
    family, checking names and shapes."""
    path = checkpoint_file(path)
    meta, archive = read_meta(path)
    family = (meta.get("extra") or {}).get("family", "decoder_lm")
    if family not in FAMILIES:
        raise UserError(f"{path}: unknown model family {family!r} (this glassformer builds "
                        f"{sorted(FAMILIES)})")
    config_class, builder = FAMILIES[family]
    try:
        config = (config_class.from_dict(meta["config"]) if hasattr(config_class, "from_dict")
                  else config_class(**meta["config"]))
    except (TypeError, UserError) as e:
        raise UserError(f"{path}: bad model config in checkpoint: {e}") from None
    model = builder(config, np.random.default_rng(0))
    state = {k[len("param/"):]: archive[k] for k in archive.files if k.startswith("param/")}
    try:
        model.load_state_dict(state)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    if device is not None:
        model.to(device)
    optim = {k[len("optim/"):]: archive[k] for k in archive.files if k.startswith("optim/")}
    optimizer_state = {}
    if "optimizer" in meta:
        optimizer_state = {"t": meta["optimizer"]["t"], "lr": meta["optimizer"]["lr"],
                           "class": meta["optimizer"]["class"], "arrays": optim}
    return Checkpoint(model=model, config=config, meta=meta, optimizer_state=optimizer_state)


def restore_optimizer(optimizer, checkpoint):
    """Load a checkpoint's optimizer state into a freshly built optimizer of the same class."""
    state = checkpoint.optimizer_state
    if not state:
        raise UserError("the checkpoint holds no optimizer state: it cannot resume training")
    if state["class"] != type(optimizer).__name__:
        raise UserError(f"the checkpoint was trained with {state['class']}, not "
                        f"{type(optimizer).__name__}")
    try:
        optimizer.load_state_dict(state)
    except (KeyError, ValueError) as e:
        raise UserError(f"optimizer state does not match the model: {e}") from None
