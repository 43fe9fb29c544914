"""The trace a reader follows: one --task lm update, from Trainer.update to the AdamW update, in a
one-process fp32 run with the plain reference (no overlay), opens at most 6 files outside layers/.

A file counts when one of its functions runs while no layers/ function is on the stack below it: what
a layer calls for its own math is read with the layer. The files are listed in the order first opened.
"""
import inspect
import io
import sys
from pathlib import Path

import numpy as np

import glassformer
from glassformer import backend
from glassformer.data import lm_batches
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.models import build_model, lm_config
from glassformer.train import TrainConfig, Trainer

PACKAGE = Path(glassformer.__file__).resolve().parent
MAX_FILES = 6
MAX_FIT_LINES = 60


def package_file(frame):
    """frame's file relative to the package (e.g. 'train/step.py'), or None outside it."""
    path = Path(frame.f_code.co_filename).resolve()
    return path.relative_to(PACKAGE).as_posix() if path.is_relative_to(PACKAGE) else None


def in_layers(frame):
    """True when frame or a frame that called it runs in layers/."""
    while frame is not None:
        if (package_file(frame) or "").startswith("layers/"):
            return True
        frame = frame.f_back
    return False


def files_opened(run):
    """The package files outside layers/ whose functions run(), in the order first entered."""
    opened = []

    def profile(frame, event, arg):
        name = package_file(frame) if event == "call" else None
        if name and not name.startswith("layers/") and name not in opened and not in_layers(frame.f_back):
            opened.append(name)
    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return opened


def tiny_trainer():
    """A Trainer of a 1-block DecoderLM on --task lm's batches (random windows of a token array)."""
    tokens = np.arange(300, dtype=np.int64) % 17
    model = build_model(lm_config("tiny", 17, d_model=16, n_heads=2, n_layers=1, max_len=8),
                        np.random.default_rng(0))
    config = TrainConfig(steps=4, warmup=2, grad_accum=2, grad_clip=1.0)
    return Trainer(model, CrossEntropyLoss(), lm_batches(tokens, 2, 8), config, log=io.StringIO())


def test_one_update_opens_at_most_six_files_outside_layers():
    trainer = tiny_trainer()
    with backend.use_overlay(False):
        opened = files_opened(trainer.update)
    assert trainer.step == 1 and trainer.grad_norm is not None     # the update ran: clip and step
    assert {"train/trainer.py", "train/step.py", "models/decoder.py"} <= set(opened)
    assert len(opened) <= MAX_FILES, f"{len(opened)} files: " + " -> ".join(opened)


def test_fit_reads_in_one_screen():
    lines = inspect.getsource(Trainer.fit).splitlines()
    assert len(lines) <= MAX_FIT_LINES, f"Trainer.fit is {len(lines)} lines"
