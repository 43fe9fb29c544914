"""ByteLevelBPE: GPT-2's byte-level BPE (Sennrich et al. 2016; Radford et al. 2019), trained here or loaded.

Text -> GPT-2 pre-tokens (regex) -> UTF-8 bytes -> merges applied by rank. Any str round-trips exactly,
except lone surrogates ("\\ud800"), which UTF-8 cannot hold: encode() replaces them with U+FFFD.
"""
import functools
import re
import sys
import time
from heapq import heapify, heappop, heappush

from ..errors import UserError
from .base import Tokenizer, check_ids, check_specials, read_json, read_text
from .bpe_train import count_pretokens, learn_merges, require_text
from .pretokenize import gpt2_pattern

ENDOFTEXT = "<|endoftext|>"


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
    cache_piece_chars = 64                          # only pre-tokens this short are cached

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
        ids, cache, bpe, short = [], self._cache, self._bpe, self.cache_piece_chars
        for piece in self._pattern.findall(text):
            word = cache.get(piece)
            if word is None:
                word = bpe(piece)
                if len(piece) <= short:             # long pieces rarely repeat: not worth the memory
                    if len(cache) >= self.cache_limit:
                        cache.clear()
                    cache[piece] = word
            ids.extend(word)
        return ids

    def _bpe(self, piece):
        """One pre-token: its bytes, then every place of the lowest-rank pair merged, repeatedly; O(n log n)."""
        # the symbols form a linked list (nxt/prv by position); a heap holds (rank, position) of each
        # mergeable pair, stale entries skipped when popped. Pairs a merge creates wait in `pending` until
        # every place of the current rank is merged: exactly the result of rescanning after each merge
        byte_ids, ranks, merges = self._byte_ids, self._ranks, self.merges
        ids = [byte_ids[b] for b in piece.encode("utf-8")]              # ids[i] = None once merged away
        n = len(ids)
        heap = [(r, i) for i, pair in enumerate(zip(ids, ids[1:])) if (r := ranks.get(pair)) is not None]
        if not heap:
            return tuple(ids)
        heapify(heap)
        nxt, prv, pending = list(range(1, n + 1)), list(range(-1, n - 1)), []
        while heap:
            rank, i = heappop(heap)
            j = nxt[i]
            if j < n and ranks.get((ids[i], ids[j])) == rank:         # still this pair: merge j into i
                new = ids[i] = merges[rank][2]
                ids[j], k = None, nxt[j]
                nxt[i] = k
                if k < n:
                    prv[k] = i
                    if (r := ranks.get((new, ids[k]))) is not None:
                        pending.append((r, i))
                if (p := prv[i]) >= 0 and (r := ranks.get((ids[p], new))) is not None:
                    pending.append((r, p))
            if pending and (not heap or heap[0][0] != rank):           # this rank is done everywhere
                for entry in pending:
                    heappush(heap, entry)
                pending = []
        return tuple(i for i in ids if i is not None)

    def decode(self, ids):
        """ids -> str; invalid UTF-8 (e.g. a cut multi-byte character) shows as U+FFFD."""
        tokens = self._bytes
        return b"".join([tokens[i] for i in check_ids(ids, len(tokens))]).decode("utf-8", "replace")

    # ---- training ---------------------------------------------------------------------------------

    @classmethod
    def train(cls, text_or_files, vocab_size, specials=(ENDOFTEXT,), progress=True):
        """Learn vocab_size - 256 - len(specials) merges from text (a str), a Path, or an iterable of either.

        A str is always text: one naming a file, or shaped like a path, is a UserError (pass Path(...)).
        Files are streamed line by line; specials in the data are split off and never merged.
        """
        specials = check_specials(specials)
        n_merges = vocab_size - 256 - len(specials)
        if n_merges < 0:
            raise UserError(f"vocab_size={vocab_size} is below 256 bytes + {len(specials)} special tokens")
        t0 = time.perf_counter()
        counts = count_pretokens(text_or_files, specials, progress)
        if progress:
            print(f"bpe: {sum(counts.values()):,} pre-tokens ({len(counts):,} distinct) counted in "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        require_text(counts)
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
    lines, out = read_text(path).split("\n"), []
    for k, line in enumerate(lines, 1):
        line = line.rstrip("\r")
        if not line or (k == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise UserError(f"{path}:{k}: expected 'left right', got {line!r}")
        out.append((k, tuple(parts)))
    return out
