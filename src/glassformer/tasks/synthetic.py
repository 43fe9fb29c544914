"""Synthetic tasks for research toys: variable renaming and evaluation, DAG reachability and ordering,
sequence reversal and sorting (encoder-decoder), repeated random tokens (induction).

Each is a SyntheticTask (base.py) whose sample(rng, n) draws the arrays; registry.py finds them by
name and dataset.py caches what they generate.
"""
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from .base import BOS, EOS, IGNORE, PAD, SPECIALS, SyntheticTask, check_choice, check_positive, names


# ---- variable renaming: a=3 b=a c=b ? c -> 3 ----------------------------------------------------

@dataclass(frozen=True)
class RenamingConfig:
    depth: int = 3                     # statements per chain: one constant, depth - 1 renamings
    n_chains: int = 3                  # chains interleaved in one program (the others distract)
    n_queries: int = 1                 # chain ends asked for at the end: ? c ? f ...
    n_names: int = 26
    n_values: int = 10
    constants_first: bool = True       # every chain's x=<digit> first, then the renamings
    dense: bool = True                 # also score the value at every right-hand-side variable
    score_queries: bool = True         # False: only the dense targets (a curriculum's first stage)
    n_train: int = 20000
    n_test: int = 1000
    seed: int = 0

    def __post_init__(self):
        check_positive(self, "depth", "n_chains", "n_queries", "n_names", "n_values", "n_train",
                       "n_test")
        if self.depth * self.n_chains > self.n_names:
            raise UserError(f"{self.depth * self.n_chains} variables need n_names >= that, "
                            f"got n_names={self.n_names}")
        if self.n_queries > self.n_chains:
            raise UserError(f"n_queries={self.n_queries} must be <= n_chains={self.n_chains}")
        if not (self.dense or self.score_queries):
            raise UserError("nothing to learn: set dense=true or score_queries=true")


class QueryTask(SyntheticTask):
    """A task whose program(rng) returns (tokens, answer): the answer is scored at the last input."""

    def sample(self, rng, n):
        return self.sample_rows([self.program(rng) for _ in range(n)])

    def sample_rows(self, rows):
        """{"inputs", "targets"} from [(tokens, answer)]: the answer scored at the last position."""
        inputs = np.array([self.ids(t) for t, _ in rows], dtype=np.int64)   # (N, T)
        targets = np.full(inputs.shape, IGNORE, dtype=np.int64)
        targets[:, -1] = [self.token_id[a] for _, a in rows]                # scored: the answer
        return {"inputs": inputs, "targets": targets}


