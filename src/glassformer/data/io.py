"""Low-level file reading shared by the loaders: open (de)compressed files, decode UTF-8 in blocks, errors."""
import bz2
import codecs
import gzip
import io
import zlib
from pathlib import Path

from ..errors import UserError
from ..inputs import open_input

BLOCK_BYTES = 1 << 20                     # read size; also the piece size of streamed .txt files
HEAD_BYTES = 1 << 16                      # what detect_kind sniffs
NL = b"\n"
READ_ERRORS = (OSError, EOFError, zlib.error)   # gzip raises zlib.error on some corrupt blocks


def is_stream(path):
    """True for a path that can be read only once: a pipe, a FIFO, /dev/stdin (neither a file nor a folder)."""
    if isinstance(path, Peeked):
        return True
    path = Path(path)
    return path.exists() and not path.is_file() and not path.is_dir()


class Peeked:
    """A pipe opened once, its first bytes read for sniffing and kept, then served again before the rest."""
    # loaders take a Peeked wherever they take a path; it is never reopened, so nothing is lost

    def __init__(self, path, n=HEAD_BYTES):
        self.path, self.taken = Path(path), False
        self._file = open_binary(self.path)
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
        return io.BufferedReader(_Chained(self.head, self._file), BLOCK_BYTES)


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
    """Open a file for reading bytes, decompressing .bz2 and .gz on the fly (a Peeked pipe: from its start)."""
    if isinstance(path, Peeked):
        return path.open()
    path = Path(path)
    f = open_input(path, "text", allow_stream=True, binary=True)   # a socket or folder: refused, unopened
    if path.suffix not in (".bz2", ".gz"):
        return f
    z = {".bz2": bz2.open, ".gz": gzip.open}[path.suffix](f, "rb")
    close = z.close

    def close_both():                     # a decompressor given a file object leaves it open
        try:
            close()
        finally:
            f.close()
    z.close = close_both
    return z


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
    with open_binary(path) as f:
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


def read_lines(path):
    """(line_number, line) for each line of a UTF-8 file, newline kept; streams any file size."""
    rest, number = "", 1
    for text in read_blocks(path):
        lines = (rest + text).split("\n")
        rest = lines.pop()                # the last line may continue in the next block
        for line in lines:
            yield number, line + "\n"
            number += 1
    if rest:
        yield number, rest
