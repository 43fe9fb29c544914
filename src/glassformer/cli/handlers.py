"""What test_model_manually.py does with one typed line, per task: digits, sentences, lm.

Each handler's answer(text, write) passes its reply to write() piece by piece as it is generated
(the REPL prints and flushes each piece) and returns the ids and labels for the attention view;
record(text) returns the same reply as a dict, one JSON line of --json.
"""
import contextlib
import re

import numpy as np

from ..backend import array_module, to_numpy
from ..errors import UserError
from ..generate import MAX_NEW_TOKENS as SAMPLING_MAX_NEW
from ..generate import TOP_K, TOP_P, TEMPERATURE, TextStream, eos_id, special_ids, stream_tokens
from ..layers import softmax
from ..tasks import digits, sentences
from ..tasks.qa import CHAT_TEMPLATE, NEXT_QUESTION   # --chat: the template --task qa teaches
from ..tokenizers import tokenizer_from_dict
from .common import TokenNames

MAX_NEW_TOKENS = SAMPLING_MAX_NEW.high                      # longest continuation one may ask for
# name -> (its domain, example): the same domains as the flags and generate.py; top_k, top_p take "off"
SETTINGS = {"temperature": (TEMPERATURE, "0.8"), "top_k": (TOP_K, "40"), "top_p": (TOP_P, "0.9"),
            "max_tokens": (SAMPLING_MAX_NEW, "200")}


def sampling_settings(args, max_tokens, temperature):
    """The `set` settings from the flags, with the handler's defaults where a flag is not given."""
    return {"temperature": temperature if args.temperature is None else args.temperature,
            "top_k": args.top_k, "top_p": getattr(args, "top_p", None),
            "max_tokens": max_tokens if args.max_new_tokens is None else args.max_new_tokens}


def parse_setting(name, text):
    """(name, value) of `set NAME TEXT`, validated; a UserError says what to type instead."""
    name = name.lower().replace("-", "_")
    name = {"max_new_tokens": "max_tokens"}.get(name, name)
    if name not in SETTINGS:
        raise UserError(f"unknown setting {name!r}: use {', '.join(SETTINGS)} (set alone shows them)")
    domain, example = SETTINGS[name]
    if name in ("top_k", "top_p") and text.lower() in ("off", "none"):
        return name, None
    try:
        return name, domain.parse_text(text)
    except ValueError:
        off = " or off" if name in ("top_k", "top_p") else ""
        raise UserError(f"set {name} {text}: {name} must be {domain.text}{off}, e.g. set {name} "
                        f"{example}") from None


def format_settings(settings):
    """'temperature 0.8, top_k off, ...' for `set` with no arguments."""
    return ", ".join(f"{k} {'off' if v is None else v}" for k, v in settings.items())


# ---------------------------------------------------------------- one handler per task

def tokenizer_vocab(meta_tokenizer, default):
    """The id -> token list saved in a checkpoint header ({"vocab": [...]} or a WordTokenizer dict)."""
    if not meta_tokenizer:
        return list(default)
    if "vocab" in meta_tokenizer:
        return list(meta_tokenizer["vocab"])
    if "words" in meta_tokenizer:
        return list(meta_tokenizer.get("specials", [])) + list(meta_tokenizer["words"])
    raise UserError(f"unreadable tokenizer in the checkpoint header (keys {sorted(meta_tokenizer)})")


class DigitsHandler:
    """An expression -> the predicted digit, its top-3 probabilities and the correct answer."""

    prompt, example = "expr> ", "Max ( 5 3 9 )"

    def __init__(self, ckpt, args):
        self.model = ckpt.model
        saved = ckpt.task.get("config", ckpt.task)             # nested, or flat beside "name"
        fields = digits.DigitsConfig.__dataclass_fields__
        try:
            self.task = digits.DigitsConfig(**{k: v for k, v in saved.items() if k in fields})
        except (TypeError, AttributeError) as e:
            raise UserError(f"bad digits task config in the checkpoint: {e}") from None
        if tokenizer_vocab(ckpt.tokenizer, digits.VOCAB) != digits.VOCAB:
            raise UserError("the checkpoint's digits vocabulary differs from this glassformer's; "
                            "retrain it with: python train_step_by_step.py --task digits")

    def describe(self):
        t = self.task
        return (f"digits: type an operation ({', '.join(digits.OPERATIONS)}) on up to {t.n_args} "
                f"digits, e.g. {self.example}  (trained on digits {t.low}..{t.high})")

    def known_numbers(self, text):
        """UserError for a number the model has no token for (12 would be read as the digits 1 2)."""
        for number in re.findall(r"\d+", text):
            if len(number) > 1:
                trained = " ".join(str(d) for d in range(self.task.low, self.task.high + 1))
                raise UserError(f"{number} is not a digit this model knows: it was trained on {trained} "
                                f"(one digit per argument, e.g. {self.example})")

    def predict(self, text):
        """(op, args, ids, probabilities (10,)) of one typed expression."""
        self.known_numbers(text)
        op, args = digits.parse(text, max_args=self.task.n_args)
        ids = digits.encode(op, args, length=self.task.seq_len)
        xp = array_module(self.model.tok_emb.W)
        self.model.eval()
        probs = to_numpy(softmax(self.model.forward(xp.asarray([ids]))))[0]   # (n_classes,)
        return op, args, ids, probs

    def answer(self, text, write):
        """Write the prediction, its top-3 and the correct answer; returns (ids, token labels)."""
        op, args, ids, probs = self.predict(text)
        top = np.argsort(-probs)[:3]
        truth = digits.answer(op, args)
        verdict = "right" if top[0] == truth else "WRONG"
        write(f"{digits.decode(ids)} -> {top[0]}   (correct answer: {truth}, {verdict})\n"
              "top-3: " + "  ".join(f"{d} {probs[d]:.3f}" for d in top) + "\n")
        if any(not self.task.low <= a <= self.task.high for a in args):
            write(f"note: the model was trained on digits {self.task.low}..{self.task.high} only\n")
        return ids, [digits.VOCAB[i] for i in ids]

    def record(self, text):
        """The prediction as a dict (one --json line)."""
        op, args, ids, probs = self.predict(text)
        return {"prompt": text, "prompt_ids": [int(i) for i in ids], "prediction": int(probs.argmax()),
                "probabilities": [round(float(p), 6) for p in probs],
                "correct_answer": int(digits.answer(op, args))}


