"""What test_model_manually.py does with one typed line, per task: digits, sentences, lm."""
import math

import numpy as np

from ..backend import array_module, to_numpy
from ..errors import UserError
from ..generate import eos_id, generate_tokens
from ..layers import softmax
from ..tasks import digits, sentences
from ..tokenizers import tokenizer_from_dict
from .common import TokenNames

# name -> (parse, valid?, what to type); top_k and top_p also take "off"
SETTINGS = {
    "temperature": (float, lambda v: v >= 0, "a number >= 0 (0 = greedy), e.g. set temperature 0.8"),
    "top_k": (int, lambda v: v >= 1, "a positive integer or off, e.g. set top_k 40"),
    "top_p": (float, lambda v: 0 < v <= 1, "a number in (0, 1] or off, e.g. set top_p 0.9"),
    "max_tokens": (int, lambda v: v >= 1, "a positive integer, e.g. set max_tokens 200"),
}


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
    parse, valid, hint = SETTINGS[name]
    if name in ("top_k", "top_p") and text.lower() in ("off", "none"):
        return name, None
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not valid(value):
        raise UserError(f"set {name} {text}: {name} must be {hint}")
    return name, value


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

    def answer(self, text):
        """(printed lines, ids, token labels) for one typed expression."""
        op, args = digits.parse(text, max_args=self.task.n_args)
        ids = digits.encode(op, args, length=self.task.seq_len)
        xp = array_module(self.model.tok_emb.W)
        self.model.eval()
        probs = to_numpy(softmax(self.model.forward(xp.asarray([ids]))))[0]   # (n_classes,)
        top = np.argsort(-probs)[:3]
        truth = digits.answer(op, args)
        verdict = "right" if top[0] == truth else "WRONG"
        lines = [f"{digits.decode(ids)} -> {top[0]}   (correct answer: {truth}, {verdict})",
                 "top-3: " + "  ".join(f"{d} {probs[d]:.3f}" for d in top)]
        if any(not self.task.low <= a <= self.task.high for a in args):
            lines.append(f"note: the model was trained on digits {self.task.low}..{self.task.high} only")
        return lines, ids, [digits.VOCAB[i] for i in ids]


class SentencesHandler:
    """A prefix of words -> its continuation, greedy by default, until <END> or --max-new-tokens."""

    prompt, example = "text> ", "the cat"

    def __init__(self, ckpt, args):
        self.model = ckpt.model
        self.vocab = tokenizer_vocab(ckpt.tokenizer, sentences.vocabulary())
        self.index = {w: i for i, w in enumerate(self.vocab)}
        missing = [s for s in sentences.SPECIALS if s not in self.index]
        if missing:
            raise UserError(f"the checkpoint's vocabulary lacks the special tokens {missing}")
        self.start, self.end = self.index["<START>"], self.index["<END>"]
        self.settings = sampling_settings(args, max_tokens=20, temperature=0.0)   # greedy
        self.rng = np.random.default_rng(args.seed)

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

    def answer(self, text):
        ids = self.encode(text)
        s = self.settings
        new = generate_tokens(self.model, ids, s["max_tokens"], temperature=s["temperature"],
                              top_k=s["top_k"], top_p=s["top_p"], eos_id=self.end, rng=self.rng)
        ended = bool(new) and new[-1] == self.end
        words = [self.vocab[i] for i in (new[:-1] if ended else new)]
        prefix = " ".join(self.vocab[i] for i in ids[1:])
        stop = "<END>" if ended else f"(stopped after {len(new)} new words)"
        line = " ".join(part for part in (prefix, "|", *words, stop) if part)
        seq = ids + new
        return [line], seq, [self.vocab[i] for i in seq]


CHAT_TEMPLATE = "Question: {input}\nAnswer:"             # --chat: what the model is sent


class LMHandler:
    """Text -> the model's continuation, sampled (temperature 0.8 unless --temperature or `set`)."""

    prompt, example = "text> ", "ROMEO:"

    def __init__(self, ckpt, args):
        if not ckpt.tokenizer:
            raise UserError("the checkpoint holds no tokenizer: it cannot turn typed text into ids")
        self.model, self.tok = ckpt.model, tokenizer_from_dict(ckpt.tokenizer)
        self.chat = getattr(args, "chat", False)
        self.prompt = "question> " if self.chat else self.prompt
        self.settings = sampling_settings(args, max_tokens=200, temperature=0.8)
        self.rng = np.random.default_rng(args.seed)
        self.eos = eos_id(self.tok)

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

    def answer(self, text):
        """(printed lines, ids, token labels) for one prompt (or, with --chat, one question)."""
        s = self.settings
        ids = self.encode(CHAT_TEMPLATE.format(input=text) if self.chat else text)
        if not ids:
            if self.eos is None:
                raise UserError("type at least one character to continue")
            ids = [self.eos]
        new = generate_tokens(self.model, ids, s["max_tokens"], temperature=s["temperature"],
                              top_k=s["top_k"], top_p=s["top_p"], eos_id=self.eos, rng=self.rng)
        ended = bool(new) and new[-1] == self.eos
        body = self.tok.decode(new[:-1] if ended else new)
        note = "<end of text>" if ended else f"({len(new)} new tokens)"
        if self.chat:                                       # the answer, up to the next question
            body = body.split("\nQuestion:")[0].strip()
        seq = ids + new
        names = TokenNames(self.tok)
        return [body if self.chat else text + body, note], seq, [names[i] for i in seq]


HANDLERS = {"digits": DigitsHandler, "sentences": SentencesHandler, "lm": LMHandler}
