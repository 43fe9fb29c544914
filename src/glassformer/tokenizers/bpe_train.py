"""BPE training: count GPT-2 pre-tokens in texts or files, then learn merges with incremental pair counts."""
import heapq
import os
import re
import sys
import time
from collections import Counter, defaultdict
from os import PathLike

from ..errors import UserError
from ..inputs import open_input
from ..progress import Meter
from .pretokenize import WHITESPACE, gpt2_pattern


def merge_pair(ids, a, b, new):
    """Replace each non-overlapping (a, b), left to right, by new."""
    out, i, n = [], 0, len(ids)
    while i < n:
        if ids[i] == a and i + 1 < n and ids[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


SLICE_CHARS = 1 << 20                     # text counted per regex call: the meter moves, memory stays flat


def count_pretokens(source, specials=(), progress=False):
    """Counter of GPT-2 pre-tokens over training_texts(source); specials split off, not counted. A long text
    is counted in slices cut where a space run starts after a non-space (a pre-token boundary)."""
    counts, pattern = Counter(), gpt2_pattern()
    names = sorted(specials, key=len, reverse=True)
    split = re.compile("|".join(map(re.escape, names))) if names else None
    meter = Meter("bpe: counting pre-tokens", unit=" MB", scale=1e-6, digits=1) if progress else None
    start = time.perf_counter()
    for chunk in training_texts(source):
        for piece in _slices(chunk):
            for part in split.split(piece) if split else (piece,):
                counts.update(pattern.findall(part))
            if meter:
                meter.update(len(piece))                    # characters, shown as MB
    if meter:
        meter.close()
        print(f"bpe: {meter.n / 1e6:,.1f} MB of text counted in {time.perf_counter() - start:.1f} s",
              file=sys.stderr)
    return counts


_LAST_CUT = re.compile(rf"(?s:.*)[^{re.escape(WHITESPACE)}](?=[{re.escape(WHITESPACE)}])")


def _slices(text, size=SLICE_CHARS):
    """text in pieces of about `size` characters, each cut before a space run that follows a non-space (no
    pre-token spans such a cut); a run of over `size` characters with no space in it is cut anyway."""
    pos = 0
    while len(text) - pos > size:
        m = _LAST_CUT.match(text, pos, pos + size + 1)
        cut = m.end() if m and m.end() > pos else pos + size
        yield text[pos:cut]
        pos = cut
    yield text[pos:]


def require_text(counts):
    """UserError when the counted pre-tokens hold no visible character: an empty or whitespace-only
    text has nothing to learn merges from (the file's own check, data/minimum.py, names it first)."""
    if not any(not word.isspace() for word in counts):
        what = "is empty" if not counts else f"holds only whitespace ({sum(counts.values()):,} pre-tokens)"
        raise UserError(f"BPE training: the text {what}: there is nothing to learn merges from; train "
                        "on text with words in it")


def training_texts(source):
    """Text pieces of source: a str is text, a Path a file (streamed), an iterable holds either, one per document."""
    # a str that names a file or looks like a path is refused (_check_not_a_path): the caller almost
    # surely meant Path(...), and training on the name itself would succeed silently
    if isinstance(source, (str, PathLike)):
        source = [source]
    elif isinstance(source, (bytes, bytearray)) or not hasattr(source, "__iter__"):
        raise UserError(f"train: expected text (str), a Path, or an iterable of them; got {type(source).__name__}")
    for item in source:
        if isinstance(item, PathLike):
            yield from _file_chunks(item)
        elif isinstance(item, Text):
            yield item                      # text by construction (text_stream): never taken for a path
        elif isinstance(item, str):
            _check_not_a_path(item)
            yield item
        else:
            raise UserError(f"train: expected text (str) or a Path, got {type(item).__name__} {item!r:.60}")


class Text(str):
    """A str known to be text, never a file name: what text_stream yields."""


def text_stream(documents, sep="\n"):
    """sep.join(documents) as Text chunks cut only where a space run follows a non-space (a pre-token
    boundary), so train() counts the same pre-tokens without the joined text ever held whole."""
    carry = []                              # pieces not yet cut: they end in a space run or mid-word
    for k, doc in enumerate(documents):
        for piece in (sep, doc) if k else (doc,):
            head = piece.rstrip(WHITESPACE)
            if head and len(head) < len(piece):
                yield Text("".join(carry) + head)
                carry = [piece[len(head):]]
            elif piece:
                carry.append(piece)
    if carry:
        yield Text("".join(carry))


PATH_SUFFIXES = (".txt", ".tokens", ".raw", ".jsonl", ".json", ".xml", ".bz2", ".gz", ".md", ".csv")


def _check_not_a_path(text):
    """UserError when a str given as training text names a file or has the shape of a path."""
    if len(text) > 4096 or any(c in text for c in WHITESPACE):
        return                                      # real text: several words or lines
    if os.path.isfile(text):
        raise UserError(f"train: {text!r} names a file, but a str is used as the training text itself; "
                        f"pass Path({text!r}) to train on the file's contents")
    if "/" in text or os.sep in text or text.lower().endswith(PATH_SUFFIXES):
        raise UserError(f"train: {text!r} looks like a file name, but no such file exists and a str is used "
                        "as the training text itself; check the path and pass it as a Path")


def _file_chunks(path):
    """Decoded pieces of a UTF-8 file, cut so that pre-tokens are unchanged; bad bytes -> UserError with offset."""
    # a cut between a non-space and the following whitespace run is a pre-token boundary that no
    # lookahead crosses, so we hold each line's trailing whitespace back and prepend it to the next
    carry, offset = "", 0
    try:
        with open_input(path, "text", binary=True) as f:      # a FIFO or device: refused, unopened
            for raw in f:
                try:
                    chunk = carry + raw.decode("utf-8")          # no UTF-8 character spans a b"\n"
                except UnicodeDecodeError as e:
                    raise UserError(f"{path}: not UTF-8 text at byte {offset + e.start} ({e.reason}); "
                                    "convert it to UTF-8 first, e.g. `iconv -f latin1 -t utf-8`") from None
                offset += len(raw)
                head = chunk.rstrip(WHITESPACE)
                if head and len(head) < len(chunk):
                    yield head
                    carry = chunk[len(head):]
                else:
                    carry = chunk                   # all whitespace, or a last line with no newline
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e}); check the path and that it is a readable "
                        "file") from None
    if carry:
        yield carry


