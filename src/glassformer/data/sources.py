"""Streaming text loaders: each one is a generator of document strings that never holds a whole big file."""
import json
import re
from pathlib import Path

from ..errors import UserError
from .io import BLOCK_BYTES, must_exist, read_blocks, read_lines

EOT_TEXT = "<|endoftext|>"


class Continuation(str):
    """A piece of text that continues the previous document (a big .txt file streams in pieces)."""


def txt_files(path):
    """The .txt files a path names: itself, or every .txt file under a folder, recursively, in sorted order."""
    path = Path(path)
    must_exist(path)
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


WIKITEXT_HEADING = re.compile(r"^ ?= (?!=)(.*\S) = ?$")   # " = Title = ", not " = = Section = = "


def read_wikitext(path):
    """WikiText (.tokens/.raw/.txt): one document per article, articles start at top-level ` = Title = ` lines."""
    article = []
    for _, line in read_lines(path):
        if WIKITEXT_HEADING.match(line.rstrip("\n")) and article:
            text = "".join(article)
            if text.strip():
                yield text
            article = []
        article.append(line)
    text = "".join(article)
    if text.strip():
        yield text


def count_words(path):
    """Whitespace-separated words plus one <eos> per line: what WikiText's word-level perplexity divides by."""
    return sum(len(line.split()) + 1 for _, line in read_lines(path))


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
