"""Checkpoints: one .npz with the parameter arrays, a JSON `__meta__` header and the tokenizer's own
JSON `__tokenizer__` entry; no pickle, atomic.

load_checkpoint is the one loader: any model family (meta["extra"]["family"]), from the file or
from a run folder (experiments' model.npz, train_step_by_step's or the LM CLI's best.npz), or a
Hugging Face GPT-2 folder (config.json + model.safetensors, read by hf_gpt2.py). It checks
before it allocates (archive.py: the zip, the .npy headers, the JSON header; then the config's size),
so a crafted or damaged file is one UserError, never a traceback, a hang or a MemoryError.

meta = {"format": "glassformer", "version": 2, "config": ModelConfig, "tokenizer": {...}, "task": {...},
        "step": int, "metrics": {...}, "rng_state": {...}, "optimizer": {"class", "t", "lr"}}
Arrays: "param/<dotted name>" for the model, "optim/<name>" for optimizer state (Adam's m and v),
"__meta__" (the header, at most 1 MiB) and "__tokenizer__" (meta["tokenizer"], at most 128 MiB: GPT-2's
is 1.7 MB), both UTF-8 JSON as uint8. read_meta returns the two as one meta dict. Version 1 kept the
tokenizer inside the header (the checkpoints/*.npz shipped); it still loads.
"""
import json
import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from ..backend import to_numpy
from ..errors import UserError
from ..files import atomic_write
from ..models import ModelConfig, build_model
from ..research import EncoderDecoder, EncoderDecoderConfig, ToyConfig, build_toy_model
from ..tokenizers import tokenizer_from_dict
from ..tokenizers.registry import KINDS
from .archive import (FLOAT, HINT, MAX_HEADER_BYTES, MAX_MODEL_BYTES, MAX_TOKENIZER_BYTES,  # noqa: F401
                      NAT, NUMBER, POSITIVE, Archive, Check, archive_error, check_schema, needs_task,
                      parse_header, parsed_by)
from .hf_gpt2 import is_hf_folder, load_hf_gpt2, note_padding

FORMAT, VERSION = "glassformer", 2
READS = (1, 2)                          # 1: the tokenizer inside the header; 2: in its own entry
# meta["extra"]["family"] -> (config class, builder(config, rng)); no family: a ModelConfig model
# ("decoder_lm" is experiments' name for it; either kind builds through build_model).
FAMILIES = {"decoder_lm": (ModelConfig, build_model), "toy": (ToyConfig, build_toy_model),
            "encoder_decoder": (EncoderDecoderConfig, EncoderDecoder)}
RUN_FILES = ("model.npz", "best.npz")   # in a run folder: experiments' model, the CLIs' best one
SLACK_BYTES = 64 << 20                  # what a config may ask beyond its stored arrays (tables, masks)
TOKENIZER_SCHEMA = {"type?": str}
# the header, checked before anything else is read ("key?": optional)
META_SCHEMA = {"format": str, "version": int, "config": dict, "tokenizer?": (TOKENIZER_SCHEMA, None),
               "task?": ({"name?": str}, None), "step?": NAT, "metrics?": dict, "rng_state?": (dict, None),
               "extra?": dict, "optimizer?": {"class": str, "t": NAT, "lr": FLOAT}}
# parts of meta kept out of the header: key -> (its own JSON entry, that entry's bound, its schema)
PARTS = {"tokenizer": ("__tokenizer__", MAX_TOKENIZER_BYTES, TOKENIZER_SCHEMA)}


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


class NonFinite(UserError):
    """A checkpoint was not written because an array or number it would hold is NaN or inf."""

    def __init__(self, path, key, bad):
        self.path, self.key, self.bad = path, key, bad
        super().__init__(f"{path}: not saved: {key} holds {bad:,} non-finite values (NaN or inf), so "
                         "the run diverged; the file there (if any) is unchanged: lower --lr or bound "
                         "the steps with --grad-clip, and run again")


def check_savable(path, arrays, numbers):
    """NonFinite unless every array (parameters, optimizer moments) and number (lr, loss scale) is
    finite: a checkpoint that load_checkpoint would refuse is never written."""
    for key, a in arrays.items():
        if a.dtype.kind in "fc":
            bad = a.size - int(np.isfinite(a).sum())
            if bad:
                raise NonFinite(path, repr(key), bad)
    for key, value in numbers:
        if isinstance(value, float) and not math.isfinite(value):
            raise NonFinite(path, key, 1)


