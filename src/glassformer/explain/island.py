"""The numbers behind the page: tensors as base64 little-endian float32, each stored once, large
ones summarised."""
import base64
import hashlib
import json
import math

import numpy as np

from ..backend import to_numpy

MAX_NUMBERS = 262_144                                       # larger tensors are summarised
BLOCK = 64                                                  # a summary keeps the top-left 64 x 64
BINS = 64                                                   # and a histogram of this many bins


def b64(a):
    """{"shape", "dtype": "float32", "b64"}: a's numbers as little-endian float32 bytes, base64."""
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"shape": list(a.shape), "dtype": "float32", "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def as_rows(a):
    """a as a matrix (rows, last axis): a vector is one row."""
    return a.reshape(1, -1) if a.ndim < 2 else a.reshape(-1, a.shape[-1])


def histogram(a):
    """{"edges": tensor (BINS + 1,), "counts": [...]} of a's values above float32's lowest (masks)."""
    low = np.finfo(np.float32).min / 2
    v = a if a.min() > low else a[a > low]                  # a mask's lowest number aside
    counts, edges = np.histogram(v if v.size else np.zeros(1, np.float32), bins=BINS)
    return {"edges": b64(edges), "counts": [int(c) for c in counts]}


def finite(x):
    """x, or None where it is not finite (JSON has no inf or nan)."""
    return x if math.isfinite(x) else None


def summary(a):
    """A tensor of more than MAX_NUMBERS: its true shape and norm, its row norms, a histogram and the
    top-left BLOCK x BLOCK block."""
    flat = a.ravel()
    norm = math.sqrt(float(np.dot(flat, flat)))             # BLAS: no squared copy of a large tensor
    m = as_rows(a)                                          # (rows, last axis)
    rows = np.sqrt(np.einsum("ij,ij->i", m, m))            # (rows,)
    return {"shape": list(a.shape), "dtype": "float32", "norm": finite(norm), "limit": MAX_NUMBERS,
            "summary": {"row_norms": b64(rows), "histogram": histogram(m), "block": b64(m[:BLOCK, :BLOCK])}}


LOWEST = np.finfo(np.float32).min                           # a masked score
OPS = {                                                     # float32, one rounding per operation
    "scale": lambda s, x: s * x,                            # m = (1 - beta1) g: the first step's m
    "scale_square": lambda s, x: (s * x) * x,               # v = (1 - beta2) g g: the first step's v
    "add": lambda s, x, y: x + y,                           # a residual sum, x + PE
    "mask": lambda s, x, y: np.where(y != 0, x, LOWEST),    # scores + mask: the lowest where y is 0
}


def key(a):
    """(shape, sha1 of the little-endian float32 bytes): equal keys, equal numbers."""
    return a.shape, hashlib.sha1(np.ascontiguousarray(a, dtype="<f4").tobytes()).digest()


def norm_of(a):
    """|a| in float64 (a mask's lowest number squared stays finite), None if not finite."""
    return finite(float(np.sqrt((a.astype(np.float64) ** 2).sum())))


class Encoder:
    """Stages made island tensors, every distinct array stored once: a tensor equal to one stored
    before refers to it, and one that a stage's hint derives exactly from stored ones says how."""

    def __init__(self):
        self.seen = {}                                      # key(a) -> [stage id, tensor name]

    def stage(self, stage):
        """The stage with its arrays made island tensors (in place), ready for JSON. stage["derived"]
        (popped): {name: (op, [operand arrays], scale)}, a derivation to try for that tensor."""
        hints = stage.pop("derived", {})
        stage["tensors"] = {name: self.tensor(stage["id"], name, a, hints.get(name))
                            for name, a in stage["tensors"].items()}
        return stage

    def tensor(self, sid, name, a, hint=None):
        """One island tensor: a summary, a reference, a derivation, or the numbers in base64."""
        a = np.asarray(to_numpy(a), dtype=np.float32)
        if a.size > MAX_NUMBERS:
            return summary(a)
        k = key(a)
        if k in self.seen:                                  # stored before: name it
            return {"shape": list(a.shape), "dtype": "float32", "ref": self.seen[k], "norm": norm_of(a)}
        self.seen[k] = [sid, name]
        entry = self.derive(a, *hint) if hint else None
        return dict(entry or b64(a), norm=norm_of(a))

    def derive(self, a, op, operands, scale=None):
        """{"shape", "dtype", "op", "args"[, "scale"]} if OPS[op] of the stored operands is a, number for
        number; else None (an operand not stored, or other numbers)."""
        xs = [np.asarray(to_numpy(x), dtype=np.float32) for x in operands]
        where = [self.seen.get(key(x)) for x in xs]
        s = np.float32(scale or 0)
        trailing = all(y.shape == xs[0].shape[xs[0].ndim - y.ndim:] for y in xs[1:])   # as the page reads y
        if None in where or not trailing or not np.array_equal(OPS[op](s, *xs), a):
            return None
        entry = {"shape": list(a.shape), "dtype": "float32", "op": op, "args": where}
        return dict(entry, scale=float(s)) if scale is not None else entry


def stage_of(island, sid):
    """The stage of that id."""
    return next(s for s in island["stages"] if s["id"] == sid)


def decode(entry, island=None):
    """The NumPy array of a whole entry (tests and other programs read the island back with this);
    a reference or a derivation is looked up in `island`, which it then needs."""
    if "b64" in entry:
        return np.frombuffer(base64.b64decode(entry["b64"]), dtype="<f4").reshape(entry["shape"])
    if island is None:
        raise ValueError("a reference or a derivation: pass the island too, decode(entry, island)")
    if "ref" in entry:
        return decode(stage_of(island, entry["ref"][0])["tensors"][entry["ref"][1]], island)
    xs = [decode(stage_of(island, sid)["tensors"][name], island) for sid, name in entry["args"]]
    return OPS[entry["op"]](np.float32(entry.get("scale", 0)), *xs).reshape(entry["shape"])


def dumps(island):
    """The island as JSON that is safe inside <script>: every '<' escaped as \\u003c."""
    return json.dumps(island, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def read_island(html):
    """The island of a page's HTML text, parsed (for tests and other programs)."""
    start = html.index('id="glassformer-step">') + len('id="glassformer-step">')
    return json.loads(html[start:html.index("</script>", start)])
