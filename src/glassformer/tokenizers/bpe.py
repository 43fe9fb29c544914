"""ByteLevelBPE: GPT-2's byte-level BPE (Sennrich et al. 2016; Radford et al. 2019), trained here or loaded.

Text -> GPT-2 pre-tokens (regex) -> UTF-8 bytes -> merges applied by rank. Any str round-trips exactly,
except lone surrogates ("\\ud800"), which UTF-8 cannot hold: encode() replaces them with U+FFFD.
"""
import functools
import heapq
import re
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from os import PathLike

from ..errors import UserError
from .base import Tokenizer, check_ids, check_specials, read_json

GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# \s in GPT2_SPLIT is Unicode White_Space; Python's \s also matches \x1c-\x1f, so we spell it out
WHITESPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
              + "\u2028\u2029\u202f\u205f\u3000")
ENDOFTEXT = "<|endoftext|>"
NO_RANK = float("inf")                              # rank of a pair that is not a merge


@functools.lru_cache(maxsize=None)
def gpt2_pattern():
    """GPT2_SPLIT for Python's re (no \\p{..}): classes built from unicodedata's general categories."""
    ranges = {"L": [], "N": []}                     # \p{L} = Lu Ll Lt Lm Lo; \p{N} = Nd Nl No
    category = unicodedata.category
    for cp in range(0x110000):
        group = ranges.get(category(chr(cp))[0])
        if group is None:
            continue
        if group and group[-1][1] == cp - 1:
            group[-1][1] = cp
        else:
            group.append([cp, cp])
    # re tests a class's BMP part with one table lookup but its astral ranges one by one, so each
    # class is split in two and the astral half is tried only after a cheap "is it astral?" guard
    Lb, La, Nb, Na = (_class(ranges[k], astral) for k in "LN" for astral in (False, True))
    s = "".join(f"\\U{ord(c):08x}" for c in WHITESPACE)
    guard = r"(?=[\U00010000-\U0010ffff])"
    L, N = f"(?:[{Lb}]|{guard}[{La}])", f"(?:[{Nb}]|{guard}[{Na}])"
    other = f"(?:[^{s}{Lb}{Nb}\\U00010000-\\U0010ffff]|{guard}[^{La}{Na}])"     # [^\s\p{L}\p{N}]
    return re.compile(rf"'s|'t|'re|'ve|'m|'ll|'d| ?{L}+| ?{N}+| ?{other}+|[{s}]+(?![^{s}])|[{s}]+")


def _class(ranges, astral):
    """Body of a [...] class: the BMP part (astral=False) or the astral part of code point ranges."""
    lo, hi = (0x10000, 0x10FFFF) if astral else (0, 0xFFFF)
    clipped = [(max(a, lo), min(b, hi)) for a, b in ranges]
    return "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in clipped if a <= b)


@functools.lru_cache(maxsize=None)
def bytes_to_unicode():
    """GPT-2's printable stand-in for each byte: printable Latin-1 maps to itself, the rest to U+0100..."""
    keep = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


def _to_unicode(bs):
    table = bytes_to_unicode()
    return "".join(table[b] for b in bs)


@functools.lru_cache(maxsize=None)
def unicode_to_bytes():
    return {c: b for b, c in bytes_to_unicode().items()}


def _from_unicode(s, where):
    inverse = unicode_to_bytes()
    try:
        return bytes(inverse[c] for c in s)
    except KeyError as e:
        raise UserError(f"{where}: token {s!r} has character {e.args[0]!r}, which is not in GPT-2's "
                        "byte alphabet") from None


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


