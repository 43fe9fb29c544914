"""test_model_manually.py: query a checkpoint by hand (digits: an expression; sentences, lm: a prefix)."""
import argparse
import math
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from .. import backend
from ..backend import array_module, to_numpy
from ..checkpoint import load_checkpoint
from ..errors import UserError
from ..generate import generate_tokens
from ..layers import softmax
from .lm import LMHandler
from ..tasks import digits, sentences
from ..visualization import ascii_heatmap, shade_chars

DEFAULT_CHECKPOINT = Path("checkpoints") / "digits.npz"
COMMANDS = """commands:
  help                  this text
  attention on|all|off  show attention after each answer (on: last layer, all: every layer)
  clear                 clear the screen and the input history
  quit, exit            leave (Ctrl-D and Ctrl-C work too; Ctrl-C during an answer cancels it)"""
SET_COMMANDS = """  set                   show the sampling settings
  set temperature T     0 = greedy (always the likeliest token); higher = more varied, e.g. 0.8
  set top_k K           sample among the K likeliest tokens (off: all of them)
  set top_p P           sample from the smallest set of tokens with probability >= P (off: all)
  set max_tokens N      longest continuation, in tokens"""
# name -> (parse, valid?, what to type); top_k and top_p also take "off"
SETTINGS = {
    "temperature": (float, lambda v: v >= 0, "a number >= 0 (0 = greedy), e.g. set temperature 0.8"),
    "top_k": (int, lambda v: v >= 1, "a positive integer or off, e.g. set top_k 40"),
    "top_p": (float, lambda v: 0 < v <= 1, "a number in (0, 1] or off, e.g. set top_p 0.9"),
    "max_tokens": (int, lambda v: v >= 1, "a positive integer, e.g. set max_tokens 200"),
}


def parse_args(argv):
    """The command line as a Namespace; UserError for values argparse cannot check."""
    p = argparse.ArgumentParser(prog="test_model_manually.py",
                                description="Query a trained glassformer checkpoint by hand.")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help=f"checkpoint .npz to load (default: {DEFAULT_CHECKPOINT})")
    p.add_argument("--prompt", "--expr", dest="expr", default=None, metavar="TEXT",
                   help='answer one input and exit, e.g. "ROMEO:" (lm), "Max ( 5 3 9 )" (digits) or '
                        '"the cat" (sentences); --expr and --prompt are the same flag')
    p.add_argument("--chat", action="store_true",
                   help='lm: send each input as "Question: {input}\\nAnswer:" and print only the answer')
    p.add_argument("--attention", choices=("off", "on", "all"), default="off",
                   help="print attention heatmaps: on = last layer, all = every layer")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="sentences, lm: longest continuation (default 20 words; lm: 200 tokens); "
                        "in the loop: set max_tokens N")
    p.add_argument("--temperature", type=float, default=None,
                   help="sentences, lm: 0 = greedy (default for sentences; lm: 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="sentences, lm: sample among the k likeliest")
    p.add_argument("--top-p", type=float, default=None,
                   help="sentences, lm: sample from the smallest set of tokens with probability >= p")
    p.add_argument("--seed", type=int, default=0, help="sentences, lm: seed for sampling")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="run the model on the CPU (NumPy) or an NVIDIA GPU (CuPy)")
    args = p.parse_args(argv)
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens={args.max_new_tokens} must be at least 1")
    if args.temperature is not None and not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise UserError(f"--temperature={args.temperature} must be >= 0 (0 means greedy)")
    if args.top_k is not None and args.top_k < 1:
        raise UserError(f"--top-k={args.top_k} must be a positive integer")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UserError(f"--top-p={args.top_p} must be in (0, 1]")
    return args


# ---------------------------------------------------------------- sampling settings

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


# ---------------------------------------------------------------- attention view

def attention_maps(model, ids):
    """Forward `ids` once (eval mode) and return each layer's attention, a list of (H, T, T) arrays."""
    ids = ids[-model.config.max_len:]                       # what fits in the positional table
    xp = array_module(model.tok_emb.W)
    model.eval()
    model.forward(xp.asarray([ids]))
    return [to_numpy(block.attn.last_attention_weights)[0] for block in model.blocks]


def attention_view(model, ids, labels, mode, stream):
    """Heatmaps of every head of the last layer (mode "on") or of every layer (mode "all")."""
    maps = attention_maps(model, ids)
    labels = labels[-len(maps[0][0]):]
    shades, masked = shade_chars(stream)
    layers = range(len(maps)) if mode == "all" else [len(maps) - 1]
    out = ["attention (rows: query, columns: key)"]
    for i in layers:
        for h, att in enumerate(maps[i]):                  # att: (T, T)
            out += [f"layer {i + 1}/{len(maps)}, head {h + 1}/{len(maps[i])}",
                    ascii_heatmap(att, labels, labels, shades=shades, masked=masked, vmax=1.0)]
    return "\n".join(out)


# ---------------------------------------------------------------- task handlers

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
        new = generate_tokens(self.model, ids, s["max_tokens"], temperature=s["temperature"], top_k=s["top_k"],
                                  top_p=s["top_p"], eos_id=self.end, rng=self.rng)
        ended = bool(new) and new[-1] == self.end
        words = [self.vocab[i] for i in (new[:-1] if ended else new)]
        prefix = " ".join(self.vocab[i] for i in ids[1:])
        stop = "<END>" if ended else f"(stopped after {len(new)} new words)"
        line = " ".join(part for part in (prefix, "|", *words, stop) if part)
        seq = ids + new
        return [line], seq, [self.vocab[i] for i in seq]


HANDLERS = {"digits": DigitsHandler, "sentences": SentencesHandler, "lm": LMHandler}


