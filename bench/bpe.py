"""Benchmark: train an 8,192-token byte-level BPE on WikiText-2 train, encode valid; print one JSON line.

Encoding speeds are cold (a fresh per-word cache): our tokenizer and GPT-2's (when its files exist).
"""
import argparse
import json
import time
from pathlib import Path

from glassformer.tokenizers import ByteLevelBPE

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def encode_speed(tok, text):
    """(MB/s, ids) for one encode of text."""
    start = time.perf_counter()
    ids = tok.encode(text)
    return len(text.encode("utf-8")) / 1e6 / (time.perf_counter() - start), ids


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    train, valid = args.data / "wikitext-2" / "train.txt", args.data / "wikitext-2" / "valid.txt"
    if not train.exists() or not valid.exists():
        print(json.dumps({"error": f"WikiText-2 not found under {args.data / 'wikitext-2'}"}))
        return 1
    start = time.perf_counter()
    tok = ByteLevelBPE.train(train, args.vocab_size, progress=False)
    train_seconds = time.perf_counter() - start
    text = valid.read_text(encoding="utf-8")
    mb_per_s, ids = encode_speed(tok, text)
    result = {"train_seconds": round(train_seconds, 2), "vocab_size": tok.vocab_size,
              "encode_mb_per_s": round(mb_per_s, 2), "gpt2_encode_mb_per_s": None,
              "roundtrip_ok": tok.decode(ids) == text, "valid_tokens": len(ids)}
    gpt2 = args.data / "gpt2-tokenizer"
    if (gpt2 / "encoder.json").exists() and (gpt2 / "vocab.bpe").exists():
        ref = ByteLevelBPE.from_gpt2(gpt2 / "encoder.json", gpt2 / "vocab.bpe")
        mb_per_s, ids = encode_speed(ref, text)
        result["gpt2_encode_mb_per_s"] = round(mb_per_s, 2)
        result["gpt2_valid_tokens"] = len(ids)
        result["roundtrip_ok"] = result["roundtrip_ok"] and ref.decode(ids) == text
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
