"""Tokenised corpora: cached on disk as memory-mapped uint16/uint32 arrays, split, and cut into (x, y) windows."""
import hashlib
import io
import json
import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..files import TEMP_SUFFIX, atomic_write, remove_stale_temps, write_text
from ..inputs import open_input, read_json, stat_input
from ..progress import Meter
from .io import DEFAULT_READ_LIMIT, is_stream, read_limit
from .kinds import open_source
from .sources import Continuation

CACHE_FORMAT = 2                          # bump when the cache layout or the tokenising rules change
FLUSH_TOKENS = 1 << 20                    # ids held in a Python list before they go to disk
CHECK_TOKENS = 1 << 22                    # ids per chunk when a cache entry is verified on load
EDGE_BYTES = 1 << 20                      # a source file's identity hashes its first and last MiB


def token_dtype(vocab_size, eot_id=None):
    """uint16 when every id fits in 16 bits (vocab <= 65536), else uint32: half the disk and memory for most vocabs."""
    max_id = max(vocab_size - 1, -1 if eot_id is None else eot_id)
    if max_id >= 1 << 32:
        raise UserError(f"vocab_size {vocab_size} does not fit in uint32 token ids")
    return np.dtype(np.uint16 if max_id < 1 << 16 else np.uint32)


def _sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenizer_hash(tokenizer):
    """sha256 of the tokenizer's to_dict() JSON: two tokenizers that serialise alike tokenise alike."""
    return _sha256(json.dumps(tokenizer.to_dict(), sort_keys=True, ensure_ascii=False))


def _file_hash(path, edge=None):
    """sha256 of a file, or blake2b of its first and last `edge` bytes (cheap, and catches most edits)."""
    h = hashlib.sha256() if edge is None else hashlib.blake2b(digest_size=16)
    try:
        with open_input(path, "text", binary=True, allow_stream=True) as f:
            if edge is None:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
                return h.hexdigest()
            h.update(f.read(edge))
            size = os.fstat(f.fileno()).st_size
            if size > edge:
                f.seek(max(edge, size - edge))
                h.update(f.read(edge))
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e}); check that the file is readable") from None
    return h.hexdigest()


def fingerprint(sources, content_hash=False):
    """What identifies the sources: each file's path, size, mtime_ns, hash of its first and last MiB (+ sha256)."""
    out = []
    for source in sources:
        files = []
        for path in source.files():
            st = Path(path).stat()
            entry = {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                     "edges_blake2b": _file_hash(path, EDGE_BYTES)}
            if content_hash:
                entry["sha256"] = _file_hash(path)
            files.append(entry)
        out.append({"path": str(source.path), "kind": source.kind, "options": source.options, "files": files})
    return out


def _meter(progress):
    """The tokenising meter (MB of text read, MB/s, tokens made) on stderr, or None when progress is off."""
    return Meter("tokenising", unit=" MB", scale=1e-6, digits=1) if progress else None


def _write_tokens(documents, tokenizer, eot_id, dtype, max_id, f, meter, max_tokens=None):
    """Encode documents into f as raw `dtype` ids, eot_id between documents; (n_tokens, n_documents, crc32).
    With max_tokens, reading stops once that many are made (the rest of the text is never read).
    meter (or None) counts the text's bytes, and the tokens made at each flush and at the end."""
    ids, n_tokens, n_docs, crc = [], 0, 0, 0
    for text in documents:
        if max_tokens is not None and n_tokens + len(ids) >= max_tokens:
            break
        if eot_id is not None and n_docs and not isinstance(text, Continuation):
            ids.append(eot_id)
        n_docs += not isinstance(text, Continuation)
        ids.extend(tokenizer.encode(text))
        if meter:
            meter.update(len(text.encode("utf-8")))
        if len(ids) >= FLUSH_TOKENS:
            crc = _flush(ids, dtype, max_id, f, crc)
            n_tokens, ids = n_tokens + len(ids), []
            if meter:
                meter.update(0, note=f"{n_tokens:,} tokens")
    if max_tokens is not None:
        ids = ids[:max(0, max_tokens - n_tokens)]
    crc = _flush(ids, dtype, max_id, f, crc)
    if meter:
        meter.update(0, note=f"{n_tokens + len(ids):,} tokens")
        meter.close()                                       # the last line stays
    return n_tokens + len(ids), n_docs, crc


def _flush(ids, dtype, max_id, f, crc):
    """Append ids to f as dtype, after checking each is in 0..max_id; returns the running crc32 of the bytes."""
    a = np.asarray(ids, dtype=np.int64)
    if a.size and (a.min() < 0 or a.max() > max_id):
        raise ValueError(f"tokenizer produced id {int(a.max()) if a.max() > max_id else int(a.min())} "
                         f"outside 0..{max_id}; its vocab_size is wrong")
    data = a.astype(dtype)
    f.write(data)
    return zlib.crc32(data, crc)


