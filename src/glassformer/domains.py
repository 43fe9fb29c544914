"""Every number a user can set has one domain, declared once beside its flag, `set` name or API argument.

A Domain is a whole-number or real interval with a stated maximum (e.g. steps 1..10**9). It parses
text the same way wherever the text comes from (a typed flag, a config file, the REPL's `set`):
ASCII digits only ("٣", "0x10", "1_000" and "3.5" for a whole number are refused), finite values
only, and never past the maximum, so a value that passes can be used without overflow or an endless
loop. `Domain.check` applies the same rule to a number a library caller passes. The memory check
compares an estimate with what this machine has free before anything is allocated.
"""
import argparse
import math
import os
import re

from .errors import UserError

WHOLE = re.compile(r"[+-]?[0-9]+\Z")
REAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")
TINY = 2.2250738585072014e-308                              # the smallest normal float64
LONGEST_TEXT = 40                                           # characters: far past every maximum


class DomainError(UserError, ValueError):
    """A number outside its domain: a UserError for the CLIs, a ValueError for library callers."""


def shown(value):
    """A bound as --help shows it: 1,000,000,000 rather than 1e9; other reals as %g (0.0001, 1e-12)."""
    if isinstance(value, int) or (value.is_integer() and abs(value) >= 1e4):
        return f"{value:,.0f}"
    return f"{value:g}"


class Domain:
    """A number's domain: whole or real, from low to high (both stated), plus `also` (e.g. 0 = off).

    Used as an argparse type it parses text (ArgumentTypeError names the domain); check(value, name)
    is the same rule for a number already parsed (DomainError).
    """

    def __init__(self, kind, low, high, *, also=(), low_open=False, high_open=False, meaning=""):
        assert kind in (int, float) and low <= high
        self.kind, self.low, self.high, self.also = kind, low, high, tuple(also)
        self.low_open, self.high_open, self.meaning = low_open, high_open, meaning
        self.__name__ = "whole number" if kind is int else "number"   # argparse's word for the type

    @property
    def domain_text(self):
        """What errors.Parser appends to the flag's --help: the domain in words."""
        return self.text

    @property
    def text(self):
        """The domain in words, for --help and for errors: 'a whole number from 1 to 1,000,000,000'."""
        if self.kind is int:
            what = f"a whole number from {shown(self.low)} to {shown(self.high)}"
        else:
            what = f"a number in {'(' if self.low_open else '['}{shown(self.low)}, {shown(self.high)}" \
                f"{')' if self.high_open else ']'}"
        extra = "".join(f" or {shown(a)}" for a in self.also)
        return what + extra + (f" ({self.meaning})" if self.meaning else "")

    def inside(self, value):
        """True when the number (already a Python int or float) is in the domain."""
        if value in self.also:
            return True
        if isinstance(value, float) and not (math.isfinite(value) and (value == 0 or abs(value) >= TINY)):
            return False                                    # inf, nan, and subnormals (5e-324, 1e-310)
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def parse_text(self, text):
        """The number that `text` spells, or ValueError saying why it is not one in the domain."""
        text = str(text).strip()
        if self.kind is int:
            if not WHOLE.match(text):
                raise ValueError(f"{text!r} is not {self.text} (digits 0-9 only)")
        elif not REAL.match(text):
            word = text.lower().lstrip("+-")
            why = "it is not finite" if word in ("inf", "infinity", "nan") else "digits 0-9, '.', 'e' only"
            raise ValueError(f"{text!r} is not {self.text} ({why})")
        if len(text) > LONGEST_TEXT:
            raise ValueError(f"{text[:12]}... ({len(text)} characters) is not {self.text}")
        value = self.kind(text)
        if self.kind is float and value == 0 and re.search(r"[1-9]", text.split("e")[0].split("E")[0]):
            raise ValueError(f"{text} is too small to be a number here: give {self.text}")
        if not self.inside(value):
            raise ValueError(f"{text} is not {self.text}")
        return value

    def __call__(self, text):
        """argparse's type: the parsed number, or ArgumentTypeError with one clear sentence."""
        try:
            return self.parse_text(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    def read(self, text, name):
        """The number `text` spells, as setting `name`; DomainError (one line) when it is outside."""
        try:
            return self.parse_text(text)
        except ValueError:
            text = str(text).strip()
            raise DomainError(f"{name}={text}: {name} must be {self.text}, not {text!r}") from None

    def check(self, value, name):
        """`value` itself when it is a number in the domain; DomainError naming `name` otherwise."""
        whole = isinstance(value, int) and not isinstance(value, bool)
        number = whole or (self.kind is float and isinstance(value, float))
        if not number and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
            return self.check(value.item(), name)           # a NumPy scalar
        if not number or not self.inside(value):
            raise DomainError(f"{name}={value!r} must be {self.text}")
        return self.kind(value)


SEED = Domain(int, 0, 2**32 - 1)                            # every seed: NumPy takes any, a run records 32 bits
LEARNING_RATE = Domain(float, 1e-12, 10.0)                   # every learning rate
FRACTION = Domain(float, 0.0, 1.0, high_open=True)          # dropout, Adam's betas, a share: [0, 1)
THREADS = Domain(int, 1, 4096)                              # --threads: CPU threads, BLAS and the pool


# ---- the machine: memory ----------------------------------------------------------------------

def available_memory():
    """Bytes this machine can give now: MemAvailable of /proc/meminfo, else physical memory; None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_memory(estimate, what, lower, available=None):
    """UserError when `estimate` bytes exceed the memory free now; `lower` says which flags to lower."""
    available = available_memory() if available is None else available
    if available is not None and estimate > available:
        raise UserError(f"{what} needs about {estimate / 2**30:,.1f} GiB, more than the "
                        f"{available / 2**30:,.1f} GiB this machine has free: lower {lower}")
