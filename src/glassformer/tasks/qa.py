"""Question-answer pairs for --task qa: reading .jsonl/.tsv files, the prompt template, answer-only targets.

Text-level (no tokenizer here: runner/qa.py turns the texts into ids). The template is the one
test_model_manually.py --chat sends, so a fine-tuned model is asked the way it was taught.
"""
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import UserError
from ..inputs import parse_json, read_bytes
from .base import IGNORE

CHAT_TEMPLATE = "Question: {input}\nAnswer:"             # what the model is sent
ANSWER_END = "\n"                                        # ends every taught answer (then eos, if any)
NEXT_QUESTION = "\nQuestion:"                            # where a --chat answer ends at the latest
SUFFIXES = (".jsonl", ".tsv")
FORMATS = ('a .jsonl file (one {"question": "...", "answer": "..."} object a line) or a .tsv file '
           "(question<TAB>answer a line)")


class QAPair(NamedTuple):
    """One question, its answer, and where it was read ("file:line"), for messages."""
    question: str
    answer: str
    where: str


def prompt_text(question):
    """The prompt of a question: CHAT_TEMPLATE filled in."""
    return CHAT_TEMPLATE.format(input=question)


def answer_text(answer):
    """What the model learns to write after the prompt: a space, the answer, the end marker."""
    return " " + answer + ANSWER_END


def answer_of(reply):
    """The answer in a reply: up to the first end marker (NEXT_QUESTION starts with one), stripped."""
    return reply.split(ANSWER_END)[0].strip()


# ---- files ---------------------------------------------------------------------------------

def read_pairs(path):
    """The QAPairs of a .jsonl or .tsv file; UserError naming file:line and what is wrong there."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(f"{path}: Q&A pairs come in {FORMATS}")
    data = read_bytes(path, "qa")                       # a FIFO, device or folder: refused, unopened
    parse = _jsonl_pair if path.suffix.lower() == ".jsonl" else _tsv_pair
    pairs = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8").removesuffix("\r")
        except UnicodeDecodeError as e:
            raise UserError(f"{where}: not UTF-8 text (byte {e.start + 1} of the line)") from None
        if line.strip() and not (number == 1 and line.lower().split("\t") == ["question", "answer"]):
            pairs.append(_checked(where, *parse(where, line)))
    if not pairs:
        raise UserError(f"{path}: no question-answer pairs in it; give {FORMATS}")
    return pairs


def _jsonl_pair(where, line):
    """(question, answer) of one JSON Lines record."""
    record = parse_json(line, where)                      # bounded: depth, number length, no NaN
    if not isinstance(record, dict):
        raise UserError(f"{where}: a JSON {type(record).__name__}, not an object like "
                        '{"question": "...", "answer": "..."}')
    for field in ("question", "answer"):
        if not isinstance(record.get(field), str):
            what = "no" if field not in record else f"a {type(record[field]).__name__}, not a string, as"
            raise UserError(f"{where}: {what} {field!r} field; each line must be one object like "
                            '{"question": "...", "answer": "..."}')
    return record["question"], record["answer"]


def _tsv_pair(where, line):
    """(question, answer) of one tab-separated line."""
    fields = line.split("\t")
    if len(fields) != 2:
        raise UserError(f"{where}: {len(fields)} tab-separated field{'s' * (len(fields) != 1)}, "
                        "expected 2: question<TAB>answer")
    return fields[0], fields[1]


def _checked(where, question, answer):
    """A QAPair of stripped texts; UserError for an empty one or one that spans lines."""
    for name, text in (("question", question), ("answer", answer)):
        if not text.strip():
            raise UserError(f"{where}: the {name} is empty")
        if "\n" in text or "\r" in text:
            raise UserError(f"{where}: the {name} holds a line break; a question and an answer are one "
                            "line each (the answer ends at the first newline)")
    return QAPair(question.strip(), answer.strip(), where)


def split_pairs(pairs, val_fraction=0.1):
    """(train, held out): the last val_fraction of the pairs (at least one) are held out."""
    if len(pairs) < 2:
        raise UserError(f"{pairs[0].where.rsplit(':', 1)[0]}: one pair cannot be both trained on and "
                        "held out: add pairs or give held-out ones with --val-data")
    n_val = min(len(pairs) - 1, max(1, round(len(pairs) * val_fraction)))
    return pairs[:-n_val], pairs[-n_val:]


# ---- ids -----------------------------------------------------------------------------------

def masked_example(prompt_ids, answer_ids, ignore=IGNORE):
    """(x, y) lists of a pair: x = prompt + answer but the last id, y = the next ids, the prompt's ignored."""
    seq = list(prompt_ids) + list(answer_ids)
    return seq[:-1], mask_prompt(seq[1:], len(prompt_ids), ignore)


def mask_prompt(targets, n_prompt, ignore=IGNORE):
    """The next-id targets of prompt + answer with those inside the prompt ignored: answers alone count."""
    k = max(n_prompt - 1, 0)                                # targets[k] is the first answer id
    return [ignore] * k + list(targets[k:])


def pad_rows(examples, width, pad_id=0, ignore=IGNORE):
    """(x, y) int64 arrays (B, width) of (x, y) examples, left-aligned; padding is ignored in y."""
    x = np.full((len(examples), width), pad_id, np.int64)          # (B, T)
    y = np.full((len(examples), width), ignore, np.int64)          # (B, T)
    for b, (xb, yb) in enumerate(examples):
        x[b, :len(xb)], y[b, :len(yb)] = xb, yb
    return x, y
