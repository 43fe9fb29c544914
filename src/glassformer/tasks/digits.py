"""Digit operations: "Max ( 5 3 9 )" -> 9, for First, Second, Last, Max and Min over digits."""
import re
from dataclasses import dataclass, asdict

import numpy as np

from ..errors import UserError

VOCAB = ["[PAD]", "[EOS]"] + [str(d) for d in range(10)] + \
        ["First", "Second", "Last", "Max", "Min", "(", ")", ","]
TOKEN_ID = {tok: i for i, tok in enumerate(VOCAB)}
PAD, EOS = 0, 1
DIGIT0 = TOKEN_ID["0"]                                      # digit d has id DIGIT0 + d
OPERATIONS = ["First", "Second", "Last", "Max", "Min"]
SIZES = {"small": 2_000, "medium": 10_000, "large": 50_000}


@dataclass(frozen=True)
class DigitsConfig:
    size: str = "medium"          # small / medium / large = 2K / 10K / 50K examples
    n_args: int = 3               # most arguments per expression
    min_args: int = 0             # fewest arguments (0: same as n_args); fewer args are padded
    low: int = 0                  # smallest digit
    high: int = 9                 # largest digit
    seed: int = 0

    def __post_init__(self):
        if self.size not in SIZES:
            raise UserError(f"unknown size {self.size!r}: use one of {list(SIZES)}")
        if not 0 <= self.low <= self.high <= 9:
            raise UserError(f"digit range {self.low}..{self.high} must lie within 0..9")
        if self.n_args < 1 or self.min_args > self.n_args:
            raise UserError(f"need 1 <= min_args <= n_args, got {self.min_args} and {self.n_args}")
        if self.n_args < 2:
            raise UserError("Second needs at least 2 arguments: use n_args >= 2")

    @property
    def seq_len(self):
        return self.n_args + 3                              # op ( args... )

    def to_dict(self):
        return asdict(self)


def answer(op, args):
    """The digit an operation returns."""
    pick = {"First": lambda: args[0], "Second": lambda: args[1], "Last": lambda: args[-1],
            "Max": lambda: max(args), "Min": lambda: min(args)}
    return pick[op]()                                       # lazy: First ( 7 ) has no args[1]


def encode(op, args, length=None):
    """[op, (, digits..., )] as ids, right-padded with [PAD] to `length`."""
    ids = [TOKEN_ID[op], TOKEN_ID["("]] + [DIGIT0 + a for a in args] + [TOKEN_ID[")"]]
    return ids + [PAD] * ((length or len(ids)) - len(ids))


def decode(ids):
    """ids -> "Max ( 5 3 9 )" (padding dropped)."""
    return " ".join(VOCAB[i] for i in ids if i != PAD)


def generate(config):
    """All examples of a config: ids (N, T), targets (N,), operation index (N,); seeded."""
    rng = np.random.default_rng(config.seed)
    N, T = SIZES[config.size], config.seq_len
    lo_args = max(config.min_args or config.n_args, 1)
    ids = np.full((N, T), PAD, dtype=np.int64)
    targets = np.empty(N, dtype=np.int64)
    ops = rng.integers(0, len(OPERATIONS), N)
    n_args = rng.integers(lo_args, config.n_args + 1, N)
    digits = rng.integers(config.low, config.high + 1, (N, config.n_args))
    for i in range(N):
        op = OPERATIONS[ops[i]]
        k = max(n_args[i], 2) if op == "Second" else n_args[i]
        args = digits[i, :k].tolist()
        ids[i] = encode(op, args, T)
        targets[i] = answer(op, args)
    return ids, targets, ops


def split(config, fractions=(0.8, 0.1, 0.1)):
    """{"train"|"val"|"test": (ids, targets, ops)}: an 80/10/10 split of generate(config)."""
    ids, targets, ops = generate(config)
    n = len(ids)
    a = int(round(fractions[0] * n))
    b = a + int(round(fractions[1] * n))
    return {name: (ids[s], targets[s], ops[s])
            for name, s in (("train", slice(0, a)), ("val", slice(a, b)), ("test", slice(b, n)))}


_TOKEN_RE = re.compile(r"\s*([A-Za-z]+|\d|[(),])")


def parse(text, max_args=9):
    """Tolerant parsing of a typed expression: "max(5,3,9)", "Max ( 5 3 9 )" -> (op, [digits]).

    Raises UserError saying what is wrong and how a valid expression looks.
    """
    example = 'try e.g. "Max ( 5 3 9 )" or "min(4,1,7)"'
    text = text.strip()
    pos, tokens = 0, []
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            bad = text[pos:].strip()[:1]
            raise UserError(f"unexpected character {bad!r} at position {pos + 1} of {text!r}; {example}")
        tokens.append(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    if not tokens:
        raise UserError(f"empty expression; {example}")
    names = {op.lower(): op for op in OPERATIONS}
    op = names.get(tokens[0].lower())
    if op is None:
        raise UserError(f"unknown operation {tokens[0]!r}: use one of {', '.join(OPERATIONS)}; {example}")
    rest = [t for t in tokens[1:] if t != ","]
    if len(rest) < 2 or rest[0] != "(" or rest[-1] != ")":
        raise UserError(f"expected the arguments in parentheses after {op}; {example}")
    args = rest[1:-1]
    bad = [a for a in args if not a.isdigit()]
    if bad:
        raise UserError(f"arguments must be single digits 0-9, got {bad[0]!r}; {example}")
    if not args:
        raise UserError(f"{op} needs at least one digit; {example}")
    if op == "Second" and len(args) < 2:
        raise UserError(f"Second needs at least two digits; {example}")
    if len(args) > max_args:
        raise UserError(f"{len(args)} arguments is more than this model was trained on ({max_args})")
    return op, [int(a) for a in args]
