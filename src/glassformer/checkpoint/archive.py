"""The safe reader under load_checkpoint: an .npz checked from its zip directory and its .npy headers,
and its JSON header parsed with limits, so no array is allocated before its size is known to be real.

Refused with a UserError naming the file: special files (FIFOs, devices), damaged zips, encrypted or
compressed members, members that are not .npy, objects, records, pickles, big-endian data, shapes whose
bytes the file does not hold, JSON headers over 1 MiB (a tokenizer member over 128 MiB), nested over 64
deep, or of the wrong types.
"""
import math
import os
import reprlib
import stat
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..inputs import parse_json

HINT = "train one with: python train_step_by_step.py --task digits"   # needs_task names another task


def train_hint(task):
    """How to train a checkpoint of `task` (lm and qa read a text)."""
    return f"train one with: python train_step_by_step.py --task {task}" + \
        (" --data FILE" if task in ("lm", "qa") else "")


@contextmanager
def needs_task(task):
    """Inside it, a missing or unreadable checkpoint's hint names the task the command needs, not HINT's
    digits (evaluate, export, --chat and --init-from need an lm): one rephrasing, at the caller."""
    try:
        yield
    except UserError as e:
        if HINT not in str(e):
            raise
        raise UserError(str(e).replace(HINT, train_hint(task))) from None
MAX_MODEL_BYTES = 4 << 30               # the largest model a file may make us build: .npz or safetensors
MAX_HEADER_BYTES = 1 << 20              # the JSON header
MAX_TOKENIZER_BYTES = 128 << 20         # the tokenizer's own JSON member (GPT-2's: 1.7 MB; big ones: tens)
MAX_DEPTH = 64                          # its nesting
MAX_MEMBERS = 100_000                   # arrays in one archive
NUMBER_KINDS = "biuf"                   # bool, int, unsigned, float: no objects, records, strings
NPY_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
# what a damaged zip or .npy can raise while it is read (zlib: a broken stream; SyntaxError: a header)
READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, TypeError,
               KeyError, SyntaxError, RuntimeError, NotImplementedError, OverflowError, zlib.error)
SPECIAL = ((stat.S_ISFIFO, "named pipe"), (stat.S_ISCHR, "character device"),
           (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "folder"))


def archive_error(path, what):
    """The UserError of a checkpoint that cannot be used: the file, then what is wrong with it."""
    return UserError(f"{path}: {what}")


def short(e):
    """An exception as a short phrase for a message."""
    return reprlib.repr(str(e) or type(e).__name__).strip("'\"")


def regular_size(path):
    """The size of path, which must be a regular file: a FIFO or device is never opened (no hang)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise archive_error(path, f"no such checkpoint file; {HINT}") from None
    except OSError as e:
        raise archive_error(path, f"cannot read it ({e.strerror or short(e)})") from None
    for test, kind in SPECIAL:
        if test(st.st_mode):
            raise archive_error(path, f"not a checkpoint file but a {kind}: give the path of a .npz "
                                "checkpoint (or a run folder holding best.npz)")
    return st.st_size


@dataclass(frozen=True)
class Header:
    """One member's .npy header: the shape and dtype it declares, checked against the bytes it holds."""
    shape: tuple
    dtype: np.dtype
    fortran: bool
    offset: int                         # where the data starts in the member
    info: zipfile.ZipInfo

    @property
    def nbytes(self):
        return math.prod(self.shape) * self.dtype.itemsize


