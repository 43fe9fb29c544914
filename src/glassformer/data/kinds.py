"""The dispatcher: which kind of text a path holds (detect_kind) and the Source that reads it with its loader."""
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from . import sources, wikipedia
from .io import Peeked, is_stream, must_exist, read_head
from .sources import EOT_TEXT, WIKITEXT_HEADING, txt_files

KINDS = ("txt", "wikitext", "wikipedia", "jsonl", "stories")
XML_STARTS = (b"<?xml", b"<mediawiki")   # an XML declaration or a dump's root; `<unk>` or `<|endoftext|>` are text


def detect_kind(path):
    """Guess a loader: folder -> txt, .xml(.bz2) or an XML start -> wikipedia, .jsonl -> jsonl, else sniff the text."""
    # path may be a Peeked pipe (open_source makes one): its kept first bytes are sniffed
    if isinstance(path, Peeked):
        name = path.path.name
    else:
        path = Path(path)
        must_exist(path)
        if path.is_dir():
            return "txt"
        if is_stream(path):
            raise UserError(f"{path}: is a pipe, and sniffing it would consume its first bytes; use "
                            "open_source(path), which keeps them, or name the kind (e.g. kind='txt')")
        name = path.name
    name = name.lower().removesuffix(".bz2").removesuffix(".gz")
    if name.endswith(".xml"):
        return "wikipedia"
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith((".tokens", ".raw")):
        return "wikitext"
    head = read_head(path)
    if head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(XML_STARTS):
        return "wikipedia"                # e.g. the dump parts named ...xml-p10p30302.bz2
    text = head.decode("utf-8", errors="replace")
    if EOT_TEXT in text:
        return "stories"
    if any(WIKITEXT_HEADING.match(line) for line in text.splitlines()[:50]):
        return "wikitext"
    return "txt"


@dataclass
class Source:
    """A text source: a path, the loader kind that reads it, and the loader's options; iterate for documents."""
    path: Path
    kind: str
    options: dict = field(default_factory=dict)
    stream: Peeked = None                 # a pipe whose first bytes were sniffed: read from it, not the path

    def __iter__(self):
        # looked up on each call: a loader replaced on its module (as the tests do) is the one used
        loaders = {"txt": sources.read_txt, "wikitext": sources.read_wikitext, "jsonl": sources.read_jsonl,
                   "stories": sources.read_stories, "wikipedia": wikipedia.read_wikipedia}
        return loaders[self.kind](self.path if self.stream is None else self.stream, **self.options)

    def files(self):
        """The files this source reads (several for a folder)."""
        return txt_files(self.path) if self.kind == "txt" else [self.path]


SPLITS = {"train": ("train",), "valid": ("valid", "validation", "val"), "test": ("test",)}
SPLIT_SUFFIXES = (".txt", ".tokens", ".raw")


def split_files(folder):
    """{"train", "valid", "test"} -> the files of a folder that holds its own splits (WikiText's
    train/valid/test .txt, wiki.train.tokens, ...; test may be None), or None when it holds no such pair."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = {}
    for path in sorted(p for p in folder.iterdir() if not p.is_dir() and p.suffix.lower() in SPLIT_SUFFIXES):
        stem = path.name.lower().removeprefix("wiki.").split(".")[0]
        split = next((s for s, names in SPLITS.items() if stem in names), None)
        if split is not None:
            if split in found:
                raise UserError(f"{folder}: two {split} files ({found[split].name}, {path.name}): keep one, "
                                "or name the files with --data/--val-data/--test-data")
            found[split] = path
    if "train" not in found or "valid" not in found:
        return None
    return {"train": found["train"], "valid": found["valid"], "test": found.get("test")}


def open_source(path, kind="auto", **options):
    """A Source for path; kind "auto" guesses from the name and first bytes (see detect_kind)."""
    # a pipe (`<(zcat x.gz)`, /dev/stdin) is opened here, once: the bytes sniffed are kept for the loader
    path = Path(path)
    if kind not in ("auto", *KINDS):
        raise UserError(f"unknown source kind {kind!r}: use one of auto, {', '.join(KINDS)}")
    must_exist(path)
    stream = Peeked(path) if kind == "auto" and is_stream(path) else None
    if kind == "auto":
        kind = detect_kind(path if stream is None else stream)
    if path.is_dir() and kind != "txt":
        raise UserError(f"{path}: is a folder; only kind='txt' reads folders (of .txt files)")
    return Source(path, kind, options, stream)
