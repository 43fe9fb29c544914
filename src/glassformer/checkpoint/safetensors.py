"""The safetensors format (Hugging Face's weights files) read and written in NumPy, no dependency.

A file is: 8 bytes, the header's length N as a little-endian uint64; N bytes of JSON
{name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {str: str}};
then the tensors' raw little-endian bytes, offsets counted from the end of the header. The header is
checked in full before any tensor is read (size bound, known dtypes, shapes matching their byte
spans, spans in range, contiguous and non-overlapping), and each tensor is mapped alone from its
offset (copy-on-write, read by the OS on first use), so a crafted file is one UserError, never a
MemoryError or a read past the end.
"""
import json
import math
import mmap
import os
import stat
import struct
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..files import atomic_write
from ..inputs import open_input, parse_json
from .archive import MAX_MODEL_BYTES

MAX_HEADER_BYTES = 16 << 20             # GPT-2's header is ~15 KB; the format's own limit is 100 MB
# safetensors dtype -> the NumPy dtype its bytes are read as (BF16: raw uint16, widened on reading)
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
          "I16": "<i2", "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
NAMES = {np.dtype(v): k for k, v in DTYPES.items() if k != "BF16"}   # NumPy dtype -> safetensors name
ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


def bf16_to_f32(bits):
    """bfloat16 bit patterns (uint16) -> float32: they are float32's upper half, so shift 16 left."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x):
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even (NaN stays NaN)."""
    u = np.asarray(x, np.float32, order="C").view(np.uint32)
    rounded = (u + (0x7FFF + ((u >> 16) & 1))) >> 16        # round half to even on the kept bits
    nan = np.isnan(np.asarray(x, np.float32))
    return np.where(nan, (u >> 16) | 0x40, rounded).astype(np.uint16)   # quiet NaN, never inf


def st_error(path, what):
    """The UserError of a safetensors file that cannot be used."""
    return UserError(f"{path}: {what}")


@dataclass(frozen=True)
class Entry:
    """One tensor of the header: its dtype name, shape and byte span in the data section."""
    dtype: str
    shape: tuple
    begin: int
    end: int

    @property
    def size(self):
        return math.prod(self.shape)