class VariableRenaming(SyntheticTask):
    """a=3 d=7 b=a e=d c=b f=e ? c ? f -> 3, 7: chains interleaved, queries ask for chain ends.

    A statement x=y is two tokens, x then y (an "=" token would carry no information and would put
    the value two tokens after the name: lookups then train far more slowly). dense: the value of
    every right-hand-side variable is a target too (at c=b predict b's value), so shorter lookups
    train the longer ones. constants_first: with constants spread through the program an early
    lookup is well guessed by "a digit seen so far", a shortcut that stalls training; with all of
    them first that guess is right only 1 / n_chains of the time. Arrays: inputs, targets (N, T)
    and answers (N, T) marking the queries' answers (what the accuracy is reported on).
    """

    name, config_class = "renaming", RenamingConfig

    def __init__(self, config=None, **params):
        super().__init__(config, **params)
        self.names = names(self.config.n_names)

    @property
    def vocab(self):
        c = self.config
        return SPECIALS + ["?"] + [str(v) for v in range(c.n_values)] + names(c.n_names)

    def decode(self, ids):
        """<bos> a=3 b=a ? b: statements shown with their "="."""
        toks = super().decode(ids).split()
        n = 2 * self.config.depth * self.config.n_chains
        body = toks[1:1 + n] if toks[:1] == ["<bos>"] else []
        if not body:
            return " ".join(toks)
        pairs = [f"{x}={y}" for x, y in zip(body[::2], body[1::2])]
        return " ".join(toks[:1] + pairs + body[len(pairs) * 2:] + toks[1 + n:])

    def encode(self, text):
        """'<bos> a=3 b=a ? b' -> ids: each x=y is two tokens."""
        return super().encode(text.replace("=", " "))

    def program(self, rng):
        """(tokens, {position: value of the rhs variable there}, {position: a query's answer})."""
        c = self.config
        var = rng.choice(c.n_names, c.depth * c.n_chains, replace=False).reshape(c.n_chains, c.depth)
        order = rng.permutation(np.repeat(np.arange(c.n_chains), c.depth))  # chain of each statement
        if c.constants_first:                               # roots, then the renamings interleaved
            order = np.concatenate([rng.permutation(c.n_chains),
                                    rng.permutation(np.repeat(np.arange(c.n_chains), c.depth - 1))])
        next_in_chain = np.zeros(c.n_chains, dtype=int)
        values = rng.integers(0, c.n_values, c.n_chains)
        tokens, refs, answers = ["<bos>"], {}, {}
        for ch in order:
            i = next_in_chain[ch]
            if i:
                refs[len(tokens) + 1] = str(values[ch])     # the rhs variable holds the chain's value
            rhs = str(values[ch]) if i == 0 else self.names[var[ch, i - 1]]
            tokens += [self.names[var[ch, i]], rhs]
            next_in_chain[ch] += 1
        for ch in rng.permutation(c.n_chains)[:c.n_queries]:
            tokens += ["?", self.names[var[ch, -1]]]
            answers[len(tokens) - 1] = str(values[ch])
        return tokens, refs, answers

    def sample(self, rng, n):
        c, rows = self.config, [self.program(rng) for _ in range(n)]
        inputs = np.array([self.ids(t) for t, _, _ in rows], dtype=np.int64)   # (N, T)
        targets = np.full(inputs.shape, IGNORE, dtype=np.int64)
        answers = np.zeros(inputs.shape, dtype=bool)
        for i, (_, refs, queries) in enumerate(rows):
            scored = {**(refs if c.dense else {}), **(queries if c.score_queries else {})}
            targets[i, list(scored)] = [self.token_id[v] for v in scored.values()]
            answers[i, list(queries)] = True
        return {"inputs": inputs, "targets": targets, "answers": answers}


# ---- variable evaluation: a = 3 + 4 b = a - 5 ? b -> 2 (mod n_values) ------------------------------

@dataclass(frozen=True)
class EvaluationConfig:
    n_vars: int = 4                    # statements, each x = p op q
    n_values: int = 10                 # arithmetic is modulo n_values
    ops: str = "+-"
    p_var: float = 0.7                 # chance an operand is an earlier variable (when one exists)
    n_names: int = 26
    n_train: int = 20000
    n_test: int = 1000
    seed: int = 0

    def __post_init__(self):
        check_positive(self, "n_vars", "n_values", "n_names", "n_train", "n_test")
        if self.n_vars > self.n_names:
            raise UserError(f"n_vars={self.n_vars} needs n_names >= n_vars")
        if not self.ops or set(self.ops) - set("+-*"):
            raise UserError(f"ops={self.ops!r}: use some of '+', '-', '*'")


class VariableEvaluation(QueryTask):
    """<bos> a = 3 + 4 b = a - 5 ? b -> 2: modular arithmetic over earlier variables."""

    name, config_class = "evaluation", EvaluationConfig

    @property
    def vocab(self):
        c = self.config
        return (SPECIALS + ["=", "?"] + list(c.ops) + [str(v) for v in range(c.n_values)]
                + names(c.n_names))

    def program(self, rng):
        c = self.config
        var = [names(c.n_names)[i] for i in rng.choice(c.n_names, c.n_vars, replace=False)]
        value, tokens = {}, ["<bos>"]
        for i, x in enumerate(var):
            operands = []
            for _ in range(2):
                if i and rng.random() < c.p_var:
                    operands.append(var[rng.integers(i)])
                else:
                    operands.append(str(rng.integers(c.n_values)))
            op = c.ops[rng.integers(len(c.ops))]
            p, q = (value[o] if o in value else int(o) for o in operands)
            value[x] = {"+": p + q, "-": p - q, "*": p * q}[op] % c.n_values
            tokens += [x, "=", operands[0], op, operands[1]]
        query = var[rng.integers(c.n_vars)]
        return tokens + ["?", query], str(value[query])


