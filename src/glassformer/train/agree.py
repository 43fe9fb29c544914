"""Ranks agree before step 1: under mpiexec every rank compares a digest of its settings, tokenizer,
tokens and model with the others', and all stop together, with one error naming the first difference,
before a collective could hang (another --steps, --task) or truncate (another vocabulary).

  with agreement(mpi, "start every rank with the same flags") as agreed:
      agreed.add("--steps", s["steps"])                    # ... and every check that may refuse a flag

The first collective is one MPI_Allgather of a 32-byte digest per rank: a fixed size, so it cannot
truncate. A rank refused inside the block (its own bad flag) brings its error to the exchange instead
of leaving the others waiting for it in MPI_Init.
"""
import contextlib
import hashlib
import json

import numpy as np

from .. import backend
from ..errors import UserError, os_error_message
from .parallel import launched_size

SHOWN = 60                              # characters of a value a disagreement shows
MISSING = object()                      # a name a rank never reached


def start_comm():
    """COMM_WORLD when mpiexec started several processes and mpi4py is here (else None: no exchange);
    the first MPI call, so it comes before any other rank's collective."""
    if launched_size() == 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:                                     # no MPI: each rank stops on its own (connect)
        return None
    return MPI.COMM_WORLD


class Agreed(list):
    """(name, value) pairs the ranks must agree on, in the order they are checked; add() computes a
    value (a callable: a digest) only when there are ranks to compare with."""

    def __init__(self, active):
        super().__init__()
        self.active = active

    def add(self, name, value):
        """Append (name, value), value() when it is callable; nothing in one process."""
        if self.active:
            self.append((name, one_line(value() if callable(value) else value)))


def one_line(value):
    """A value as the ranks compare it: its text on one line ("none" for None), in full."""
    return "none" if value is None else " ".join(str(value).split())


def show(text, other="", limit=SHOWN):
    """text cut to about `limit` characters around where it first differs from `other` (two long
    paths differ at their ends): what a disagreement prints."""
    if len(text) <= limit:
        return text
    start = next((i for i, (a, b) in enumerate(zip(text, other)) if a != b), min(len(text), len(other)))
    start = max(0, min(start - limit // 3, len(text) - limit))
    return ("..." if start else "") + text[start:start + limit] + ("..." if start + limit < len(text) else "")


def digest(*parts):
    """'sha256 1a2b3c4d5e6f7a8b' of host or device arrays (their bytes, dtypes and shapes: the data's
    tokens, a model's weights) and JSON-able dicts (a tokenizer's), compared between ranks."""
    h = hashlib.sha256()
    for a in parts:
        if isinstance(a, dict):
            h.update(json.dumps(a, sort_keys=True).encode())
            continue
        a = np.ascontiguousarray(backend.to_numpy(a))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.view(np.uint8).reshape(-1))
    return "sha256 " + h.hexdigest()[:16]


def stop_text(e):
    """What a rank that stopped before the exchange tells the others, on one line."""
    if isinstance(e, (SystemExit, KeyboardInterrupt)):
        return "Ctrl-C" if isinstance(e, KeyboardInterrupt) else "--help" if e.code in (0, None) else \
            f"exit {e.code}"
    text = os_error_message(e) if isinstance(e, OSError) else str(e)
    return show(one_line(text if isinstance(e, (UserError, OSError)) else f"{type(e).__name__}: {text}"),
                limit=4 * SHOWN)


def disagreement(ranks, fix):
    """The one line naming the first item the ranks' lists differ on, rank 0's order first; None when
    all agree. ranks: each rank's [(name, text)], a ("stop", why) last where it stopped early."""
    tables = [dict(items) for items in ranks]
    names = list(dict.fromkeys(name for items in ranks for name, _ in items))
    for name in names:
        values = [t.get(name, MISSING) for t in tables]
        r = next((r for r, v in enumerate(values) if v != values[0]), None)
        if r is None:
            continue
        stopped = [q for q in (0, r) if "stop" in tables[q] and (values[q] is MISSING or name == "stop")]
        if stopped:
            said = "; ".join(f"rank {q} stopped: {tables[q]['stop']}" for q in stopped)
            rest = "" if len(stopped) == 2 else f" (rank {r if stopped == [0] else 0} did not)"
            return f"ranks disagree before the first step: {said}{rest}: {fix}"
        a, b = (show(values[q], values[0 if q else r]) for q in (0, r))
        return (f"ranks disagree on {name}: rank 0 has {a}, rank {r} has {b}"
                f"{others(values, r)}: {fix}")
    return None


def others(values, r):
    """'; rank 3 differs too' (or 'ranks 2, 3 differ too') for the ranks after r that differ from rank 0."""
    more = [str(q) for q, v in enumerate(values) if q > r and v != values[0]]
    if not more:
        return ""
    return f"; rank {more[0]} differs too" if len(more) == 1 else f"; ranks {', '.join(more)} differ too"


def exchange(mpi, items):
    """Every rank's items, or None when their digests are all alike. The first collective is one
    MPI_Allgather of 32 bytes per rank (a fixed size: it cannot truncate); only when the digests
    differ do the ranks send their lengths, then the items (MPI_Allgatherv of the sizes just shared)."""
    payload = np.frombuffer(json.dumps(items).encode(), dtype=np.uint8)   # ASCII: surrogates too
    mine = np.frombuffer(hashlib.sha256(payload.tobytes()).digest(), dtype=np.uint8)
    everyone = np.empty((mpi.Get_size(), mine.size), dtype=np.uint8)
    mpi.Allgather(mine, everyone)
    if (everyone == everyone[0]).all():
        return None
    sizes = np.empty(mpi.Get_size(), dtype=np.int64)
    mpi.Allgather(np.array([payload.size], dtype=np.int64), sizes)
    received = np.empty(int(sizes.sum()), dtype=np.uint8)
    mpi.Allgatherv(payload, (received, sizes.tolist()))
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [[tuple(pair) for pair in json.loads(received[lo:hi].tobytes().decode())]
            for lo, hi in zip(bounds, bounds[1:])]


@contextlib.contextmanager
def agreement(mpi, fix):
    """Under mpiexec, every rank leaves the block through one exchange of what it added to the yielded
    Agreed, even when it stopped inside (a refused flag is a ("stop", why) item): when all agree the
    run goes on (or every rank raises its same error, rank 0 says it); otherwise every rank raises one
    UserError naming the first difference, so all stop together, before any collective can hang or
    truncate. mpi None: one process, nothing exchanged."""
    agreed = Agreed(mpi is not None and mpi.Get_size() > 1)
    if not agreed.active:
        yield agreed
        return
    failed = None
    try:
        yield agreed
    except BaseException as e:                              # SystemExit (--help), Ctrl-C, a bug too
        failed = e
        agreed.append(("stop", stop_text(e)))
    ranks = exchange(mpi, list(agreed))
    message = None if ranks is None else disagreement(ranks, fix)
    if failed is not None and (message is None or not isinstance(failed, (UserError, OSError))):
        raise failed                                        # the same stop on every rank, or a bug here
    if message is not None:
        raise UserError(message)
