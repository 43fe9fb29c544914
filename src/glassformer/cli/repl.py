"""test_model_manually.py: query a checkpoint by hand (digits: an expression; sentences, lm: a prefix)."""
import json
import sys
import textwrap
import zipfile
from pathlib import Path

from .. import backend
from ..backend import array_module, to_numpy
from ..checkpoint import load_checkpoint, needs_task
from ..errors import Terminated, UserError, run_main
from ..inputs import read_text
from ..tasks.qa import CHAT_TEMPLATE
from ..visualization import ascii_heatmap, attention_scale, shade_chars
from ..domains import SEED, THREADS
from ..generate import MAX_NEW_TOKENS as MAX_NEW
from ..generate import NUM_SAMPLES, TEMPERATURE, TOP_K, TOP_P
from .common import EXIT_INTERRUPTED, Parser
from .handlers import HANDLERS, MAX_NEW_TOKENS, format_settings, parse_setting
from .stages import terminal_width

DEFAULT_CHECKPOINT = Path("checkpoints") / "digits.npz"
COMMANDS = """commands:
  help                  this text
  attention on|all|off  attention maps after each reply (on: last block; all);
                        blocks and heads count from 0, as in the walk, its PNGs
                        and interp --head
  clear                 clear the screen and the input history
  quit, exit            leave (or Ctrl-D); Ctrl-C during a reply stops it"""
SET_COMMANDS = f"""  set                   show the sampling settings
  set temperature T     0 = greedy (always the likeliest token); higher = more
                        varied, e.g. 0.8
  set top_k K           sample among the K likeliest tokens (off: all of them)
  set top_p P           sample from the smallest set of tokens with probability
                        >= P (off: all)
  set max_tokens N      longest continuation, in tokens (at most {MAX_NEW_TOKENS:,})"""


def parse_args(argv):
    """The command line as a Namespace; UserError for values argparse cannot check."""
    p = Parser(prog="test_model_manually.py", description="Query a trained glassformer checkpoint by hand.")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help=f"checkpoint .npz to load (default: {DEFAULT_CHECKPOINT})")
    given = p.add_mutually_exclusive_group()
    given.add_argument("--prompt", "--expr", dest="expr", default=None, metavar="TEXT",
                       help='answer one input and exit, e.g. "ROMEO:" (lm), "Max ( 5 3 9 )" (digits) '
                            'or "the cat" (sentences); --expr and --prompt are the same flag')
    given.add_argument("--prompt-file", type=Path, default=None, metavar="FILE",
                       help="answer the text of FILE (all of it, newlines included; - reads stdin) and exit")
    p.add_argument("--chat", action="store_true",
                   help=f"lm: send each input as {CHAT_TEMPLATE!r} (the template --task qa trains on) "
                   "and print only the answer")
    p.add_argument("--attention", choices=("off", "on", "all"), default="off",
                   help="print attention heatmaps: on = last layer, all = every layer")
    p.add_argument("--json", action="store_true",
                   help="print one JSON line per sample (prompt ids, new ids, text, settings) instead "
                        "of streaming text")
    p.add_argument("--num-samples", type=NUM_SAMPLES, default=1, metavar="N",
                   help="sentences, lm: sample N continuations of each input (default 1)")
    p.add_argument("--max-new-tokens", type=MAX_NEW, default=None, metavar="N",
                   help="sentences, lm: longest continuation (default 20 words; lm: 200 tokens); in the "
                        "loop: set max_tokens N")
    p.add_argument("--temperature", type=TEMPERATURE, default=None, metavar="T",
                   help="sentences, lm: 0 = greedy (default for sentences; lm: 0.8)")
    p.add_argument("--top-k", type=TOP_K, default=None, metavar="K",
                   help="sentences, lm: sample among the k likeliest")
    p.add_argument("--top-p", type=TOP_P, default=None, metavar="P",
                   help="sentences, lm: sample from the smallest set of tokens with probability >= p")
    p.add_argument("--seed", type=SEED, default=0, help="sentences, lm: seed for sampling")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="run the model on the CPU (NumPy) or an NVIDIA GPU (CuPy)")
    p.add_argument("--reference", action="store_true",
                   help="run the plain reference layers, no CPU overlay "
                   "(as GLASSFORMER_REFERENCE=1; to compare)")
    p.add_argument("--threads", type=THREADS, metavar="N", help="CPU threads for the BLAS and the CPU "
                   "overlay's thread pool (default $GLASSFORMER_THREADS, else every core)")
    args = p.parse_args(argv)
    check_args(args)
    return args


