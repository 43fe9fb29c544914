"""Low-level file reading shared by the loaders: open (de)compressed files, decode UTF-8 in blocks, errors.

Every loader reads through open_binary, so every one reads within one budget: at most read_limit() bytes
of (decompressed) text per file, 2 GB unless GLASSFORMER_READ_LIMIT says otherwise; a read the budget
stops says so in one line on stderr. No line or document is held whole above MAX_DOCUMENT_CHARS.
"""
import bz2
import codecs
import gzip
import io
import os
import re
import sys
import zlib
from pathlib import Path

from ..errors import UserError
from ..inputs import open_input

BLOCK_BYTES = 1 << 20                     # read size; also the piece size of streamed .txt files
HEAD_BYTES = 1 << 16                      # what detect_kind sniffs
NL = b"\n"
READ_ERRORS = (OSError, EOFError, zlib.error)   # gzip raises zlib.error on some corrupt blocks
READ_LIMIT_ENV = "GLASSFORMER_READ_LIMIT"       # the reading budget: bytes of text per file, e.g. 500M, 8G
DEFAULT_READ_LIMIT = 2 * 10**9                  # 2 GB of text
MAX_DOCUMENT_CHARS = 16 * 10**6                 # one line, JSON line or Wikipedia page held whole: 16 MB
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[bB]?")
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def read_limit():
    """The reading budget in bytes of text per file: $GLASSFORMER_READ_LIMIT (500M, 8G, 0 for none) or 2 GB."""
    text = os.environ.get(READ_LIMIT_ENV, "").strip()
    if not text:
        return DEFAULT_READ_LIMIT
    m = _SIZE.fullmatch(text)
    if m is None or len(text) > 30:
        raise UserError(f"{READ_LIMIT_ENV}={text[:30]!r}: not a size; give bytes like 500M, 8G or 2000000000 "
                        "(0: no budget)")
    limit = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    return limit or None


def size_text(n):
    """2,000,000,000 -> '2.0 GB'."""
    return f"{n / 1e9:.1f} GB" if n >= 10**9 else f"{n / 1e6:.1f} MB" if n >= 10**6 else f"{n:,} bytes"


def is_stream(path):
    """True for a path that can be read only once: a pipe, a FIFO, /dev/stdin (neither a file nor a folder)."""
    if isinstance(path, Peeked):
        return True
    path = Path(path)
    return path.exists() and not path.is_file() and not path.is_dir()


def is_pipe(path):
    """True for a pipe some process writes (/dev/stdin, /dev/fd/63 of `<(zcat x.gz)`): it ends when its
    writer does. A named FIFO (mkfifo) is not one: opening it would wait for a writer that may never come."""
    return os.path.realpath(path).rpartition("/")[2].startswith("pipe:[")


class Peeked:
    """A pipe opened once, its first bytes read for sniffing and kept, then served again before the rest."""
    # loaders take a Peeked wherever they take a path; it is never reopened, so nothing is lost

    def __init__(self, path, n=HEAD_BYTES):
        self.path, self.taken = Path(path), False
        self._file = _decompressed(self.path)
        try:
            self.head = self._file.read(n)                    # a pipe: blocks until n bytes or the end
        except READ_ERRORS as e:
            self._file.close()
            raise read_error(self.path, e) from None

    def __str__(self):
        return str(self.path)

    def open(self):
        """The stream from its first byte: the kept head, then the rest; a pipe can be read once only."""
        if self.taken:
            raise UserError(f"{self.path}: a pipe can be read only once; save it to a file "
                            f"(e.g. `cat ... > data.txt`) to read it again")
        self.taken = True
        return _budgeted(_Chained(self.head, self._file), self.path)


class _Chained(io.RawIOBase):
    """Raw reads from `head` (bytes already read) and then from `rest` (a binary file)."""

    def __init__(self, head, rest):
        self.head, self.rest = memoryview(head), rest

    def readable(self):
        return True

    def readinto(self, buffer):
        if len(self.head):
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        return self.rest.readinto(buffer)

    def close(self):
        self.rest.close()
        super().close()


def open_binary(path):
    """Open a file for reading bytes, decompressing .bz2 and .gz on the fly (a Peeked pipe: from its start),
    within the reading budget (read_limit)."""
    if isinstance(path, Peeked):
        return path.open()
    return _budgeted(_decompressed(Path(path)), path)


def _decompressed(path):
    """The file's bytes, decompressed for .bz2 and .gz (open_input first: a socket or folder is refused)."""
    f = open_input(path, "text", allow_stream=True, binary=True)
    if path.suffix not in (".bz2", ".gz"):
        return f
    z = _Bz2Reader(f, path) if path.suffix == ".bz2" else gzip.open(f, "rb")
    close = z.close

    def close_both():                     # a decompressor given a file object leaves it open
        try:
            close()
        finally:
            f.close()
    z.close = close_both
    return z


class _Bz2Reader(io.RawIOBase):
    """bz2 decompressed stream after stream (pbzip2 writes several), in bounded pieces; bytes after the
    last stream that start no stream are refused (bz2.open drops them silently), as is a stream cut short."""

    def __init__(self, f, path):
        self.f, self.path, self.d = f, path, bz2.BZ2Decompressor()

    def readable(self):
        return True

    def readinto(self, buffer):
        while True:
            if self.d.eof:
                data = self.d.unused_data
                while len(data) < 3 and (more := self.f.read(BLOCK_BYTES)):
                    data += more
                if not data:
                    return 0
                if not data.startswith(b"BZh"):
                    raise UserError(f"{self.path}: bytes after the end of its bz2 data are not bz2 data (a "
                                    "damaged file, or another file appended); download it again, or check it "
                                    "with `bzip2 -t`")
                self.d = bz2.BZ2Decompressor()
            elif self.d.needs_input:
                data = self.f.read(BLOCK_BYTES)
                if not data:
                    raise EOFError("the compressed data ends before its end-of-stream marker")
            else:
                data = b""
            out = self.d.decompress(data, len(buffer))
            if out:
                buffer[:len(out)] = out
                return len(out)