def safe_text(text):
    """text unchanged if UTF-8 can hold it; else lone surrogates -> U+FFFD (valid pairs are joined)."""
    if not isinstance(text, str):
        raise UserError(f"encode: expected a str, got {type(text).__name__}")
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class ByteLevelBPE(Tokenizer):
    """Byte-level BPE with GPT-2's pre-tokenisation; ids match GPT-2 exactly when built by from_gpt2."""

    type = "bpe"
    cache_limit = 1 << 18                           # pre-token -> ids cache entries before a reset

    def __init__(self, tokens, merges, specials=None, where="tokenizer"):
        """tokens: bytes per id; merges: (a, b, new) in rank order; specials: {name: id}."""
        self._bytes = [bytes(t) for t in tokens]
        self.specials = dict(specials or {})
        n = len(self._bytes)
        for name, i in self.specials.items():
            if not (isinstance(i, int) and 0 <= i < n) or self._bytes[i] != name.encode("utf-8"):
                raise UserError(f"{where}: special token {name!r} has a bad id {i!r}")
        special_ids = set(self.specials.values())
        byte_ids = {}
        for i, t in enumerate(self._bytes):
            if len(t) == 1 and i not in special_ids:
                byte_ids.setdefault(t[0], i)
        if len(byte_ids) != 256:
            raise UserError(f"{where}: the vocabulary lacks {256 - len(byte_ids)} of the 256 byte tokens")
        self._byte_ids = [byte_ids[b] for b in range(256)]
        self.merges = [tuple(m) for m in merges]
        self._ranks = {}                             # (a, b) -> rank; merges[rank] = (a, b, new)
        for rank, (a, b, new) in enumerate(self.merges):
            if not all(isinstance(i, int) and 0 <= i < n for i in (a, b, new)):
                raise UserError(f"{where}: merge {rank} {[a, b, new]} has an id outside 0..{n - 1}")
            if self._bytes[new] != self._bytes[a] + self._bytes[b] or (a, b) in self._ranks:
                raise UserError(f"{where}: merge {rank} {[a, b, new]} is inconsistent with the vocabulary")
            self._ranks[a, b] = rank
        self._pattern = gpt2_pattern()
        self._cache = {}
        self._special_res = {}

    @property
    def vocab_size(self):
        return len(self._bytes)

    def token_bytes(self, i):
        """The bytes token i stands for."""
        return self._bytes[i]

    def token_id(self, token):
        """Id of a special token (e.g. "<|endoftext|>")."""
        if token not in self.specials:
            raise UserError(f"{token!r} is not a special token of this tokenizer "
                            f"(it has {list(self.specials)})")
        return self.specials[token]

    # ---- encoding ---------------------------------------------------------------------------------

    def encode(self, text, allowed_special=()):
        """str -> ids. Specials named in allowed_special (or "all") become one id; others are plain text."""
        text = safe_text(text)
        if isinstance(allowed_special, str):
            allowed_special = self.specials if allowed_special == "all" else {allowed_special}
        allowed = set(allowed_special)
        unknown = [s for s in allowed if s not in self.specials]
        if unknown:
            raise UserError(f"encode: {unknown} are not special tokens of this tokenizer")
        if not allowed or not any(s in text for s in allowed):
            return self._encode_ordinary(text)
        ids = []
        parts = self._special_re(frozenset(allowed)).split(text)   # text, special, text, ...
        for k, part in enumerate(parts):
            if k % 2:
                ids.append(self.specials[part])
            elif part:
                ids.extend(self._encode_ordinary(part))
        return ids

    def _special_re(self, allowed):
        if allowed not in self._special_res:
            names = sorted(allowed, key=len, reverse=True)          # longest first: "<|a|>b" before "<|a|>"
            self._special_res[allowed] = re.compile("(" + "|".join(map(re.escape, names)) + ")")
        return self._special_res[allowed]

    def _encode_ordinary(self, text):
        ids, cache, bpe = [], self._cache, self._bpe
        for piece in self._pattern.findall(text):
            word = cache.get(piece)
            if word is None:
                if len(cache) >= self.cache_limit:
                    cache.clear()
                word = cache[piece] = bpe(piece)
            ids.extend(word)
        return ids

    def _bpe(self, piece):
        """One pre-token: its bytes, then repeatedly merge the adjacent pair of lowest rank."""
        byte_ids, ranks, merges = self._byte_ids, self._ranks, self.merges
        ids = [byte_ids[b] for b in piece.encode("utf-8")]
        while len(ids) > 1:
            pair_ranks = [ranks.get(pair, NO_RANK) for pair in zip(ids, ids[1:])]
            rank = min(pair_ranks)
            if rank == NO_RANK:
                break
            ids = merge_pair(ids, *merges[rank])
        return tuple(ids)

    def decode(self, ids):
        """ids -> str; invalid UTF-8 (e.g. a cut multi-byte character) shows as U+FFFD."""
        tokens = self._bytes
        return b"".join([tokens[i] for i in check_ids(ids, len(tokens))]).decode("utf-8", "replace")

    # ---- training ---------------------------------------------------------------------------------

    @classmethod
    def train(cls, text_or_files, vocab_size, specials=(ENDOFTEXT,), progress=True):
        """Learn vocab_size - 256 - len(specials) merges from text (a str), a Path, or a list of paths.

        Files are streamed line by line; specials in the data are split off and never merged.
        """
        specials = check_specials(specials)
        n_merges = vocab_size - 256 - len(specials)
        if n_merges < 0:
            raise UserError(f"vocab_size={vocab_size} is below 256 bytes + {len(specials)} special tokens")
        t0 = time.perf_counter()
        counts = count_pretokens(text_or_files, specials)
        if progress:
            print(f"bpe: {sum(counts.values()):,} pre-tokens ({len(counts):,} distinct) counted in "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        words = [list(w.encode("utf-8")) for w in counts]
        merges = learn_merges(words, list(counts.values()), n_merges, first_id=256, progress=progress)
        tokens = [bytes([b]) for b in range(256)]
        for a, b, _ in merges:
            tokens.append(tokens[a] + tokens[b])
        names = {}
        for name in specials:
            names[name] = len(tokens)
            tokens.append(name.encode("utf-8"))
        return cls(tokens, merges, names)

    # ---- GPT-2's files ----------------------------------------------------------------------------

    @classmethod
    def from_gpt2(cls, encoder_json, vocab_bpe):
        """OpenAI's encoder.json + vocab.bpe (GPT-2's release)."""
        return cls._from_vocab_merges(encoder_json, vocab_bpe)

    @classmethod
    def from_hf(cls, vocab_json, merges_txt):
        """Hugging Face's vocab.json + merges.txt for a GPT-2-style byte-level BPE."""
        return cls._from_vocab_merges(vocab_json, merges_txt)

    @classmethod
    def _from_vocab_merges(cls, vocab_path, merges_path):
        encoder = read_json(vocab_path)
        if not isinstance(encoder, dict) or not all(isinstance(i, int) for i in encoder.values()):
            raise UserError(f"{vocab_path}: expected a JSON object {{token: id}}")
        ids = sorted(encoder.values())
        if ids != list(range(len(ids))):
            raise UserError(f"{vocab_path}: ids must be 0..{len(ids) - 1} with no gaps or repeats")
        pairs = read_merges(merges_path)
        merges, merged = [], set()
        for line, (a, b) in pairs:
            if a not in encoder or b not in encoder or a + b not in encoder:
                raise UserError(f"{merges_path}:{line}: merge {a!r} {b!r} uses a token missing from "
                                f"{vocab_path}")
            merges.append((encoder[a], encoder[b], encoder[a + b]))
            merged.add(a + b)
        tokens, specials = [None] * len(ids), {}
        for s, i in encoder.items():
            if len(s) > 1 and s not in merged:           # neither a byte nor a merge: a special token
                specials[s] = i
                tokens[i] = s.encode("utf-8")
            else:
                tokens[i] = _from_unicode(s, vocab_path)
        return cls(tokens, merges, specials, where=str(vocab_path))

    # ---- JSON ---------------------------------------------------------------------------------------

    def to_dict(self):
        """vocab in GPT-2's printable byte alphabet, merges as [a, b, new] in rank order."""
        return {"type": "bpe", "version": 1, "pretokenizer": "gpt2",
                "vocab": [_to_unicode(t) for t in self._bytes],
                "merges": [list(m) for m in self.merges], "specials": self.specials}

    @classmethod
    def from_dict(cls, d):
        if d.get("type") != "bpe" or d.get("pretokenizer", "gpt2") != "gpt2":
            raise UserError(f"not a gpt2-style bpe tokenizer (type {d.get('type')!r}, "
                            f"pretokenizer {d.get('pretokenizer')!r})")
        specials = d.get("specials", {})
        names = {i: name for name, i in specials.items()}
        tokens = [names[i].encode("utf-8") if i in names else _from_unicode(s, "vocab")
                  for i, s in enumerate(d["vocab"])]
        return cls(tokens, [tuple(m) for m in d["merges"]], specials)


def read_merges(path):
    """(line number, (left, right)) per merge line; the '#version' header and blank lines skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e})") from None
    out = []
    for k, line in enumerate(lines, 1):
        line = line.rstrip("\r")
        if not line or (k == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise UserError(f"{path}:{k}: expected 'left right', got {line!r}")
        out.append((k, tuple(parts)))
    return out


# ---- training internals -------------------------------------------------------------------------------

def count_pretokens(source, specials=()):
    """Counter of GPT-2 pre-tokens over a str, a path, or a list of paths; specials split off, not counted."""
    counts, pattern = Counter(), gpt2_pattern()
    names = sorted(specials, key=len, reverse=True)
    split = re.compile("|".join(map(re.escape, names))) if names else None
    for chunk in _chunks(source):
        for part in split.split(chunk) if split else (chunk,):
            counts.update(pattern.findall(part))
    return counts


def _chunks(source):
    """Yield text pieces whose pre-tokens equal those of the whole text (cut after a non-space)."""
    if isinstance(source, str):
        yield source
        return
    paths = [source] if isinstance(source, PathLike) else list(source)
    for path in paths:
        yield from _file_chunks(path)


def _file_chunks(path):
    # a cut between a non-space and the following whitespace run is a pre-token boundary that no
    # lookahead crosses, so we hold each line's trailing whitespace back and prepend it to the next
    carry = ""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for line in f:
                chunk = carry + line
                head = chunk.rstrip(WHITESPACE)
                if head and len(head) < len(chunk):
                    yield head
                    carry = chunk[len(head):]
                else:
                    carry = chunk                   # all whitespace, or a last line with no newline
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e}); convert it to UTF-8 first") from None
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
    merges, meter = [], _Progress(n_merges) if progress else None
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
            meter.update(len(merges))
    if meter:
        meter.done(len(merges))
    return merges


class _Progress:
    """A one-line stderr meter: merges done, merges/s, ETA."""

    def __init__(self, total, every=0.5):
        self.total, self.every = total, every
        self.t0 = self.last = time.perf_counter()

    def update(self, n, force=False):
        now = time.perf_counter()
        if not force and now - self.last < self.every:
            return
        self.last = now
        rate = n / max(now - self.t0, 1e-9)
        eta = (self.total - n) / rate if rate > 0 else float("inf")
        print(f"\rbpe: {n:,}/{self.total:,} merges  {rate:,.0f} merges/s  ETA {eta:.0f} s  ",
              end="", file=sys.stderr, flush=True)

    def done(self, n):
        self.update(n, force=True)
        print(f"\nbpe: {n:,} merges in {time.perf_counter() - self.t0:.1f} s", file=sys.stderr)
