"""Streaming text loaders: each one is a generator of document strings that never holds a whole big file."""
import bz2
import codecs
import gzip
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

KINDS = ("txt", "wikitext", "wikipedia", "jsonl", "stories")
EOT_TEXT = "<|endoftext|>"
BLOCK_BYTES = 1 << 20                     # read size; also the piece size of streamed .txt files


class Continuation(str):
    """A piece of text that continues the previous document (a big .txt file streams in pieces)."""


def _open_binary(path):
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


def _read_error(path, err):
    """The UserError for a compressed file that cannot be decompressed, or an unreadable file."""
    return UserError(f"{path}: cannot read it ({err}); the file is corrupt or truncated: "
                     "download it again, or check it with `bzip2 -t` / `gzip -t`")


def read_blocks(path, block=BLOCK_BYTES):
    """Decoded UTF-8 text of a file in blocks of about `block` bytes; bad bytes -> UserError with line and offset."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset, line = 0, 1                   # bytes consumed and newlines seen before this block
    with _open_binary(path) as f:
        while True:
            try:
                raw = f.read(block)
            except (OSError, EOFError) as e:
                raise _read_error(path, e) from None
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


def _must_exist(path):
    """UserError when path names neither a file nor a folder."""
    if not path.exists():
        raise UserError(f"{path}: no such file or folder; check the path (relative paths start at {Path.cwd()})")


def txt_files(path):
    """The .txt files a path names: itself, or every .txt file under a folder, recursively, in sorted order."""
    path = Path(path)
    _must_exist(path)
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise UserError(f"{path}: folder holds no .txt files; put UTF-8 .txt files in it or name a file")
    return files


def read_txt(path, piece_chars=BLOCK_BYTES):
    """Plain text: each file is one document, yielded in pieces cut at line ends (later pieces are Continuations)."""
    for file in txt_files(path):
        buffer, first = "", True
        for text in read_blocks(file):
            buffer += text
            while len(buffer) >= piece_chars:
                cut = buffer.rfind("\n", 0, piece_chars) + 1 or piece_chars   # at a line end if one is near
                piece, buffer = buffer[:cut], buffer[cut:]
                yield piece if first else Continuation(piece)
                first = False
        if buffer:
            yield buffer if first else Continuation(buffer)


_WIKITEXT_HEADING = re.compile(r"^ ?= (?!=)(.*\S) = ?$")   # " = Title = ", not " = = Section = = "


def read_wikitext(path):
    """WikiText (.tokens/.raw/.txt): one document per article, articles start at top-level ` = Title = ` lines."""
    article = []
    for _, line in read_lines(path):
        if _WIKITEXT_HEADING.match(line.rstrip("\n")) and article:
            text = "".join(article)
            if text.strip():
                yield text
            article = []
        article.append(line)
    text = "".join(article)
    if text.strip():
        yield text


def read_jsonl(path, field="text"):
    """JSON Lines with a `text` field (TinyStories/SimpleStories exports): one document per line."""
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: line {number}: not valid JSON ({e.msg}, column {e.colno}); "
                            f'each line must be one object like {{"{field}": "..."}}') from None
        if not isinstance(record, dict) or not isinstance(record.get(field), str):
            raise UserError(f"{path}: line {number}: no string field {field!r}; each line must be one object "
                            f'like {{"{field}": "..."}} (or pass field=... to name the text field)')
        if record[field].strip():
            yield record[field]


def read_stories(path, separator=EOT_TEXT, drop_partial=True, max_chars=8 * BLOCK_BYTES):
    """TinyStories-style text: documents split on `<|endoftext|>`; text after the last one dropped if drop_partial."""
    buffer, seen = "", False
    for text in read_blocks(path):
        stories = (buffer + text).split(separator)
        buffer = stories.pop()            # may be cut by the block boundary
        seen = seen or bool(stories)
        for story in stories:
            if story.strip():
                yield story.strip()
        if len(buffer) > max_chars:
            raise UserError(f"{path}: no {separator!r} within {max_chars} characters; is it a stories file? "
                            "use kind='txt' for plain text")
    if buffer.strip() and not (drop_partial and seen):
        yield buffer.strip()


def _head(path, n=1 << 16):
    """The first n bytes of a file (decompressed), for sniffing its kind."""
    with _open_binary(path) as f:
        try:
            return f.read(n)
        except (OSError, EOFError) as e:
            raise _read_error(path, e) from None


def detect_kind(path):
    """Guess a loader: folder -> txt, .xml(.bz2) or '<' first -> wikipedia, .jsonl -> jsonl, else sniff the text."""
    path = Path(path)
    _must_exist(path)
    if path.is_dir():
        return "txt"
    name = path.name.lower().removesuffix(".bz2").removesuffix(".gz")
    if name.endswith(".xml"):
        return "wikipedia"
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith((".tokens", ".raw")):
        return "wikitext"
    head = _head(path)
    if head.lstrip().startswith(b"<"):
        return "wikipedia"                # e.g. the dump parts named ...xml-p10p30302.bz2
    text = head.decode("utf-8", errors="replace")
    if EOT_TEXT in text:
        return "stories"
    if any(_WIKITEXT_HEADING.match(line) for line in text.splitlines()[:50]):
        return "wikitext"
    return "txt"


@dataclass
class Source:
    """A text source: a path, the loader kind that reads it, and the loader's options; iterate for documents."""
    path: Path
    kind: str
    options: dict = field(default_factory=dict)

    def __iter__(self):
        from .wikipedia import read_wikipedia
        loaders = {"txt": read_txt, "wikitext": read_wikitext, "wikipedia": read_wikipedia,
                   "jsonl": read_jsonl, "stories": read_stories}
        return loaders[self.kind](self.path, **self.options)

    def files(self):
        """The files this source reads (several for a folder)."""
        return txt_files(self.path) if self.kind == "txt" else [self.path]


def open_source(path, kind="auto", **options):
    """A Source for path; kind "auto" guesses from the name and first bytes (see detect_kind)."""
    path = Path(path)
    if kind == "auto":
        kind = detect_kind(path)
    if kind not in KINDS:
        raise UserError(f"unknown source kind {kind!r}: use one of auto, {', '.join(KINDS)}")
    _must_exist(path)
    if path.is_dir() and kind != "txt":
        raise UserError(f"{path}: is a folder; only kind='txt' reads folders (of .txt files)")
    return Source(path, kind, options)