# ---- DAG reachability and ordering ---------------------------------------------------------------

@dataclass(frozen=True)
class DagConfig:
    mode: str = "reach"                # "reach": ? u v -> yes/no; "order": edges of a path -> its order
    n_nodes: int = 8
    n_edges: int = 8                   # reach only; order uses the n_nodes - 1 edges of a path
    n_names: int = 26
    n_train: int = 20000
    n_test: int = 1000
    seed: int = 0

    def __post_init__(self):
        check_positive(self, "n_nodes", "n_names", "n_train", "n_test")
        check_choice(self, "mode", ("reach", "order"))
        if self.n_nodes < 2 or self.n_nodes > self.n_names:
            raise UserError(f"n_nodes={self.n_nodes} must be in 2..n_names={self.n_names}")
        if self.mode == "reach" and not 1 <= self.n_edges <= self.n_nodes * (self.n_nodes - 1) // 2:
            raise UserError(f"n_edges={self.n_edges}: a DAG on {self.n_nodes} nodes has 1.."
                            f"{self.n_nodes * (self.n_nodes - 1) // 2} edges")


class DagTask(SyntheticTask):
    """<bos> a > c b > a ... ? b c -> yes (a path b -> c exists); or ... ? -> the path's node order."""

    name, config_class = "dag", DagConfig

    @property
    def vocab(self):
        return SPECIALS + [">", "?", "yes", "no"] + names(self.config.n_names)

    def edges(self, rng):
        """(topological order of the chosen nodes, list of (u, v) edges with u before v)."""
        c = self.config
        nodes = [names(c.n_names)[i] for i in rng.choice(c.n_names, c.n_nodes, replace=False)]
        if c.mode == "order":
            return nodes, [(nodes[i], nodes[i + 1]) for i in range(c.n_nodes - 1)]
        pairs = [(i, j) for i in range(c.n_nodes) for j in range(i + 1, c.n_nodes)]
        chosen = rng.choice(len(pairs), c.n_edges, replace=False)
        return nodes, [(nodes[pairs[k][0]], nodes[pairs[k][1]]) for k in chosen]

    def program(self, rng):
        nodes, edges = self.edges(rng)
        tokens = ["<bos>"]
        for k in rng.permutation(len(edges)):
            tokens += [edges[k][0], ">", edges[k][1]]
        if self.config.mode == "order":
            return tokens + ["?"], nodes
        reach = {u: {u} for u in nodes}                     # u's descendants, itself included
        for u in reversed(nodes):                           # reverse topological order
            for a, b in edges:
                if a == u:
                    reach[u] |= reach[b]
        want = rng.random() < 0.5                           # balanced yes / no
        pairs = [(u, v) for u in nodes for v in nodes if u != v and (v in reach[u]) == want]
        if not pairs:
            want = not want
            pairs = [(u, v) for u in nodes for v in nodes if u != v and (v in reach[u]) == want]
        u, v = pairs[rng.integers(len(pairs))]
        return tokens + ["?", u, v], ["yes" if want else "no"]

    def sample(self, rng, n):
        rows = [self.program(rng) for _ in range(n)]
        seqs = np.array([self.ids(t + a) for t, a in rows], dtype=np.int64)   # (N, T + 1)
        n_answer = len(rows[0][1])
        inputs, targets = seqs[:, :-1], seqs[:, 1:].copy()
        targets[:, :-n_answer] = IGNORE                     # scored: the answer tokens only
        return {"inputs": inputs, "targets": targets}


# ---- sequence reversal and sorting for the encoder-decoder --------------------------------------

@dataclass(frozen=True)
class SequenceConfig:
    mode: str = "reverse"              # or "sort"
    length: int = 8
    n_symbols: int = 10
    n_train: int = 20000
    n_test: int = 1000
    seed: int = 0

    def __post_init__(self):
        check_positive(self, "length", "n_symbols", "n_train", "n_test")
        check_choice(self, "mode", ("reverse", "sort"))