def _scan(tokens):
    """(crc32 of the bytes, largest id) of a token array, read in chunks."""
    crc, top = 0, -1
    for start in range(0, len(tokens), CHECK_TOKENS):
        chunk = np.ascontiguousarray(tokens[start:start + CHECK_TOKENS])
        crc, top = zlib.crc32(chunk, crc), max(top, int(chunk.max()))
    return crc, top


def _open_cached(bin_path, meta_path, max_id):
    """((tokens, meta), "") from a sound cache entry; (None, why) when absent (why "") or damaged."""
    if not meta_path.exists():
        return None, ""
    if not bin_path.exists():
        return None, "its .bin file is missing"
    try:
        meta = read_json(meta_path, "json")
        dtype, n, crc = np.dtype(meta["dtype"]), int(meta["n_tokens"]), int(meta["crc32"])
        size = stat_input(bin_path, "token cache").st_size
    except (UserError, OSError, ValueError, KeyError, TypeError) as e:
        return None, f"its sidecar is unreadable ({type(e).__name__}: {e})"
    if size != n * dtype.itemsize:
        return None, f"it holds {size} bytes, not the {n * dtype.itemsize} its sidecar says"
    tokens = np.memmap(bin_path, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype)
    got_crc, top = _scan(tokens)
    if got_crc != crc:
        return None, "its checksum does not match (the file is corrupt)"
    if top > max_id:
        return None, f"it holds id {top}, outside the vocabulary (ids 0..{max_id})"
    return (tokens, meta), ""


def _remove_dead_temps(cache_dir):
    """Remove the temp files that killed builds left in the cache folder (their process is gone)."""
    names = {p.name[1:].rsplit(".", 3)[0] for p in cache_dir.glob(".tokens-*" + TEMP_SUFFIX)}
    return sum(remove_stale_temps(cache_dir, name) for name in names)


def _no_text(sources):
    where = ", ".join(str(s.path) for s in sources)
    return UserError(f"{where}: no text found (the {'/'.join(s.kind for s in sources)} loader yielded "
                     "no documents); check the file is not empty and that kind= matches its format")


def build_tokens(sources, tokenizer, cache_dir=None, eot_id=None, progress=False, content_hash=False,
                 max_tokens=None):
    """Token ids of all documents of the sources as a read-only memmap, built once and then read from the cache;
    max_tokens: only the first that many, read no further than they need (in memory, uncached)."""
    # an entry is checked on load (size, crc32, ids within the vocabulary) and rebuilt when damaged; a pipe
    # is read once and has no identity to key a cache on, so its tokens are built in memory, uncached
    cache_dir = Path(cache_dir) if cache_dir is not None else Path.cwd() / ".cache" / "glassformer"
    tok_hash, dtype = tokenizer_hash(tokenizer), token_dtype(tokenizer.vocab_size, eot_id)
    max_id = max(tokenizer.vocab_size - 1, -1 if eot_id is None else eot_id)
    documents = (doc for source in sources for doc in source)
    info = {"format": CACHE_FORMAT, "dtype": dtype.name, "eot_id": eot_id, "vocab_size": tokenizer.vocab_size,
            "tokenizer_sha256": tok_hash}
    if max_tokens is not None or any(is_stream(path) for source in sources for path in source.files()):
        buffer = io.BytesIO()
        try:
            n_tokens, n_docs, crc = _write_tokens(documents, tokenizer, eot_id, dtype, max_id, buffer,
                                                  _meter(progress), max_tokens)
        finally:
            documents.close()             # a pipe left unread is closed now, not at exit
        if n_tokens == 0:
            raise _no_text(sources)
        meta = dict(info, n_tokens=n_tokens, n_documents=n_docs, crc32=crc, sources=None, cached=False)
        return np.frombuffer(buffer.getbuffer(), dtype), dict(meta, cache_hit=False)
    prints = fingerprint(sources, content_hash)
    key = {"format": CACHE_FORMAT, "sources": prints, "tokenizer": tok_hash, "eot_id": eot_id}
    if read_limit() != DEFAULT_READ_LIMIT:                  # another budget may read another text
        key["read_limit"] = read_limit()
    name = "tokens-" + _sha256(json.dumps(key, sort_keys=True))[:20]
    bin_path, meta_path = cache_dir / (name + ".bin"), cache_dir / (name + ".json")
    cached, why = _open_cached(bin_path, meta_path, max_id)
    if cached is not None:
        return cached[0], dict(cached[1], cache_hit=True)
    if why:
        print(f"token cache {bin_path}: {why}; rebuilding it", file=sys.stderr)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{cache_dir}: cannot create the token cache folder ({e.strerror}); "
                        "pass cache_dir= a writable folder") from None
    _remove_dead_temps(cache_dir)
    try:
        with atomic_write(bin_path, "wb") as f:             # an error (no text) leaves no file behind
            n_tokens, n_docs, crc = _write_tokens(documents, tokenizer, eot_id, dtype, max_id, f,
                                                  _meter(progress))
            if n_tokens == 0:
                raise _no_text(sources)
        meta = dict(info, n_tokens=n_tokens, n_documents=n_docs, crc32=crc, sources=prints)
        write_text(meta_path, json.dumps(meta, indent=1))   # the sidecar, written last, marks the entry complete
    except OSError as e:                                    # the loaders' read errors are UserErrors already
        raise UserError(f"{cache_dir}: cannot write the token cache ({e.strerror or e}); free some disk space "
                        "or pass cache_dir= a writable folder") from None
    tokens = np.memmap(bin_path, dtype=dtype, mode="r", shape=(n_tokens,))
    return tokens, dict(meta, cache_hit=False)


