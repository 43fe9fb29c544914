"""What python -m glassformer.explain does (its flags are in cli/explain.py).

It loads a checkpoint, a run folder or a Hugging Face GPT-2 folder, turns --text into one example
(ids and targets, as the model's task trains on them), records one training step and writes the page.
"""
import sys
from pathlib import Path

import numpy as np

from ..checkpoint import load_checkpoint
from ..errors import UserError
from ..layers.loss import CrossEntropyLoss
from ..models.decoder import DecoderLM
from ..models.encoder import EncoderClassifier
from ..optim import AdamW, decay_mask
from ..tasks import digits, sentences
from ..tokenizers import tokenizer_from_dict
from .page import Example, build_island, write_page

DEFAULT_TEXT = {"digits": "Max ( 5 3 9 )", "sentences": "the cat sat on the mat",
                "lm": "First Citizen:\nBefore we proceed any further, hear me speak."}


def task_of(ckpt, path):
    """'digits', 'sentences' or 'lm': which example the model takes; UserError for what it cannot show."""
    family = (ckpt.meta.get("extra") or {}).get("family", "decoder_lm")
    if family != "decoder_lm" or type(ckpt.model) not in (DecoderLM, EncoderClassifier):
        raise UserError(f"{path}: a research model ({family}, {type(ckpt.model).__name__}) that this page "
                        "cannot show: it shows the decoder LMs and encoder classifiers that "
                        "train_step_by_step.py trains, and Hugging Face GPT-2 folders")
    name = (ckpt.task or {}).get("name") if isinstance(ckpt.task, dict) else None
    if isinstance(ckpt.model, EncoderClassifier):
        if name != "digits":
            raise UserError(f"{path}: a classifier of task {name!r}: this page knows the digits one")
        return "digits"
    return "sentences" if name == "sentences" else "lm"


def digits_example(ckpt, text):
    """'Max ( 5 3 9 )' -> ids padded to the task's length, the answer as the target class."""
    saved = ckpt.task.get("config", ckpt.task)
    fields = digits.DigitsConfig.__dataclass_fields__
    config = digits.DigitsConfig(**{k: v for k, v in saved.items() if k in fields})
    op, args = digits.parse(text, max_args=config.n_args)
    ids = digits.encode(op, args, length=config.seq_len)
    return Example(text, np.array([ids], np.int64), np.array([digits.answer(op, args)], np.int64),
                   [digits.VOCAB[i] for i in ids], [str(digits.answer(op, args))])


def sentences_example(ckpt, text):
    """'the cat sat' -> <START> the cat sat <END>, read through the checkpoint's word vocabulary."""
    saved = ckpt.tokenizer or {}
    vocab = list(saved.get("specials", [])) + list(saved["words"]) if "words" in saved else \
        sentences.vocabulary()
    index = {w: i for i, w in enumerate(vocab)}
    unknown = [w for w in text.split() if w not in index]
    if unknown:
        raise UserError(f"--text: unknown word {unknown[0]!r}; the vocabulary is: "
                        f"{' '.join(w for w in vocab if w not in sentences.SPECIALS)}")
    seq = [index["<START>"]] + [index[w] for w in text.split()] + [index["<END>"]]
    return lm_example(ckpt, text, seq, lambda i: vocab[i])


def lm_example(ckpt, text, seq, label):
    """Inputs seq[:-1], targets seq[1:], checked against the model's context."""
    context = ckpt.config.max_len
    if len(seq) < 2:
        raise UserError(f"--text {text!r} is {len(seq)} token(s): give at least 2 (the model reads the "
                        "first and predicts the next)")
    if len(seq) - 1 > context:
        raise UserError(f"--text is {len(seq)} tokens, longer than this model's context of {context} "
                        f"(+1 for the last target): shorten it to at most {context + 1} tokens")
    labels = [label(i) for i in seq]
    ids, targets = np.array([seq[:-1]], np.int64), np.array([seq[1:]], np.int64)   # (1, T) each
    return Example(text, ids, targets, labels[:-1], labels[1:])


def token_label(tok, i):
    """A token as the page shows it: its text, with spaces and line ends visible."""
    try:
        s = tok.decode([i])
    except (KeyError, IndexError, ValueError):
        s = f"<{i}>"
    return s.replace(" ", "\u2423").replace("\n", "\u21b5") or f"<{i}>"


def text_example(ckpt, text, default):
    """A language model's example: its tokenizer's ids (the default text cut to fit the context)."""
    if not ckpt.tokenizer:
        raise UserError("the checkpoint holds no tokenizer: it cannot turn --text into ids")
    tok = tokenizer_from_dict(ckpt.tokenizer)
    seq = [int(i) for i in tok.encode(text)]
    if default:
        seq = seq[:ckpt.config.max_len + 1]
    return lm_example(ckpt, text, seq, lambda i: token_label(tok, i))


def load_example(path, text=None):
    """(checkpoint, Example) for `path` and --text (None: the task's default example)."""
    if not Path(path).exists():
        raise UserError(f"{path}: no such file or folder; give a checkpoint (.npz), a run folder or a "
                        "Hugging Face GPT-2 folder, e.g. checkpoints/digits.npz")
    ckpt = load_checkpoint(path, optimizer=False)
    task = task_of(ckpt, path)
    given = text is not None
    text = text if given else DEFAULT_TEXT[task]
    if task == "digits":
        return ckpt, digits_example(ckpt, text)
    if task == "sentences":
        return ckpt, sentences_example(ckpt, text)
    return ckpt, text_example(ckpt, text, not given)


def explain(path, text=None, out="step.html", lr=1e-3, stdout=None):
    """Write the page of one training step of the model at `path`; returns its size in bytes."""
    ckpt, example = load_example(path, text)
    model = ckpt.model
    optimizer = AdamW(model.get_parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.1,
                      decay=decay_mask(model.named_parameters()))   # as --task lm trains
    island = build_island(model, example, CrossEntropyLoss(), optimizer, path, restore=False)
    size = write_page(out, island)
    print(f"wrote {out}: {len(island['stages'])} stages of one training step on {len(example.labels)} tokens "
          f"(loss {island['loss']:.4f}), {size / 1e6:.1f} MB; open it in a browser",
          file=stdout or sys.stdout)
    return size