def _numbers(tree, where=""):
    """(dotted key, value) of every number in nested dicts and lists."""
    if isinstance(tree, dict):
        return [kv for k, v in tree.items() for kv in _numbers(v, f"{where}.{k}" if where else str(k))]
    if isinstance(tree, (list, tuple)):
        return [kv for i, v in enumerate(tree) for kv in _numbers(v, f"{where}[{i}]")]
    return [(where, tree)] if isinstance(tree, (int, float)) else []


def save_checkpoint(path, model, tokenizer=None, task=None, optimizer=None, step=0, rng=None,
                    metrics=None, extra=None):
    """Write model + metadata to `path` atomically; a full disk is a UserError, the old file intact;
    state with a NaN or inf anywhere (parameters, moments, loss scale) is NonFinite, nothing written."""
    path = Path(path)
    meta = {"format": FORMAT, "version": VERSION, "config": model.config.to_dict(),
            "tokenizer": tokenizer, "task": task, "step": int(step), "metrics": metrics or {},
            "rng_state": rng.bit_generator.state if rng is not None else None, "extra": extra or {}}
    arrays = {f"param/{name}": to_numpy(p) for name, (p, _) in model.named_parameters()}
    if optimizer is not None:
        state = optimizer.state_dict()
        meta["optimizer"] = {"class": optimizer_name(optimizer), "t": state["t"], "lr": state["lr"]}
        arrays.update({f"optim/{k}": to_numpy(v) for k, v in state["arrays"].items()})
    scaler = ((extra or {}).get("trainer") or {}).get("loss_scaler")       # the Trainer's fp16 state
    check_savable(path, arrays, _numbers({"optimizer": meta.get("optimizer"), "loss_scaler": scaler}))
    entries = {member: json_bytes(path, meta.pop(key), limit, key) for key, (member, limit, _)
               in PARTS.items() if meta.get(key) is not None}
    entries["__meta__"] = json_bytes(path, meta, MAX_HEADER_BYTES, "header")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as f:                 # readers see the old file or the new one
            np.savez(f, **entries, **arrays)
    except OSError as e:
        raise UserError(f"{path}: could not save the checkpoint ({e.strerror or e}); "
                        f"{'the old file is unchanged' if path.exists() else 'nothing was written'}: "
                        "free some disk space or choose another --out, then run again") from None
    return path


def json_bytes(path, value, limit, what):
    """value as UTF-8 JSON in a uint8 array, refused before anything is written if read_meta would
    refuse it for its size (a checkpoint that cannot be read back is never saved)."""
    raw = np.frombuffer(json.dumps(value).encode("utf-8"), dtype=np.uint8)
    if raw.size > limit:
        raise UserError(f"{path}: the checkpoint's {what} is {raw.size:,} bytes of JSON, over its limit "
                        f"of {limit:,}: nothing was written")
    return raw


