"""Streaming text loaders: each one is a generator of document strings that never holds a whole big file."""
import re
from pathlib import Path

from ..errors import UserError
from ..inputs import iter_jsonl, stat_input
from .io import BLOCK_BYTES, Peeked, must_exist, read_blocks, read_lines

EOT_TEXT = "<|endoftext|>"


class Continuation(str):
    """A piece of text that continues the previous document (a big .txt file streams in pieces)."""


def txt_files(path):
    """The .txt files a path names: itself (a file or a pipe), or every .txt file under a folder, sorted."""
    if isinstance(path, Peeked):
        return [path]
    path = Path(path)
    must_exist(path)
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.rglob("*.txt") if not p.is_dir())
    for p in files:                       # a pipe or device among them is refused, never waited on
        stat_input(p, "text")
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


WIKITEXT_HEADING = re.compile(r"^ ?= (?!=)(.*\S) = ?$")   # " = Title = ", not " = = Section = = "


def read_wikitext(path, piece_chars=8 * BLOCK_BYTES):
    """WikiText (.tokens/.raw/.txt): one document per article; articles start at ` = Title = ` lines. An
    article longer than piece_chars streams in pieces (Continuations), as a big .txt file does."""
    # a title stands between two blank lines (the file's start and end count as blank); a line like
    # ` = Goals ; A = ` inside a paragraph is content (a table row), not a title
    article, blank_before, held = [], True, None      # held: a title-like line, until its next line is seen
    size, first = 0, True                             # characters in article; no piece of it yielded yet
    for _, line in read_lines(path):
        blank = not line.strip()
        if held is not None:
            if blank:                                  # a blank line after it: it was a title
                yield from _nonblank("".join(article), first)
                article, size, first = [], 0, True
            article.append(held)
            held = None
        if blank_before and WIKITEXT_HEADING.match(line.rstrip("\n")):
            held = line
        else:
            article.append(line)
            size += len(line)
            if size > piece_chars:                     # a huge article: its first part goes now
                pieces = tuple(_nonblank("".join(article), first))
                yield from pieces
                article, size, first = [], 0, first and not pieces
        blank_before = blank
    if held is not None:                               # a title on the last line
        yield from _nonblank("".join(article), first)
        article, first = [held], True
    yield from _nonblank("".join(article), first)


def _nonblank(text, first=True):
    """(text,) unless it is only whitespace: the blank preamble of a file is no document; a later piece of a
    document (first False) is a Continuation."""
    return ((text if first else Continuation(text)),) if text.strip() else ()


def count_words(path):
    """Whitespace-separated words plus one <eos> per line: what WikiText's word-level perplexity divides by."""
    return sum(len(line.split()) + 1 for _, line in read_lines(path))


def read_jsonl(path, field="text"):
    """JSON Lines with a `text` field (TinyStories/SimpleStories exports): one document per line."""
    for number, record in iter_jsonl(read_lines(path), path, "{path}: line {line}"):   # bounded, no NaN
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
