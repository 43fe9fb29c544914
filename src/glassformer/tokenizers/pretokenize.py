"""GPT-2's pre-tokenizer: the regex that cuts text into words, numbers, punctuation and spaces."""
import functools
import re
import unicodedata

GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# \s in GPT2_SPLIT is Unicode White_Space; Python's \s also matches \x1c-\x1f, so we spell it out
WHITESPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
              + "\u2028\u2029\u202f\u205f\u3000")


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