def file_size(path):
    """The size of path, which must be a regular file (a FIFO or device is never opened)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise st_error(path, "no such file") from None
    except OSError as e:
        raise st_error(path, f"cannot read it ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise st_error(path, "not a regular file: give the path of a .safetensors file")
    return st.st_size


def _unique_keys(pairs):
    """json object_pairs_hook: a repeated key is refused (which of the two would be meant?)."""
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"the key {k!r} appears twice")
        d[k] = v
    return d


def _is_nat(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def parse_entry(path, name, e, data_bytes):
    """One header entry, checked: the dtype known, the shape x itemsize equal to its byte span."""
    if not isinstance(e, dict) or set(e) != ENTRY_KEYS:
        raise st_error(path, f"tensor {name!r}: a header entry must have exactly the keys "
                       f"{sorted(ENTRY_KEYS)}, got {sorted(e) if isinstance(e, dict) else type(e).__name__}")
    if not isinstance(e["dtype"], str) or e["dtype"] not in DTYPES:   # a list or object is unhashable
        raise st_error(path, f"tensor {name!r} has dtype {e['dtype']!r}, which glassformer does not "
                       f"read (it reads {', '.join(DTYPES)})")
    shape, span = e["shape"], e["data_offsets"]
    if not isinstance(shape, list) or not all(_is_nat(n) for n in shape):
        raise st_error(path, f"tensor {name!r}: shape {shape!r} is not a list of whole numbers >= 0")
    if not (isinstance(span, list) and len(span) == 2 and all(_is_nat(n) for n in span)
            and span[0] <= span[1] <= data_bytes):
        raise st_error(path, f"tensor {name!r}: data_offsets {span!r} are not [begin, end] within the "
                       f"file's {data_bytes:,} data bytes (truncated or damaged?)")
    entry = Entry(e["dtype"], tuple(shape), span[0], span[1])
    if entry.size * np.dtype(DTYPES[entry.dtype]).itemsize != entry.end - entry.begin:
        raise st_error(path, f"tensor {name!r}: shape {list(shape)} of {entry.dtype} needs "
                       f"{entry.size * np.dtype(DTYPES[entry.dtype]).itemsize:,} bytes but its offsets "
                       f"span {entry.end - entry.begin:,}")
    return entry


def check_layout(path, entries, data_bytes):
    """The spans, sorted, must tile the data section exactly: no gap, no overlap, nothing after."""
    at = 0
    for name, e in sorted(entries.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if e.begin != at:
            what = "overlaps the tensor before it" if e.begin < at else "leaves a gap before it"
            raise st_error(path, f"tensor {name!r} at bytes {e.begin:,}..{e.end:,} {what} (the "
                           "tensors must be stored back to back)")
        at = e.end
    if at != data_bytes:
        raise st_error(path, f"the tensors end at data byte {at:,} but the file holds {data_bytes:,} "
                       "(trailing bytes: damaged, or not a safetensors file)")


def read_header(path):
    """(entries {name: Entry}, metadata {str: str}, data start) of a file, fully checked."""
    size = file_size(path)
    if size < 8:
        raise st_error(path, f"{size} bytes is too short for a safetensors file (8-byte header length)")
    with open_input(path, "weights", binary=True) as f:    # re-checked after open: no FIFO swapped in
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise st_error(path, f"the header claims {n:,} bytes (the file has {size - 8:,} after the "
                           f"length, the limit is {MAX_HEADER_BYTES:,}): not a safetensors file, or damaged")
        if size - 8 - n > MAX_MODEL_BYTES:                   # the cap the .npz loader has too
            raise st_error(path, f"it holds {size - 8 - n:,} bytes of tensors, over the {MAX_MODEL_BYTES:,} "
                           "bytes (4 GiB) glassformer loads: a model this large is refused")
        raw = f.read(n)
    try:                                                    # bounded depth and numbers, no NaN
        header = parse_json(raw, "the header", object_pairs_hook=_unique_keys)
    except UserError as e:
        raise st_error(path, f"{e}: not a safetensors file, or damaged") from None
    if not isinstance(header, dict):
        raise st_error(path, f"the header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise st_error(path, "__metadata__ must be an object of strings")
    data_bytes = size - 8 - n
    entries = {name: parse_entry(path, name, e, data_bytes) for name, e in header.items()}
    check_layout(path, entries, data_bytes)
    return entries, metadata, 8 + n


class SafeTensors:
    """An open, checked .safetensors file: entries and metadata from its header; read(name) maps one.

    The file is mapped once, privately (copy-on-write), on the first read: each tensor is a view
    of it, the OS reads a page when it is first used, and a write copies that page, never reaching
    the file (a GPT-2 folder loads in a blink, with no copy of its 500 MB before first use).
    """

    def __init__(self, path):
        self.path = path
        self.entries, self.metadata, self.start = read_header(path)
        self.size = self.start + max((e.end for e in self.entries.values()), default=0)
        self._map = None

    def __contains__(self, name):
        return name in self.entries

    def keys(self):
        return list(self.entries)

    def read(self, name):
        """Tensor `name` as a NumPy array mapped from the file (BF16 widened to float32)."""
        e = self.entries[name]
        dtype = np.dtype(DTYPES[e.dtype])
        if file_size(self.path) < self.size:               # shrunk since its header was read:
            raise st_error(self.path, f"tensor {name!r} is cut short (the file shrank since its "
                           "header was read?)")            # refused here, never a SIGBUS on first use
        if not e.size:
            return np.empty(e.shape, dtype)
        a = np.frombuffer(self.mapping(), dtype, e.size, self.start + e.begin)   # 1-D, no copy
        a = a.reshape(e.shape)                              # a view: its base is the 1-D run
        return bf16_to_f32(a) if e.dtype == "BF16" else a

    def mapping(self):
        """The whole file mapped privately (one descriptor for all its tensors), made once."""
        if self._map is None:
            try:
                with open_input(self.path, "weights", binary=True) as f:   # no FIFO swapped in
                    if os.fstat(f.fileno()).st_size < self.size:
                        raise st_error(self.path, "the file is cut short (it shrank since its "
                                       "header was read?)")
                    self._map = mmap.mmap(f.fileno(), self.size, access=mmap.ACCESS_COPY)
            except OSError as ex:
                raise st_error(self.path, f"cannot map it ({ex.strerror or ex})") from None
        return self._map


def load_safetensors(path):
    """Every tensor of a file as {name: array} (small files; large ones: SafeTensors(path).read)."""
    st = SafeTensors(path)
    return {name: st.read(name) for name in st.keys()}


def save_safetensors(path, tensors, metadata=None, dtype=None):
    """Write {name: array} as a safetensors file atomically; dtype "F32"/"F16"/"BF16" casts floats."""
    if dtype not in (None, "F32", "F16", "BF16"):
        raise UserError(f"dtype {dtype!r}: use F32, F16 or BF16")
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str)
                                        for k, v in metadata.items()):
        raise UserError("safetensors __metadata__ holds strings only")
    header, blobs, at = {}, [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        if dtype is not None and a.dtype.kind == "f":
            kind = dtype
            a = f32_to_bf16(a) if dtype == "BF16" else a.astype(DTYPES[dtype])
        elif a.dtype.newbyteorder("<") in NAMES:            # big-endian input is written little
            kind = NAMES[a.dtype.newbyteorder("<")]
        else:
            raise UserError(f"tensor {name!r} is a {a.dtype} array, which safetensors cannot hold")
        a = np.asarray(a, DTYPES[kind], order="C")          # little-endian, C order (0-d stays 0-d)
        header[name] = {"dtype": kind, "shape": list(a.shape), "data_offsets": [at, at + a.nbytes]}
        blobs.append(a)
        at += a.nbytes
    if metadata:
        header["__metadata__"] = dict(metadata)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)                           # pad with spaces: data 8-byte aligned
    with atomic_write(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for a in blobs:
            f.write(memoryview(a.reshape(-1)).cast("B"))    # no copy of the array
    return path