class Archive:
    """An open .npz whose members are all checked .npy headers; archive[key] reads one array."""

    def __init__(self, path):
        self.path, self.zip = path, None
        size = regular_size(path)
        try:
            self.file = open(path, "rb")
        except OSError as e:
            raise archive_error(path, f"cannot open it ({e.strerror or short(e)})") from None
        try:
            try:
                self.zip = zipfile.ZipFile(self.file)
            except READ_ERRORS as e:
                raise archive_error(path, f"not a readable .npz checkpoint ({short(e)}): truncated, "
                                    f"damaged or another kind of file? {HINT}") from None
            self.headers = self._read_headers(size)
        except BaseException:
            self.close()
            raise

    @property
    def files(self):
        """The member names without .npy, as numpy's NpzFile lists them."""
        return list(self.headers)

    def __contains__(self, key):
        return key in self.headers

    def __getitem__(self, key):
        """The array of member `key`, read into an array of its checked shape; the CRC-32 checked."""
        h = self.headers[key]
        a = np.empty(h.shape[::-1] if h.fortran else h.shape, h.dtype)
        data, done = a.reshape(-1).view(np.uint8), 0      # the array's own bytes, filled in place
        try:
            with self.zip.open(h.info) as f:
                f.read(h.offset)                            # the .npy header, parsed already
                while done < data.size:
                    chunk = f.read(min(1 << 24, data.size - done))
                    if not chunk:
                        raise EOFError("the array ends early")
                    data[done:done + len(chunk)] = np.frombuffer(chunk, np.uint8)
                    done += len(chunk)
                if f.read(1):                               # reading to the end checks the CRC-32
                    raise ValueError("bytes after the array")
        except READ_ERRORS as e:
            raise archive_error(self.path, f"member {key!r} cannot be read ({short(e)}): the file is "
                                "damaged; use another checkpoint (e.g. last.npz or best.npz)") from None
        return a.T if h.fortran else a

    def json(self, key, limit, kind, called):
        """Member `key` parsed as a JSON object: a 1-D uint8 array of at most `limit` bytes, its size
        checked before it is read, then parsed with parse_header's limits (kind, called: for messages)."""
        head = self.headers[key]
        if head.dtype != np.uint8 or len(head.shape) != 1 or head.nbytes > limit:
            raise archive_error(self.path, f"the {key} entry is not {kind} (a {head.dtype} array of "
                                f"shape {head.shape}, at most {limit} bytes expected)")
        return parse_header(self.path, self[key].tobytes(), called)

    def close(self):
        if self.zip is not None:
            self.zip.close()
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read_headers(self, size):
        """{key: Header} from the central directory and each member's .npy header; nothing else read."""
        infos = self.zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise archive_error(self.path, f"{len(infos):,} members: not a checkpoint")
        headers, total = {}, 0
        for info in infos:
            name, problem = info.filename, None
            if info.flag_bits & 0x1:
                problem = "is encrypted"
            elif info.compress_type != zipfile.ZIP_STORED:
                problem = (f"is compressed (zip method {info.compress_type}); glassformer reads the stored "
                           "members np.savez and save_checkpoint write")
            elif not name.endswith(".npy"):
                problem = "is not a .npy array"
            elif name[:-4] in headers:
                problem = "appears twice"
            elif info.compress_size != info.file_size:
                problem = "has a stored size unlike its size"
            if problem:
                raise archive_error(self.path, f"member {name!r} {problem}: not a glassformer "
                                    "checkpoint, or a damaged one")
            total += info.compress_size
            headers[name[:-4]] = self._header(info)
        if total > size:
            raise archive_error(self.path, f"its members claim {total:,} bytes but the file has "
                                f"{size:,}: it is truncated or damaged")
        return headers

    def _header(self, info):
        """The Header of one member, read from its first bytes and checked against its size."""
        name = info.filename
        try:
            with self.zip.open(info) as f:
                read = NPY_READERS.get(np.lib.format.read_magic(f))
                if read is None:
                    raise ValueError("an unknown .npy format version")
                shape, fortran, dtype = read(f)
                offset = f.tell()
        except READ_ERRORS as e:
            raise archive_error(self.path, f"member {name!r} is not a readable .npy array "
                                f"({short(e)})") from None
        if (dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None
                or dtype.kind not in NUMBER_KINDS or dtype.byteorder == ">"):
            raise archive_error(self.path, f"member {name!r} is a {dtype.str} array: checkpoints hold "
                                "plain little-endian numbers (no objects, records or pickles)")
        head = Header(tuple(shape), dtype, bool(fortran), offset, info)
        if any(n < 0 for n in head.shape) or head.nbytes != info.file_size - offset:
            raise archive_error(self.path, f"member {name!r} declares a {dtype} array of shape "
                                f"{head.shape} ({head.nbytes:,} bytes) but holds "
                                f"{info.file_size - offset:,} bytes")
        return head