def _budgeted(f, path):
    """f buffered and cut at the reading budget (read_limit) when one is set."""
    limit = read_limit()
    return io.BufferedReader(f if limit is None else _Budget(f, path, limit), BLOCK_BYTES)


class _Budget(io.RawIOBase):
    """Raw reads of f that end at `limit` bytes, cut back to a whole UTF-8 character, with one line on
    stderr when there was more."""

    def __init__(self, f, path, limit):
        self.f, self.path, self.left, self.limit, self.stopped = f, path, limit, limit, False

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.left <= 0:
            if self.left == 0 and self.f.read(1):   # exactly at the budget: is there more?
                self._stopped()
            self.left = -1
            return 0
        view = memoryview(buffer)[:self.left + 1]     # one byte more: is there more than the budget?
        n = self.f.readinto(view)
        if not n or n <= self.left:
            self.left -= n or 0
            return n
        n = _char_start(bytes(view[max(0, self.left - 3):self.left + 1]), self.left)
        self.left = -1
        self._stopped()
        return n

    def _stopped(self):
        self.stopped = True
        if str(self.path) in _NOTED:      # a command reading a file twice says it once
            return
        _NOTED.add(str(self.path))
        print(f"note: {self.path}: read stopped at the reading budget of {size_text(self.limit)} of text; set "
              f"{READ_LIMIT_ENV} (e.g. {READ_LIMIT_ENV}=8G, 0 for none) to read more", file=sys.stderr,
              flush=True)

    def close(self):
        self.f.close()
        super().close()


_NOTED = set()                            # the files whose read the budget stopped, noted once


def budget_stopped(f):
    """True when the reading budget cut open_binary's file f short."""
    return getattr(getattr(f, "raw", None), "stopped", False)


def _char_start(tail, at):
    """The largest cut <= at that splits no UTF-8 character; tail is the bytes at at-len(tail)+1 .. at."""
    k = len(tail) - 1                     # tail[k] is the byte at `at`: the first one left out
    while k > 0 and tail[k] & 0xC0 == 0x80:
        k -= 1                            # a continuation byte: the character started earlier
    return at - (len(tail) - 1 - k)


def read_error(path, err):
    """The UserError for a compressed file that cannot be decompressed, or an unreadable file."""
    return UserError(f"{path}: cannot read it ({err}); the file is corrupt or truncated: "
                     "download it again, or check it with `bzip2 -t` / `gzip -t`")


def must_exist(path):
    """UserError when path names neither a file nor a folder."""
    if not path.exists():
        raise UserError(f"{path}: no such file or folder; check the path (relative paths start at {Path.cwd()})")


def read_head(path, n=HEAD_BYTES):
    """The first n bytes of a file (decompressed), for sniffing its kind; a Peeked pipe's kept bytes."""
    if isinstance(path, Peeked):
        return path.head[:n]
    with io.BufferedReader(_decompressed(Path(path)), BLOCK_BYTES) as f:   # n bytes: no budget to note
        try:
            return f.read(n)
        except READ_ERRORS as e:
            raise read_error(path, e) from None


def read_blocks(path, block=BLOCK_BYTES):
    """Decoded UTF-8 text of a file in blocks of about `block` bytes; bad bytes -> UserError with line and offset."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset, line = 0, 1                   # bytes consumed and newlines seen before this block
    with open_binary(path) as f:
        while True:
            try:
                raw = f.read(block)
            except READ_ERRORS as e:
                raise read_error(path, e) from None
            pending = decoder.getstate()[0]          # bytes of a character cut by the last block
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as e:
                data = pending + raw
                at, bad_line = offset - len(pending) + e.start, line + data[:e.start].count(NL)
                raise UserError(f"{path}: not UTF-8 text at byte {at} (line {bad_line}): "
                                f"{e.reason}; re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`") from None
            if b"\0" in raw:                         # valid UTF-8, but no text file holds NUL bytes
                k = raw.index(b"\0")
                raise UserError(f"{path}: NUL byte at byte {offset + k} (line {line + raw.count(NL, 0, k)}): "
                                "a binary file (or UTF-16 text), not UTF-8 text; give a UTF-8 text file")
            if not raw:
                return
            offset, line = offset + len(raw), line + raw.count(NL)
            if text:
                yield text


def read_lines(path, max_chars=MAX_DOCUMENT_CHARS):
    """(line_number, line) for each line of a UTF-8 file, newline kept; streams any file size, and a line
    longer than max_chars is one UserError (never held whole: a 1 GB line would take GBs of memory)."""
    rest, number = [], 1                  # rest: the pieces of a line not ended yet
    held = 0
    for text in read_blocks(path):
        lines = text.split("\n")
        if len(lines) > 1:
            lines[0], rest, held = "".join(rest) + lines[0], [], 0
        tail = lines.pop()                # the last line may continue in the next block
        for line in lines:
            yield number, line + "\n"
            number += 1
        rest.append(tail)
        held += len(tail)
        if held > max_chars:
            raise UserError(f"{path}: line {number} is longer than {max_chars:,} characters: no line of this "
                            "kind of file is held whole above that; split it into lines, or give it as .txt")
    if held:
        yield number, "".join(rest)