def learn_merges(words, freqs, n_merges, first_id=256, progress=False):
    """BPE merges, most frequent pair first (ties: smallest ids), with incremental pair counts.

    words: list of id lists (mutated); freqs: count per word. Only words holding the merged pair are
    revisited (index pair -> words); the best pair comes from a heap with lazy deletion of stale entries.
    """
    counts, where = defaultdict(int), defaultdict(set)
    for w, (syms, f) in enumerate(zip(words, freqs)):
        for pair in zip(syms, syms[1:]):
            counts[pair] += f
            where[pair].add(w)
    heap = [(-c, a, b) for (a, b), c in counts.items()]           # min-heap: highest count first
    heapq.heapify(heap)
    merges, meter = [], Meter("bpe", total=n_merges, unit=" merges") if progress else None
    start = time.perf_counter()
    while len(merges) < n_merges and heap:
        negc, a, b = heapq.heappop(heap)
        if counts.get((a, b)) != -negc:
            continue                                # stale: the count changed after this push
        new = first_id + len(merges)
        merges.append((a, b, new))
        touched = set()
        for w in where.pop((a, b)):
            syms = words[w]
            merged = merge_pair(syms, a, b, new)
            if len(merged) == len(syms):
                continue                            # stale index entry: an earlier merge took the pair
            f = freqs[w]
            for pair in zip(syms, syms[1:]):
                counts[pair] -= f
                touched.add(pair)
            for pair in zip(merged, merged[1:]):
                counts[pair] += f
                touched.add(pair)
                where[pair].add(w)
            words[w] = merged
        for pair in touched:
            if counts[pair] > 0:
                heapq.heappush(heap, (-counts[pair], *pair))
            else:
                del counts[pair]
        if meter:
            meter.update(1)
    if meter:
        meter.close()
        print(f"bpe: {len(merges):,} merges in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return merges