# ---- the JSON header ------------------------------------------------------------------------------

def parse_header(path, raw, what="the checkpoint header"):
    """The JSON header (or another JSON member, `what`) from its bytes: UTF-8, a JSON object, at most
    MAX_DEPTH deep."""
    try:                                                    # inputs' bounded reader: depth, numbers
        meta = parse_json(raw, what, max_depth=MAX_DEPTH, allow_nan=True)
    except UserError as e:
        raise archive_error(path, f"{e}: not a glassformer checkpoint, or damaged") from None
    if not isinstance(meta, dict):
        raise archive_error(path, f"{what} is a JSON {type(meta).__name__}, not an "
                            "object: not a glassformer checkpoint")
    level, depth = [meta], 1
    while level:                                            # breadth first: no recursion
        level = [v for x in level for v in (x.values() if isinstance(x, dict) else x)
                 if isinstance(v, (dict, list))]
        depth += bool(level)
        if depth > MAX_DEPTH:
            raise archive_error(path, f"{what} nests deeper than {MAX_DEPTH} levels")
    return meta


class Check:
    """A schema leaf: a test on one value, and the words saying what the value must be."""

    def __init__(self, text, test):
        self.text, self.test = text, test


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return (_is_int(v) or isinstance(v, float)) and not math.isnan(v)


NAT = Check("a whole number >= 0", lambda v: _is_int(v) and v >= 0)
POSITIVE = Check("a whole number >= 1", lambda v: _is_int(v) and v >= 1)
INT = Check("a whole number", _is_int)
NUMBER = Check("a number", _is_number)                      # inf allowed: a best loss not yet set
FLOAT = Check("a finite number", lambda v: _is_number(v) and math.isfinite(v))


def parsed_by(parse, text):
    """A Check of the values a flag's argparse type accepts (a saved setting must be a valid flag)."""
    def test(value):
        try:
            parse(str(value))
        except Exception:                                   # noqa: BLE001  ArgumentTypeError, ValueError...
            return False
        return isinstance(value, (str, int, float))
    return Check(text, test)


def describe(schema):
    """What a schema asks for, in words."""
    if schema is None:
        return "null"
    if isinstance(schema, Check):
        return schema.text
    if isinstance(schema, tuple):
        return " or ".join(describe(s) for s in schema)
    kind = type(schema) if isinstance(schema, (dict, list)) else schema
    return {dict: "an object", list: "a list", str: "a string", bool: "true or false",
            int: "a whole number", float: "a number"}.get(kind, kind.__name__)


def mismatch(value, schema, where):
    """None when value fits schema, else the first problem in words (where: the key path so far)."""
    if isinstance(schema, tuple):
        if any(mismatch(value, s, where) is None for s in schema):
            return None
    elif schema is None:
        if value is None:
            return None
    elif isinstance(schema, Check):
        if schema.test(value):
            return None
    elif isinstance(schema, dict):
        if isinstance(value, dict):
            for key, sub in schema.items():
                name = key.rstrip("?")
                if name not in value:
                    if key.endswith("?"):
                        continue
                    return f"{where} has no {name!r}"
                problem = mismatch(value[name], sub, f"{where}.{name}")
                if problem:
                    return problem
            return None
    elif isinstance(schema, list):
        if isinstance(value, list):
            return next((p for i, v in enumerate(value) if (p := mismatch(v, schema[0], f"{where}[{i}]"))),
                        None)
    elif isinstance(value, schema) and not (schema is int and isinstance(value, bool)):
        return None
    return f"{where} is {reprlib.repr(value)}, not {describe(schema)}"


def check_schema(path, value, schema, where="header"):
    """value, checked against schema: a type, a Check, None, a tuple (any of them), a dict
    {key: schema} ("key?": optional; other keys are allowed) or a list [schema] (every item)."""
    problem = mismatch(value, schema, where)
    if problem:
        raise archive_error(path, f"bad checkpoint {problem}")
    return value