def checkpoint_file(path):
    """The checkpoint a path names: the file itself, or a run folder's model.npz or best.npz."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in RUN_FILES:
        if (path / name).exists():
            return path / name
    raise UserError(f"{path}: no {' or '.join(RUN_FILES)} in this folder; give a checkpoint file, "
                    "a run folder (python -m glassformer.experiments, train_step_by_step.py) or a "
                    "Hugging Face GPT-2 folder (config.json + model.safetensors)")


def read_meta(path):
    """The metadata (the JSON header, the tokenizer entry put back in it) and the open, checked
    Archive of a checkpoint file; UserError if not one. The small header is checked first."""
    archive = Archive(path)
    try:
        if "__meta__" not in archive.headers:
            raise archive_error(path, f"not a glassformer checkpoint (no __meta__ entry); {HINT}")
        meta = archive.json("__meta__", MAX_HEADER_BYTES, "a JSON header", "the checkpoint header")
        if meta.get("format") != FORMAT:
            raise archive_error(path, f"not a glassformer checkpoint (format {meta.get('format')!r})")
        if meta.get("version") not in READS:
            raise archive_error(path, f"checkpoint format version {meta.get('version')!r} is not "
                                f"supported (this glassformer reads versions {READS[0]} to {READS[-1]})")
        check_schema(path, meta, META_SCHEMA, "header")
        for key, part in PARTS.items():
            if part[0] in archive.headers:
                meta[key] = read_part(archive, meta, key, *part)
    except BaseException:
        archive.close()
        raise
    return meta, archive


def read_part(archive, meta, key, member, limit, schema):
    """meta[key] from its own entry (after the header was checked): bounded, parsed, checked."""
    if meta.get(key) is not None:
        raise archive_error(archive.path, f"it holds a {key} both in its header and in its {member} "
                            "entry: not a checkpoint glassformer wrote, or a damaged one")
    value = archive.json(member, limit, f"a JSON {key}", f"the checkpoint's {key}")
    return check_schema(archive.path, value, schema, key)


def load_checkpoint(path, device=None, optimizer=True):
    """Rebuild the model saved in `path` (a file or run folder; optionally on "cpu"/"cuda"), of any
    family, checking the file, the header, the sizes, names, shapes and values first. optimizer=False
    checks the optimizer's state (AdamW: 2 numbers per parameter) one array at a time and keeps none
    (optimizer_state stays empty): for using the model only, in the memory of the model alone."""
    if is_hf_folder(path):                                  # a Hugging Face GPT-2 folder: hf_gpt2.py
        model, config, meta = load_hf_gpt2(path)
        return Checkpoint(model=model if device is None else model.to(device), config=config, meta=meta)
    path = checkpoint_file(path)
    meta, archive = read_meta(path)
    with archive:
        config, builder = model_config(path, meta)
        check_size(path, config, archive)
        check_tokenizer(path, meta.get("tokenizer"), config)
        check_rng_state(path, meta.get("rng_state"))
        try:
            model = builder(config, np.random.default_rng(0))
        except (ValueError, TypeError, UserError) as e:
            raise archive_error(path, f"cannot build the model its config describes ({e})") from None
        params = dict(model.named_parameters())
        check_params(path, archive, {name: p.shape for name, (p, _) in params.items()})
        state = {name: read_finite(archive, f"param/{name}", p.dtype) for name, (p, _) in params.items()}
        try:
            model.load_state_dict(state)
        except UserError as e:
            raise archive_error(path, str(e)) from None
        optimizer_state = {}
        if "optimizer" in meta:
            largest = max(p.size for p, _ in params.values())
            names = [k for k in archive.files if k.startswith("optim/")]
            for k in names:
                if math.prod(archive.headers[k].shape) > largest:
                    raise archive_error(path, f"optimizer state {k!r} of shape {archive.headers[k].shape}"
                                        " is larger than any parameter")
            if optimizer:
                optim = {k[len("optim/"):]: read_finite(archive, k) for k in names}
                optimizer_state = {**meta["optimizer"], "arrays": optim}
            else:
                for k in names:
                    read_finite(archive, k)                 # checked, then dropped: the model alone
    if device is not None:
        model.to(device)
    return Checkpoint(model=model, config=config, meta=meta, optimizer_state=optimizer_state)


# ---- the checks load_checkpoint makes, each before the allocation it guards ---------------------

def model_config(path, meta):
    """(config, builder) of the header's family; every field of the right type, or a UserError."""
    family = (meta.get("extra") or {}).get("family", "decoder_lm")
    if family not in FAMILIES:
        raise archive_error(path, f"unknown model family {family!r} (this glassformer builds "
                            f"{sorted(FAMILIES)})")
    config_class, builder = FAMILIES[family]
    d, types = meta["config"], typing.get_type_hints(config_class)
    unknown = sorted(set(d) - {f.name for f in fields(config_class)})
    if unknown:
        raise archive_error(path, f"unknown model config keys {unknown[:5]}: was the checkpoint "
                            "written by a newer glassformer?")
    spec = {name: {int: NAT, float: FLOAT}.get(types[name], types[name]) for name in d}
    check_schema(path, d, spec, "config")
    try:
        return config_class(**d), builder
    except (TypeError, ValueError, UserError) as e:
        raise archive_error(path, f"bad model config in checkpoint: {e}") from None


def parameter_bound(config):
    """An upper bound on the numbers building config's model allocates: parameters and fixed tables."""
    def g(name):
        return int(getattr(config, name, 0) or 0)
    C, T = g("d_model"), max(g("max_len"), g("n_ctx"))
    V = g("vocab_size") + g("tgt_vocab_size") + g("n_classes")
    F = max(g("d_ff"), g("d_mlp"), 4 * C)
    L = g("n_layers") + max(g("n_decoder_layers"), g("n_layers") if hasattr(config, "n_decoder_layers")
                            else 0) + max(g("n_blocks"), 2)
    return 2 * V * (C + 1) + 4 * T * C + L * (8 * C * C + 2 * C * F + 16 * C + 2 * F) + 16 * C