def check_args(args):
    """UserError for flags that cannot go together, or a prompt file that cannot be read (the numbers
    are checked by their domains as they are parsed)."""
    if args.json and args.attention != "off":
        raise UserError("--json prints JSON lines only: drop --attention (or --json)")
    if args.prompt_file is not None:                        # a FIFO or /dev/zero: refused, never read
        try:
            args.expr = read_text(args.prompt_file, "prompt", allow_stdin=True)   # `-`: stdin
        except UserError as e:
            raise UserError(f"--prompt-file {e}") from None


# ---------------------------------------------------------------- attention view

def attention_maps(model, ids):
    """Forward `ids` once (eval mode) and return each layer's attention, a list of (H, T, T) arrays."""
    ids = ids[-model.config.max_len:]                       # what fits in the positional table
    xp = array_module(model.tok_emb.W)
    model.eval()
    model.forward(xp.asarray([ids]))
    return [to_numpy(block.attn.last_attention_weights)[0] for block in model.blocks]


def attention_view(model, ids, labels, mode, stream, width=None):
    """Heatmaps of every head of the last layer (mode "on") or of every layer (mode "all")."""
    width = width or terminal_width()
    maps = attention_maps(model, ids)
    T = len(maps[0][0])
    first = len(ids) - T                                    # position of the map's first token
    labels = labels[first:]
    shades, masked = shade_chars(stream)
    causal = model.blocks[0].attn.causal
    layers = range(len(maps)) if mode == "all" else [len(maps) - 1]
    out = ["attention (rows: query, columns: key; darkest = the head's largest weight; blocks "
           f"0-{len(maps) - 1} and heads 0-{len(maps[0]) - 1}, counted from 0 as in the walk)"]
    if first:
        out.append(f"the text is {len(ids)} tokens, longer than the context of {T}: the maps show "
                   f"what the model sees now, positions {first}..{len(ids) - 1}")
    for i in layers:
        for h, att in enumerate(maps[i]):                  # att: (T, T)
            out += [f"block {i}, head {h}",
                    ascii_heatmap(att, labels, labels, shades=shades, masked=masked,
                                  vmax=attention_scale(att, causal), width=width, first=first)]
    return "\n".join(textwrap.fill(line, width) if "\n" not in line else line for line in out)


# ---------------------------------------------------------------- loading

def load(path, args):
    """The checkpoint at `path` and the handler its task needs; UserError for anything unusable."""
    if not path.exists() and path == DEFAULT_CHECKPOINT:
        raise UserError(f"{path}: no such file (it ships with the repository: run from its root). "
                        "Or train a model: python train_step_by_step.py --task digits --out "
                        "runs/digits, then pass --checkpoint runs/digits/best.npz")
    try:
        with needs_task("lm" if getattr(args, "chat", False) else "digits"):   # the default: digits
            ckpt = load_checkpoint(path, optimizer=False)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: could not read the checkpoint ({type(e).__name__}: {e}); "
                        "the file may be truncated or corrupt") from None
    task = ckpt.task if isinstance(ckpt.task, dict) else {}
    name = task.get("name")
    if name not in HANDLERS:
        raise UserError(f"{path}: this tool cannot query task {name!r}; it knows "
                        f"{', '.join(sorted(HANDLERS))}")
    if getattr(args, "chat", False) and name not in ("lm", "qa"):
        raise UserError(f"--chat is for language-model (lm) checkpoints; {path} is a {name} one: "
                        "drop --chat")
    return ckpt, HANDLERS[name](ckpt, args)


# ---------------------------------------------------------------- the loop

class Reply:
    """Where a handler writes its reply: each piece printed and flushed at once (streaming)."""

    def __init__(self, stream):
        self.stream, self.open = stream, False              # open: the last line is not ended

    def __call__(self, piece):
        if piece:
            print(piece, end="", file=self.stream, flush=True)
            self.open = not piece.endswith("\n")