class Sampler:
    """The sampling part of the sentences and lm handlers: settings, one seeded RNG, banned ids."""

    def __init__(self, model, args, max_tokens, temperature, eos, banned, vocab_size=None):
        self.model, self.eos, self.banned, self.seed = model, eos, banned, args.seed
        self.vocab_size = vocab_size                        # the tokenizer's: ids beyond never come
        self.settings = sampling_settings(args, max_tokens=max_tokens, temperature=temperature)
        self.rng = np.random.default_rng(args.seed)         # one stream for every reply and sample

    def tokens(self, ids):
        """stream_tokens after ids with the current settings: special tokens but the end never come."""
        s = self.settings
        return stream_tokens(self.model, ids, s["max_tokens"], temperature=s["temperature"],
                             top_k=s["top_k"], top_p=s["top_p"], eos_id=self.eos, rng=self.rng,
                             banned=self.banned, vocab_size=self.vocab_size)

    def used(self):
        """The settings of a reply, for --json."""
        return {**self.settings, "seed": self.seed}


class SentencesHandler(Sampler):
    """A prefix of words -> its continuation, greedy by default, until <END> or --max-new-tokens."""

    prompt, example = "text> ", "the cat"

    def __init__(self, ckpt, args):
        self.vocab = tokenizer_vocab(ckpt.tokenizer, sentences.vocabulary())
        self.index = {w: i for i, w in enumerate(self.vocab)}
        missing = [s for s in sentences.SPECIALS if s not in self.index]
        if missing:
            raise UserError(f"the checkpoint's vocabulary lacks the special tokens {missing}")
        self.start, end = self.index["<START>"], self.index["<END>"]
        banned = [self.index[s] for s in sentences.SPECIALS if s != "<END>"]   # <PAD>, <START>
        super().__init__(ckpt.model, args, max_tokens=20, temperature=0.0, eos=end, banned=banned)

    def words(self):
        return [w for w in self.vocab if w not in sentences.SPECIALS]

    def describe(self):
        return (f"sentences: type the first words of a sentence, e.g. {self.example!r}; "
                f"{len(self.words())} known words: {' '.join(self.words())}")

    def encode(self, text):
        """'The cat' -> [<START>, the, cat]; an unknown word is a UserError listing the vocabulary."""
        ids = [self.start]
        for w in text.split():
            if w == "<START>" and len(ids) == 1:
                continue
            i = self.index.get(w, self.index.get(w.lower()))
            if i is None or w in ("<PAD>", "<END>"):
                raise UserError(f"unknown word {w!r}; the vocabulary is: {' '.join(self.words())}")
            ids.append(i)
        return ids

    def continued(self, ids, write):
        """Sample after ids, writing ' word' per new word; returns (new ids, ended at <END>)."""
        new = []
        with contextlib.closing(self.tokens(ids)) as tokens:
            for i in tokens:
                new.append(i)
                if i != self.eos:
                    write(" " + self.vocab[i])
        return new, bool(new) and new[-1] == self.eos

    def answer(self, text, write):
        """'prefix | new words <END>' (or '(stopped after N new words)'), streamed word by word."""
        ids = self.encode(text)
        prefix = " ".join(self.vocab[i] for i in ids[1:])
        write(f"{prefix} |" if prefix else "|")
        new, ended = self.continued(ids, write)
        write(" <END>\n" if ended else f" (stopped after {len(new)} new words)\n")
        seq = ids + new
        return seq, [self.vocab[i] for i in seq]

    def record(self, text):
        ids, words = self.encode(text), []
        new, ended = self.continued(ids, words.append)
        return {"prompt": text, "prompt_ids": ids, "new_ids": new, "text": "".join(words).strip(),
                "ended": ended, "settings": self.used()}


