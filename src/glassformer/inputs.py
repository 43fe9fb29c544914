"""Every file the program reads comes through here: open_input asks what a path is before opening it, and
the structured-text readers (JSON, JSON Lines, TOML, CSV) bound size, nesting depth and numbers.

So a hostile input is one UserError by construction, whichever surface it reaches: a named pipe, a device
or a folder where a file belongs is refused before it is opened (nothing waits on a FIFO or reads
/dev/zero forever); a 100,000-deep array, a 5,000-digit number, NaN where a number must be finite, a NUL
in a path or bytes that are not UTF-8 are one line naming file:line. RecursionError, ValueError and
OverflowError never escape a reader. Standard library only (the floor just above errors and files).
"""
import contextlib
import csv
import io
import json
import math
import os
import re
import stat
import sys

from .errors import UserError

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
# the size bound of each kind of input (None: no bound; a corpus or a checkpoint may be any size)
LIMITS = {"config": MIB, "json": 64 * MIB, "tokenizer": 256 * MIB, "metrics": 256 * MIB, "prompt": 16 * MIB,
          "qa": 1 * GIB, "text": None, "checkpoint": None, "weights": None, "source": 16 * MIB}
MAX_DEPTH = 64                          # arrays and objects inside each other
MAX_NUMBER_CHARS = 100                  # digits of one number: a float needs 25, a 64-bit int 20
SPECIAL = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
           (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
           (stat.S_ISSOCK, "a socket"))
STREAMS = (stat.S_ISFIFO, stat.S_ISCHR)  # what allow_stream lets through (a pipe, /dev/stdin)


# ---- the path: what it is, then open it --------------------------------------------------------

def file_kind(mode):
    """'a named pipe (FIFO)', 'a folder', ... for a st_mode that is not a regular file; None for one."""
    return next((name for test, name in SPECIAL if test(mode)), None if stat.S_ISREG(mode) else "not a file")


def stat_input(path, kind="json", allow_dir=False, allow_stream=False):
    """os.stat(path) (a symlink followed), refusing what is no regular file; one UserError, nothing opened."""
    try:
        st = os.stat(path)
    except ValueError:                                          # a NUL inside the path
        raise UserError(f"{_shown(path)}: the path holds a NUL character: no file has such a name; "
                        "check the path") from None
    except FileNotFoundError:
        raise UserError(f"{path}: cannot read it: no such file; check the path (relative paths start at "
                        f"{os.getcwd()})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e}); check the path and its permissions") from None
    what = file_kind(st.st_mode)
    if what is None or (allow_dir and stat.S_ISDIR(st.st_mode)) or \
            (allow_stream and any(t(st.st_mode) for t in STREAMS)):
        return st
    link = f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else ""
    raise UserError(f"{path}: cannot open it (cannot read {what}{link}: not a regular file); give a {kind} file"
                    + (" or folder" if allow_dir else ""))


def check_size(path, size, kind, max_bytes=None):
    """UserError when a file of `size` bytes is over the bound of its kind."""
    limit = LIMITS.get(kind) if max_bytes is None else max_bytes
    if limit is not None and size > limit:
        raise UserError(f"{path}: {size:,} bytes is far too large for a {kind} file (at most {limit:,}): "
                        "is it the right file?")


def open_input(path, kind="json", max_bytes=None, binary=False, allow_stdin=False, allow_stream=False):
    """A readable file object for path, checked first: a regular file within its kind's size bound.

    `-` is stdin where allow_stdin; allow_stream lets a pipe or character device through (the data
    library streams them once). The path is stat'ed before it is opened, and the open file fstat'ed
    again, so a file swapped for a FIFO between the two is refused too (opened non-blocking: no hang).
    """
    if str(path) == "-":
        if not allow_stdin:
            raise UserError(f"-: stdin is not read here; give the path of a {kind} file")
        return getattr(sys.stdin, "buffer", sys.stdin) if binary else sys.stdin   # the caller leaves it open
    st = stat_input(path, kind, allow_stream=allow_stream)
    special = not stat.S_ISREG(st.st_mode)
    if not special:
        check_size(path, st.st_size, kind, max_bytes)
    extra = os.O_CLOEXEC | (0 if special else os.O_NONBLOCK)   # a FIFO swapped in: open returns, unread
    try:
        f = open(path, "rb", opener=lambda p, flags: os.open(p, flags | extra))
    except OSError as e:
        raise UserError(f"{path}: cannot open it ({e.strerror or e}); check the path and its permissions") from None
    try:
        now = os.fstat(f.fileno())
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or stat.S_ISREG(now.st_mode) == special:
            raise UserError(f"{path}: changed while it was opened (now {file_kind(now.st_mode) or 'a file'}); "
                            "run again when nothing else writes it")
        os.set_blocking(f.fileno(), True)
    except BaseException:
        f.close()
        raise
    return f if binary else io.TextIOWrapper(f, "utf-8", newline="")


