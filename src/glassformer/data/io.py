"""Low-level file reading shared by the loaders: open (de)compressed files, decode UTF-8 in blocks, errors."""
import bz2
import codecs
import gzip
from pathlib import Path

from ..errors import UserError

BLOCK_BYTES = 1 << 20                     # read size; also the piece size of streamed .txt files


def open_binary(path):
    """Open a file for reading bytes, decompressing .bz2 and .gz on the fly."""
    path = Path(path)
    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(path.suffix, open)
    try:
        return opener(path, "rb")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; check the path (relative paths start at {Path.cwd()})") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a file; give a file, or use kind='txt' for a folder") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied; make the file readable") from None


def read_error(path, err):
    """The UserError for a compressed file that cannot be decompressed, or an unreadable file."""
    return UserError(f"{path}: cannot read it ({err}); the file is corrupt or truncated: "
                     "download it again, or check it with `bzip2 -t` / `gzip -t`")


def must_exist(path):
    """UserError when path names neither a file nor a folder."""
    if not path.exists():
        raise UserError(f"{path}: no such file or folder; check the path (relative paths start at {Path.cwd()})")


def read_head(path, n=1 << 16):
    """The first n bytes of a file (decompressed), for sniffing its kind."""
    with open_binary(path) as f:
        try:
            return f.read(n)
        except (OSError, EOFError) as e:
            raise read_error(path, e) from None


def read_blocks(path, block=BLOCK_BYTES):
    """Decoded UTF-8 text of a file in blocks of about `block` bytes; bad bytes -> UserError with line and offset."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset, line = 0, 1                   # bytes consumed and newlines seen before this block
    with open_binary(path) as f:
        while True:
            try:
                raw = f.read(block)
            except (OSError, EOFError) as e:
                raise read_error(path, e) from None
            pending = decoder.getstate()[0]          # bytes of a character cut by the last block
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as e:
                data = pending + raw
                at, bad_line = offset - len(pending) + e.start, line + data[:e.start].count(b"\n")
                raise UserError(f"{path}: not UTF-8 text at byte {at} (line {bad_line}): "
                                f"{e.reason}; re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`") from None
            if not raw:
                return
            offset, line = offset + len(raw), line + raw.count(b"\n")
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