class ChatAnswer:
    """The answer part of streamed --chat text: no leading or trailing blanks, cut at the next question.

    Pieces pushed in come out as soon as they cannot be the start of NEXT_QUESTION or trailing blanks,
    so the printed text equals body.split(NEXT_QUESTION)[0].strip() of the whole reply.
    """

    def __init__(self):
        self.held, self.started, self.done = "", False, False

    def push(self, piece):
        """The part of held + piece that is surely in the answer."""
        text = self.held + piece
        cut = text.find(NEXT_QUESTION)
        if cut >= 0:
            self.held, self.done, out = "", True, text[:cut].rstrip()
        else:
            keep = len(text)
            for k in range(min(len(NEXT_QUESTION) - 1, len(text)), 0, -1):
                if text.endswith(NEXT_QUESTION[:k]):         # maybe the start of the next question
                    keep -= k
                    break
            keep = len(text[:keep].rstrip())                # blanks wait for what follows them
            self.held, out = text[keep:], text[:keep]
        if not self.started:
            out = out.lstrip()
            self.started = bool(out)
        return out

    def flush(self):
        """What is held at the end, less trailing blanks."""
        text, self.held = self.held.rstrip(), ""
        return text if self.started else text.lstrip()


class LMHandler(Sampler):
    """Text -> the model's continuation, sampled (temperature 0.8 unless --temperature or `set`)."""

    prompt, example = "text> ", "ROMEO:"

    def __init__(self, ckpt, args):
        if not ckpt.tokenizer:
            raise UserError("the checkpoint holds no tokenizer: it cannot turn typed text into ids")
        self.tok = tokenizer_from_dict(ckpt.tokenizer)
        self.chat = getattr(args, "chat", False)
        self.prompt = "question> " if self.chat else self.prompt
        eos = eos_id(self.tok)
        super().__init__(ckpt.model, args, max_tokens=200, temperature=0.8, eos=eos,
                         banned=special_ids(self.tok, keep=eos), vocab_size=self.tok.vocab_size)

    def describe(self):
        c = self.model.config
        what = ("chat: type a question; the model is sent 'Question: <your text>\\nAnswer:' and its "
                "answer is printed" if self.chat else
                f"lm: type the start of a text and the model continues it, e.g. {self.example!r}")
        return (f"{what} ({self.model.n_parameters():,} parameters, {self.tok.type} tokenizer of "
                f"{self.tok.vocab_size:,} tokens, context {c.max_len})")

    def encode(self, text):
        """Ids of text; a character a char tokenizer lacks is a UserError listing the ones it has."""
        if self.tok.type == "char":
            known = set(self.tok.itos[len(self.tok.specials):])
            bad = sorted({c for c in text if c not in known})
            if bad and self.tok.unk is None:
                raise UserError(f"the model does not know the character(s) {''.join(bad)!r}; its "
                                f"{len(known)} characters are {''.join(sorted(known))!r}")
        return self.tok.encode(text)

    def prompt_ids(self, text):
        """The ids sent to the model: the text (with --chat, inside CHAT_TEMPLATE), or the end token."""
        ids = self.encode(CHAT_TEMPLATE.format(input=text) if self.chat else text)
        if not ids:
            if self.eos is None:
                raise UserError("type at least one character to continue")
            ids = [self.eos]
        return ids

    def continued(self, ids, write):
        """Sample after ids, writing the text as each character completes; (new ids, ended)."""
        new, text, answer = [], TextStream(self.tok), ChatAnswer() if self.chat else None
        with contextlib.closing(self.tokens(ids)) as tokens:
            for i in tokens:
                new.append(i)
                if i == self.eos:
                    break
                piece = text.push(i)
                write(answer.push(piece) if answer else piece)
                if answer and answer.done:                  # --chat: the model asks the next question
                    break
        if not (answer and answer.done):
            tail = text.flush()
            write(answer.push(tail) + answer.flush() if answer else tail)
        return new, bool(new) and new[-1] == self.eos

    def answer(self, text, write):
        """The prompt and its continuation as it is sampled, then '(N new tokens)' or '<end of text>'."""
        ids = self.prompt_ids(text)
        if not self.chat:
            write(text)
        new, ended = self.continued(ids, write)
        write("\n" + ("<end of text>" if ended else f"({len(new)} new tokens)") + "\n")
        seq = ids + new
        names = TokenNames(self.tok)
        return seq, [names[i] for i in seq]

    def record(self, text):
        ids, pieces = self.prompt_ids(text), []
        new, ended = self.continued(ids, pieces.append)
        return {"prompt": text, "prompt_ids": ids, "new_ids": new, "text": "".join(pieces),
                "ended": ended, "settings": {**self.used(), "chat": self.chat}}


HANDLERS = {"digits": DigitsHandler, "sentences": SentencesHandler, "lm": LMHandler,
            "qa": LMHandler}                                 # --task qa: an LM, best asked --chat