def read_bytes(path, kind="json", max_bytes=None, allow_stdin=False):
    """The bytes of a checked file, never more than its kind's bound (a file that grows is cut off)."""
    limit = LIMITS.get(kind) if max_bytes is None else max_bytes
    f = open_input(path, kind, max_bytes, binary=True, allow_stdin=allow_stdin)
    with contextlib.nullcontext(f) if str(path) == "-" else f:           # stdin stays open
        data = _read_upto(f, limit)
    if isinstance(data, str):                                           # a text-only stdin (a test's)
        data = data.encode("utf-8")
    if limit is not None and len(data) > limit:
        raise UserError(f"{path}: over {limit:,} bytes: far too large for a {kind} file; is it the right file?")
    return data


def _read_upto(f, limit, block=MIB):
    """The bytes of f to its end or just past limit (None: no limit), in blocks: memory as the data, not
    as the bound (f.read(n) would allocate n bytes up front)."""
    parts, total = [], 0
    while limit is None or total <= limit:
        part = f.read(block)
        if not part:
            break
        parts.append(part)
        total += len(part)
    return parts[0][:0].join(parts) if parts else b""


def decode_text(data, where):
    """UTF-8 text of bytes; not UTF-8 or holding NUL is one UserError naming the line and byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"{where}:{line}: not UTF-8 text at byte {e.start} ({e.reason}); re-save the file as "
                        "UTF-8, e.g. `iconv -f latin1 -t utf-8`") from None
    if "\0" in text:
        k = text.index("\0")
        raise UserError(f"{where}:{text.count(chr(10), 0, k) + 1}: NUL byte at character {k}: a binary file, "
                        "not UTF-8 text")
    return text


def read_text(path, kind="prompt", max_bytes=None, allow_stdin=False):
    """A whole UTF-8 text file (bounded, checked); bad bytes name the line."""
    return decode_text(read_bytes(path, kind, max_bytes, allow_stdin), str(path))


def check_path_text(text, where):
    """UserError for a string meant as a path that holds a NUL (the OS would refuse it with a traceback)."""
    if "\0" in str(text):
        raise UserError(f"{where}: the path {_shown(text)} holds a NUL character: no file has such a name")
    return text


def _shown(text, n=60):
    """A short printable form of a (hostile) string for a message."""
    r = repr(str(text))
    return r if len(r) <= n else r[:n] + "...'"


# ---- JSON and JSON Lines -----------------------------------------------------------------------

# unrolled loops ("[^"\\]*(?:\\.[^"\\]*)*"): an alternation under * costs the regex engine memory per
# character, hundreds of MB on a 4 MB string; these cost it per escape
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_TOML_SKIP = re.compile(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"[^"\\\n]*(?:\\.[^"\\\n]*)*"|\'[^\'\n]*\'|#[^\n]*')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")


def nesting_depth(text, strings=_JSON_STRING, limit=MAX_DEPTH):
    """The deepest nesting of [ and { outside strings (limit + 1 at most: it stops there), known before a
    recursive parser runs. Each pass removes the innermost pairs (one level); openers left unclosed
    count as levels too."""
    brackets, depth = _NOT_BRACKETS.sub("", strings.sub("", text)), 0
    if re.search(r"[\[{]{%d}" % (limit + 1), brackets):    # limit + 1 openers in a row: nested that deep
        return limit + 1
    while depth <= limit:
        inner = _INNERMOST.sub("", brackets)
        if len(inner) == len(brackets):
            return depth + brackets.count("[") + brackets.count("{")
        brackets, depth = inner, depth + 1
    return depth


def _number_hooks(where, allow_nan, fmt="JSON"):
    """parse_int / parse_float / parse_constant for json: numbers of bounded length, NaN where allowed."""
    def bounded(text, kind):
        if len(text) > MAX_NUMBER_CHARS:
            raise UserError(f"{where}: not valid {fmt} (a number too long to read: {len(text):,} characters, "
                            f"at most {MAX_NUMBER_CHARS})")
        value = kind(text)
        if not (allow_nan or isinstance(value, int) or math.isfinite(value)):
            raise UserError(f"{where}: {text[:20]} is not a finite number: give a finite one")
        return value

    def constant(name):
        if not allow_nan:
            raise UserError(f"{where}: {name} is not a number allowed here: give a finite number")
        return float(name)
    return {"parse_int": lambda s: bounded(s, int), "parse_float": lambda s: bounded(s, float),
            "parse_constant": constant}


def parse_json(text, where, max_depth=MAX_DEPTH, max_bytes=None, allow_nan=False, object_pairs_hook=None):
    """A JSON document from text (str or bytes) with bounded depth, size and numbers; where names it."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{where}: not valid JSON (not UTF-8 text at byte {e.start}: {e.reason})") from None
    if max_bytes is not None and len(text) > max_bytes:
        raise UserError(f"{where}: {len(text):,} characters of JSON, over the {max_bytes:,} read here")
    if nesting_depth(text, limit=max_depth) > max_depth:
        raise UserError(f"{where}: not valid JSON (nested too deeply), deeper than {max_depth} "
                        "levels")
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook, **_number_hooks(where, allow_nan))
    except json.JSONDecodeError as e:
        raise UserError(f"{where}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except (ValueError, RecursionError, OverflowError) as e:    # a hook's refusal is a UserError already
        raise UserError(f"{where}: JSON this reader refuses ({type(e).__name__}: {str(e)[:80]})") from None


def read_json(path, kind="json", max_bytes=None, allow_stdin=False, **options):
    """A JSON file: open_input's checks, then parse_json's bounds (options: max_depth, allow_nan, ...)."""
    return parse_json(read_bytes(path, kind, max_bytes, allow_stdin), str(path), **options)


def iter_jsonl(lines, path, where="{path}:{line}", **options):
    """(line number, value) of each non-blank (number, text) of lines, streamed (data.io.read_lines gives
    them for a file of any size); each line is parse_json'ed, its errors named by `where`."""
    for number, line in lines:
        if line.strip():
            yield number, parse_json(line, where.format(path=path, line=number), **options)


# ---- TOML --------------------------------------------------------------------------------------

def parse_toml(text, where, max_depth=MAX_DEPTH, allow_nan=False):
    """A TOML document's table with bounded depth and numbers (tomllib recurses, so depth is checked first)."""
    try:
        import tomllib                                          # Python 3.11+
    except ModuleNotFoundError:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        raise UserError(f"{where}: .toml files need Python 3.11 or later (tomllib); this is Python "
                        f"{version}: use a .json file") from None
    if "\0" in text:
        raise UserError(f"{where}: holds a NUL character: not a TOML text file")
    if nesting_depth(text, _TOML_SKIP, max_depth) > max_depth:
        raise UserError(f"{where}: not valid TOML (nested too deeply), deeper than {max_depth} "
                        "levels")
    hooks = _number_hooks(where, allow_nan, "TOML")
    try:
        data = tomllib.loads(text, parse_float=hooks["parse_float"])
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{where}: not valid TOML ({e})") from None
    except (ValueError, RecursionError, OverflowError) as e:
        raise UserError(f"{where}: TOML this reader refuses ({type(e).__name__}: {str(e)[:80]})") from None
    _check_numbers(data, where, allow_nan)
    return data


def _check_numbers(value, where, allow_nan):
    """UserError for an int of over MAX_NUMBER_CHARS digits or a non-finite float anywhere in value."""
    todo = [value]
    while todo:                                                 # no recursion: depth is bounded anyway
        v = todo.pop()
        if isinstance(v, dict):
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)
        elif isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 3.3 * MAX_NUMBER_CHARS:
            raise UserError(f"{where}: an integer of over {MAX_NUMBER_CHARS} digits; is it the right file?")
        elif isinstance(v, float) and not (allow_nan or math.isfinite(v)):
            raise UserError(f"{where}: {v} is not a number allowed here: give a finite number")


