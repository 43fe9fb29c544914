"""The numbers behind the page: tensors as base64 little-endian float32, large ones summarised."""
import base64
import json
import math

import numpy as np

from ..backend import to_numpy

MAX_NUMBERS = 262_144                                       # larger tensors are summarised
MOMENT_NUMBERS = 16_384                                     # the update's m, v, step: larger summarised
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


def tensor(a, limit=MAX_NUMBERS):
    """One tensor of the island: the full numbers, or for more than `limit` a summary (row norms,
    a histogram, the top-left BLOCK x BLOCK block) with its true shape; "norm" either way."""
    a = np.asarray(to_numpy(a), dtype=np.float32)
    if a.size <= limit:
        norm = float(np.sqrt((a.astype(np.float64) ** 2).sum()))   # float64: a mask's lowest squared
        return dict(b64(a), norm=norm if math.isfinite(norm) else None)
    flat = a.ravel()
    norm = math.sqrt(float(np.dot(flat, flat)))             # BLAS: no squared copy of a large tensor
    m = as_rows(a)                                          # (rows, last axis)
    rows = np.sqrt(np.einsum("ij,ij->i", m, m))            # (rows,)
    summary = {"row_norms": b64(rows), "histogram": histogram(m),
               "block": b64(m[:BLOCK, :BLOCK])}
    return {"shape": list(a.shape), "dtype": "float32", "norm": norm if math.isfinite(norm) else None,
            "limit": limit, "summary": summary}


def decode(entry):
    """The NumPy array of a full entry (tests and other programs read the island back with this)."""
    raw = base64.b64decode(entry["b64"])
    return np.frombuffer(raw, dtype="<f4").reshape(entry["shape"])


def encode_stage(stage):
    """A stage with its arrays made island tensors (in place), ready for JSON."""
    limits = stage.pop("limits", {})
    stage["tensors"] = {name: tensor(a, limits.get(name, MAX_NUMBERS))
                        for name, a in stage["tensors"].items()}
    return stage


def dumps(island):
    """The island as JSON that is safe inside <script>: every '<' escaped as \\u003c."""
    return json.dumps(island, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def read_island(html):
    """The island of a page's HTML text, parsed (for tests and other programs)."""
    start = html.index('id="glassformer-step">') + len('id="glassformer-step">')
    return json.loads(html[start:html.index("</script>", start)])