def load(path, args):
    """The checkpoint at `path` and the handler its task needs; UserError for anything unusable."""
    if not path.exists() and path == DEFAULT_CHECKPOINT:
        raise UserError(f"{path}: no such file (it ships with the repository: run from its root). "
                        "Or train a model: python train_step_by_step.py --task digits --out "
                        "runs/digits, then pass --checkpoint runs/digits/best.npz")
    try:
        ckpt = load_checkpoint(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: could not read the checkpoint ({type(e).__name__}: {e}); "
                        "the file may be truncated or corrupt") from None
    task = ckpt.task if isinstance(ckpt.task, dict) else {}
    name = task.get("name")
    if name not in HANDLERS:
        raise UserError(f"{path}: this tool cannot query task {name!r}; it knows "
                        f"{', '.join(sorted(HANDLERS))}")
    if getattr(args, "chat", False) and name != "lm":
        raise UserError(f"--chat is for language-model (lm) checkpoints; {path} is a {name} one: "
                        "drop --chat")
    return ckpt, HANDLERS[name](ckpt, args)


# ---------------------------------------------------------------- the loop

class Session:
    """The REPL's state: the handler, the attention mode, and the streams it talks to."""

    def __init__(self, ckpt, handler, attention, stdout, stderr):
        self.ckpt, self.handler, self.attention = ckpt, handler, attention
        self.stdout, self.stderr = stdout, stderr

    def say(self, *lines):
        for line in lines:
            print(line, file=self.stdout)

    def query(self, text):
        """Answer one input (with the attention view if it is on)."""
        lines, ids, labels = self.handler.answer(text)
        self.say(*lines)
        if self.attention != "off":
            self.say(attention_view(self.ckpt.model, ids, labels, self.attention, self.stdout))

    def command(self, line, interactive):
        """Run a REPL command or a query; returns False to leave the loop."""
        words = line.split()
        cmd = words[0].lower()
        if cmd in ("quit", "exit") and len(words) == 1:
            return False
        if cmd == "help" and len(words) == 1:
            sets = hasattr(self.handler, "settings")
            self.say(self.handler.describe(), COMMANDS + ("\n" + SET_COMMANDS if sets else ""))
        elif cmd == "set":
            self.say(self.set(words[1:]))
        elif cmd == "attention" and len(words) <= 2:
            mode = words[1].lower() if len(words) == 2 else None
            if mode not in (None, "on", "off", "all"):
                raise UserError(f"attention {words[1]!r}: use attention on, attention all or attention off")
            self.attention = mode or self.attention
            self.say(f"attention view: {self.attention}")
        elif cmd == "clear" and len(words) == 1:
            clear(self.stdout, interactive)
        else:
            self.query(line)
        return True

    def set(self, words):
        """`set` (show the settings) or `set NAME VALUE`; returns the line to print."""
        settings = getattr(self.handler, "settings", None)
        if settings is None:
            raise UserError("set: this checkpoint's answers are not sampled, so there is nothing to set")
        if not words:
            return format_settings(settings)
        if len(words) != 2:
            raise UserError(f"set {' '.join(words)}: use set NAME VALUE, e.g. set temperature 0.8 "
                            "(set alone shows the settings)")
        name, value = parse_setting(*words)
        settings[name] = value
        return f"{name} {'off' if value is None else value}"


def clear(stdout, interactive):
    """Clear the terminal and readline's history (only when someone is at a terminal)."""
    if not interactive:
        return
    print("\033[2J\033[H", end="", file=stdout)
    try:
        import readline
        readline.clear_history()
    except ImportError:
        pass


def read_lines(stdin, stdout, prompt, interactive):
    """Yield input lines; the prompt (and readline editing) only at a terminal."""
    if interactive and stdin is sys.stdin:
        try:
            import readline  # noqa: F401  (importing it gives input() arrow keys and history)
        except ImportError:
            pass
    while True:
        if interactive and stdin is sys.stdin:
            try:
                yield input(prompt)
            except EOFError:
                return
            continue
        if interactive:
            print(prompt, end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:
            return
        yield line.rstrip("\n")


def repl(session, stdin, interactive):
    """Read-eval-print until quit, EOF or Ctrl-C; an error prints and the loop goes on."""
    session.say(session.handler.describe(), "type help for commands, quit to leave")
    try:
        for line in read_lines(stdin, session.stdout, session.handler.prompt, interactive):
            if not line.strip():
                continue
            try:
                if not session.command(line.strip(), interactive):
                    break
            except UserError as e:
                print(f"error: {e}", file=session.stderr)
            except KeyboardInterrupt:                       # Ctrl-C while answering: drop the answer
                session.say("(cancelled)")
    except KeyboardInterrupt:
        pass
    if interactive:
        print(file=session.stdout)
    return 0


def main(argv=None, stdin=None, stdout=None, stderr=None):
    """Entry point of test_model_manually.py; returns the exit status (2 for a user's mistake)."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    try:
        args = parse_args(argv)
        backend.use(args.device)                            # UserError when CuPy or a GPU is missing
        path = args.checkpoint or DEFAULT_CHECKPOINT
        ckpt, handler = load(path, args)
        session = Session(ckpt, handler, args.attention, stdout, stderr)
        if args.expr is not None:
            session.query(args.expr)
            return 0
        interactive = stdin.isatty() if hasattr(stdin, "isatty") else False
        return repl(session, stdin, interactive)
    except UserError as e:
        print(f"error: {e}", file=stderr)
        return 2
    except SystemExit as e:                                 # argparse: --help, or a bad flag
        return e.code if isinstance(e.code, int) else 2
    except KeyboardInterrupt:
        print(file=stderr)
        return 130
    except BrokenPipeError:                                 # e.g. `... --prompt X | head`: stop quietly
        if stdout is sys.stdout:                            # so the flush at exit cannot fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