def read_toml(path, kind="config", max_bytes=None, **options):
    """A TOML file: open_input's checks, then parse_toml's bounds."""
    return parse_toml(decode_text(read_bytes(path, kind, max_bytes), str(path)), str(path), **options)


# ---- CSV ---------------------------------------------------------------------------------------

def parse_number(text, where, allow_nan=True):
    """'3' -> 3, '0.5' -> 0.5, '' -> None; anything else (or a number too long) is a UserError."""
    if text == "":
        return None
    if len(text) > MAX_NUMBER_CHARS:
        raise UserError(f"{where}: a number of {len(text):,} characters: at most {MAX_NUMBER_CHARS} are read")
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        if allow_nan or isinstance(value, int) or math.isfinite(value):
            return value
    raise UserError(f"{where}: {_shown(text, 30)} is not a number")


def read_csv_rows(path, kind="metrics", max_bytes=None, required=(), numeric=None):
    """The rows of a CSV file with a header line, as dicts; numeric: the columns parsed as numbers
    (None: all of them). Every line must have the header's columns; errors name file:line."""
    text = decode_text(read_bytes(path, kind, max_bytes), str(path))
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        lines = [(reader.line_num, cells) for cells in reader if cells]
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}: not a readable CSV line ({e})") from None
    if not lines:
        raise UserError(f"{path}: empty; a CSV file starts with a header line")
    header, rows = lines[0][1], []
    missing = [c for c in required if c not in header]
    if missing:
        raise UserError(f"{path}:1: no column {', '.join(missing)} in the header {_shown(','.join(header))}")
    for number, cells in lines[1:]:
        if len(cells) != len(header):
            raise UserError(f"{path}:{number}: {len(cells)} cells where the header has {len(header)} columns")
        rows.append({c: parse_number(v, f"{path}:{number}: {c}") if numeric is None or c in numeric else v
                     for c, v in zip(header, cells)})
    return rows