def check_size(path, config, archive):
    """The model the config describes must fit MAX_MODEL_BYTES and be (about) what the file stores."""
    itemsize = np.dtype(getattr(config, "dtype", "float32")).itemsize
    need = parameter_bound(config) * itemsize
    stored = sum(h.nbytes for k, h in archive.headers.items() if k.startswith("param/"))
    if need > MAX_MODEL_BYTES or need > 4 * stored + SLACK_BYTES:
        raise archive_error(path, f"its config describes a model of up to {need:,} bytes but the "
                            f"file stores {stored:,} bytes of parameters (the limit is "
                            f"{MAX_MODEL_BYTES:,}): the header does not match the arrays")


def check_tokenizer(path, tokenizer, config):
    """The tokenizer in the header must rebuild, and its ids must all have an embedding row."""
    if not tokenizer:
        return
    if "vocab" in tokenizer:                                # older headers: the id -> token list
        n = len(check_schema(path, tokenizer, {"vocab": list}, "tokenizer")["vocab"])
    elif tokenizer.get("type") in KINDS:
        n = tokenizer_from_dict(tokenizer, where=f"{path}: the tokenizer in the header").vocab_size
    else:
        return                                              # a kind only its task's code reads
    rows = getattr(config, "vocab_size", n)
    if n > rows:
        raise archive_error(path, f"its tokenizer has {n:,} tokens but the embedding only {rows:,} "
                            "rows: the header and the model do not belong together")
    if getattr(config, "kind", None) == "decoder_lm":
        note_padding(path, n, rows)                         # generate.py never samples the rest


def check_rng_state(path, state):
    """The saved generator state must be one NumPy's PCG64 accepts (resumed runs restore it)."""
    if state:
        try:
            np.random.default_rng().bit_generator.state = state
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            raise archive_error(path, f"the saved random-generator state is invalid ({e})") from None


def check_params(path, archive, shapes):
    """Every parameter stored, floating point, of the shape the model expects; nothing extra."""
    stored = {k[len("param/"):]: h for k, h in archive.headers.items() if k.startswith("param/")}
    missing, unexpected = sorted(set(shapes) - set(stored)), sorted(set(stored) - set(shapes))
    if missing or unexpected:
        raise archive_error(path, f"parameters do not match the model: missing {missing[:5]}, "
                            f"unexpected {unexpected[:5]}")
    for name, shape in shapes.items():
        if tuple(stored[name].shape) != tuple(shape):
            raise archive_error(path, f"parameter {name!r} has shape {stored[name].shape}, the "
                                f"model expects {tuple(shape)}")


def read_finite(archive, key, dtype=None):
    """archive[key] (cast to dtype), which must be floating point and hold no NaN or inf."""
    head = archive.headers[key]
    if head.dtype.kind != "f":
        raise archive_error(archive.path, f"{key!r} is a {head.dtype} array, not floating point")
    with np.errstate(over="ignore"):                        # 1e300 into float32 is inf: refused below
        a = archive[key].astype(dtype or head.dtype, copy=False)
    bad = a.size - int(np.isfinite(a).sum())
    if bad:
        raise archive_error(archive.path, f"{key!r} holds {bad:,} non-finite values (NaN or inf): the "
                            "run that wrote it diverged; use an earlier checkpoint or retrain with a "
                            "lower --lr")
    return a


def optimizer_name(optimizer):
    """The optimizer class a checkpoint names: its own, or the one whose state it saves (ZeRO's
    ShardedAdamW saves AdamW's)."""
    return getattr(optimizer, "checkpoint_name", type(optimizer).__name__)


def restore_optimizer(optimizer, checkpoint):
    """Load a checkpoint's optimizer state into a freshly built optimizer of the same class."""
    state = checkpoint.optimizer_state
    if not state:
        raise UserError("the checkpoint holds no optimizer state: it cannot resume training")
    if state["class"] != optimizer_name(optimizer):
        raise UserError(f"the checkpoint was trained with {state['class']}, not "
                        f"{optimizer_name(optimizer)}")
    try:
        optimizer.load_state_dict(state)
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"optimizer state does not match the model: {e}") from None