VAL_FRACTION = 0.1                      # --task lm validates on the last 10% of --data (evaluate --split val)


def split_tokens(tokens, val_fraction):
    """(train, val) views: the last val_fraction of the tokens is validation (a cut at one token boundary)."""
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction={val_fraction} must be in [0, 1), e.g. 0.1 for the last 10% of tokens")
    n_val = int(round(len(tokens) * val_fraction))
    return tokens[:len(tokens) - n_val], tokens[len(tokens) - n_val:]


@dataclass
class Corpus:
    """Train and validation token arrays (memory-mapped, read-only) and what they were built from."""
    train: np.ndarray
    val: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def vocab_size(self):
        return self.meta["vocab_size"]


def _sources(path, kind, options):
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [open_source(p, kind, **options) for p in paths]


def load_corpus(path, tokenizer, kind="auto", val_fraction=VAL_FRACTION, cache_dir=None, eot_id=None, val_path=None,
                progress=False, content_hash=False, **options):
    """Tokenised corpus from path(s): val is the last val_fraction of tokens, or all of val_path when given."""
    tokens, meta = build_tokens(_sources(path, kind, options), tokenizer, cache_dir, eot_id, progress, content_hash)
    if val_path is None:
        train, val = split_tokens(tokens, val_fraction)
    else:
        train = tokens
        val, val_meta = build_tokens(_sources(val_path, kind, options), tokenizer, cache_dir, eot_id, progress,
                                     content_hash)
        meta = dict(meta, val_sources=val_meta["sources"], val_cache_hit=val_meta["cache_hit"])
    return Corpus(train, val, dict(meta, val_fraction=None if val_path else val_fraction,
                                   n_train=len(train), n_val=len(val)))


def _check_length(tokens, context):
    if len(tokens) < context + 1:
        raise UserError(f"a split of {len(tokens)} tokens is shorter than context+1 = {context + 1}: use a smaller "
                        "context, more text, or a larger val_fraction for the validation split")


def _windows(tokens, starts, context):
    """(x, y) of shape (B, T) int64: the windows tokens[s : s+T] for s in starts, and y shifted left by one."""
    chunk = np.asarray(tokens)[starts[:, None] + np.arange(context + 1)]     # (B, T+1), reads only these
    chunk = chunk.astype(np.int64)
    return np.ascontiguousarray(chunk[:, :-1]), np.ascontiguousarray(chunk[:, 1:])


def random_windows(tokens, batch_size, context, rng=None):
    """(x, y) of shape (B, T) int64 from B random contiguous windows; y is x shifted left by one token."""
    _check_length(tokens, context)
    rng = np.random.default_rng(rng)      # a Generator passes through; an int seeds one
    starts = rng.integers(0, len(tokens) - context, size=batch_size)        # (B,)
    return _windows(tokens, starts, context)


def sequential_windows(tokens, batch_size, context):
    """(x, y) batches of consecutive non-overlapping windows covering the tokens once (a full validation pass).

    The last batch may be smaller; the final (len - 1) % context tokens, fewer than one window, are not scored.
    """
    _check_length(tokens, context)
    n_windows = (len(tokens) - 1) // context
    for first in range(0, n_windows, batch_size):
        starts = np.arange(first, min(first + batch_size, n_windows)) * context   # (B,)
        yield _windows(tokens, starts, context)


def lm_batches(tokens, batch_size, context):
    """A batches(rng) -> (x, y) function: batch_size random windows of context tokens, y = x shifted."""
    if len(tokens) < context + 1:
        raise UserError(f"a split of {len(tokens)} tokens is shorter than context+1 = {context + 1}: "
                        "use a smaller --context or more text")

    def batches(rng):
        return random_windows(tokens, batch_size, context, rng)
    return batches