class Session:
    """The REPL's state: the handler, the attention mode, output options and the streams."""

    def __init__(self, ckpt, handler, args, stdout, stderr):
        self.ckpt, self.handler, self.attention = ckpt, handler, args.attention
        self.json, self.samples = args.json, args.num_samples
        self.stdout, self.stderr = stdout, stderr
        if self.samples > 1 and not hasattr(handler, "settings"):
            raise UserError("--num-samples is for sentences and lm checkpoints: a digits answer is "
                            "not sampled, so every sample would be the same")

    def say(self, *lines):
        for line in lines:
            print(line, file=self.stdout)

    def query(self, text):
        """Answer one input (num_samples times), streamed, or as JSON lines; False if Ctrl-C stopped it."""
        for k in range(1, self.samples + 1):
            if self.json:
                record = {"sample": k, **self.handler.record(text)}
                print(json.dumps(record, ensure_ascii=False), file=self.stdout, flush=True)
                continue
            if self.samples > 1:
                self.say(f"[sample {k}/{self.samples}]")
            reply = Reply(self.stdout)
            try:
                ids, labels = self.handler.answer(text, reply)
            except KeyboardInterrupt as e:                  # Ctrl-C: keep what was printed
                if isinstance(e, Terminated):               # SIGTERM: the session ends
                    raise
                self.say(*([""] if reply.open else []), "(stopped)")
                return False
            if self.attention != "off":
                self.say(attention_view(self.ckpt.model, ids, labels, self.attention, self.stdout))
        return True

    def command(self, line, interactive):
        """Run a REPL command or a query; returns False to leave the loop."""
        words = line.split()
        cmd = words[0].lower()
        if cmd in ("quit", "exit") and len(words) == 1:
            return False
        if cmd == "help" and len(words) == 1:
            sets = hasattr(self.handler, "settings")
            self.say(fill(self.handler.describe()), COMMANDS + ("\n" + SET_COMMANDS if sets else ""))
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


def fill(text):
    """Prose wrapped to the terminal's width (replies are the model's text and are not wrapped)."""
    return textwrap.fill(text, terminal_width(), break_on_hyphens=False)


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
    if not session.json:                                    # --json: nothing but JSON lines
        session.say(fill(session.handler.describe()), "type help for commands, quit to leave")
    try:
        for line in read_lines(stdin, session.stdout, session.handler.prompt, interactive):
            if not line.strip():
                continue
            try:
                if not session.command(line.strip(), interactive):
                    break
            except UserError as e:
                print(f"error: {e}", file=session.stderr)
            except KeyboardInterrupt as e:                  # Ctrl-C outside a reply (a command)
                if isinstance(e, Terminated):
                    raise
                session.say("(stopped)")
    except KeyboardInterrupt:                               # Ctrl-C at the prompt: 130, as elsewhere
        code = EXIT_INTERRUPTED
    else:
        code = 0                                            # quit, exit, Ctrl-D
    if interactive:
        print(file=session.stdout)
    return code


def command(argv, stdin, stdout, stderr):
    """Load the checkpoint, then answer --expr (or --prompt) once or run the REPL; the exit status."""
    args = parse_args(argv)
    backend.use(args.device)                                # UserError when CuPy or a GPU is missing
    backend.set_overlay(backend.overlay_enabled() and not args.reference)
    backend.set_threads(args.threads)                       # None: $GLASSFORMER_THREADS or every core
    path = args.checkpoint or DEFAULT_CHECKPOINT
    ckpt, handler = load(path, args)
    session = Session(ckpt, handler, args, stdout, stderr)
    if args.expr is not None:
        return 0 if session.query(args.expr) else EXIT_INTERRUPTED
    interactive = stdin.isatty() if hasattr(stdin, "isatty") else False
    return repl(session, stdin, interactive)


def main(argv=None, stdin=None, stdout=None, stderr=None):
    """Entry point of test_model_manually.py: the command inside the error boundary; returns the exit
    status (2 for a user's mistake, 130 for Ctrl-C, --help's own)."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    return run_main(command, argv, stdin, stdout, stderr, stderr=stderr, help_returns=True)