class SequenceTask(SyntheticTask):
    """src = 3 1 4 1 5 -> tgt = 5 1 4 1 3 (reverse) or 1 1 3 4 5 (sort); tgt_in starts with <bos>."""

    name, kind, config_class = "sequence", "seq2seq", SequenceConfig

    @property
    def vocab(self):
        return SPECIALS + [str(s) for s in range(self.config.n_symbols)]

    def sample(self, rng, n):
        c = self.config
        src = rng.integers(0, c.n_symbols, (n, c.length)) + len(SPECIALS)     # (N, S)
        tgt = src[:, ::-1] if c.mode == "reverse" else np.sort(src, axis=1)
        tgt_in = np.concatenate([np.full((n, 1), BOS), tgt], axis=1)          # (N, S + 1)
        tgt_out = np.concatenate([tgt, np.full((n, 1), EOS)], axis=1)
        return {"src": src.astype(np.int64), "tgt_in": tgt_in.astype(np.int64),
                "tgt_out": tgt_out.astype(np.int64)}


# ---- repeated random tokens: induction heads -----------------------------------------------------

@dataclass(frozen=True)
class InductionConfig:
    n_symbols: int = 64                # random tokens drawn from this many
    length: int = 12                   # longest repeat L
    min_length: int = 4                # shortest repeat
    max_prefix: int = 8                # longest run of noise tokens before the first repeat
    distinct: bool = True              # no token twice in a row except the repeat itself
    n_train: int = 20000
    n_test: int = 1000
    seed: int = 0

    def __post_init__(self):
        check_positive(self, "n_symbols", "length", "min_length", "n_train", "n_test")
        if self.min_length > self.length or self.max_prefix < 0:
            raise UserError(f"need 1 <= min_length <= length and max_prefix >= 0, got min_length="
                            f"{self.min_length}, length={self.length}, max_prefix={self.max_prefix}")
        if self.distinct and self.max_prefix + self.length > self.n_symbols:
            raise UserError(f"max_prefix + length = {self.max_prefix + self.length} distinct tokens "
                            f"need n_symbols >= that, got n_symbols={self.n_symbols}")


class RepeatedTokens(SyntheticTask):
    """<bos> noise r r <pad>...: random noise, a random repeat r, r again; L and the noise vary.

    Arrays: inputs, targets (N, T), period (N,) = L and offset (N,) = the position where r starts.
    Position t of the second repeat (offset + L <= t) last saw its token at t - L, so an induction
    head attends to t - L + 1 and the next token is predictable; only those targets are scored.
    Varying L and the offset leaves no purely positional way to find t - L + 1.
    """

    name, config_class = "induction", InductionConfig

    @property
    def vocab(self):
        return SPECIALS + [f"t{i}" for i in range(self.config.n_symbols)]

    def sample(self, rng, n):
        c = self.config
        T = 1 + c.max_prefix + 2 * c.length                                    # longest row
        width = c.max_prefix + c.length                                        # noise + r tokens
        if c.distinct:
            pool = np.argsort(rng.random((n, c.n_symbols)), axis=1)[:, :width]  # distinct per row
        else:
            pool = rng.integers(0, c.n_symbols, (n, width))
        pool = pool + len(SPECIALS)                                            # (N, width)
        period = rng.integers(c.min_length, c.length + 1, n)                   # (N,) L
        offset = 1 + rng.integers(0, c.max_prefix + 1, n)                      # (N,) r starts here
        t, L, o = np.arange(T)[None, :], period[:, None], offset[:, None]
        k = np.where(t < o, t - 1, c.max_prefix + (t - o) % L)                 # pool column of t
        seq = np.where(t < o + 2 * L, pool[np.arange(n)[:, None], np.clip(k, 0, width - 1)], PAD)
        seq[:, 0] = BOS                                                        # (N, T)
        inputs = seq[:, :-1]
        targets = np.where((t[:, :-1] >= o + L) & (seq[:, 1:] != PAD), seq[:, 1:], IGNORE)
        return {"inputs": inputs.astype(np.int64), "targets": targets.astype(np.int64),
                "period": period.astype(np.int64), "offset": offset.astype(np.int64)}
