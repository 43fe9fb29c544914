"""The public data sets, one command away: each downloaded once into a cache
and checked against its pinned SHA-256.

  python -m glassformer.data fetch tinyshakespeare  (wikitext-2, gpt2-tokenizer,
  python -m glassformer.data fetch all               wikipedia-sample)
  python -m glassformer.data fetch --list

The cache is $GLASSFORMER_DATA (default ~/.cache/glassformer), laid out as
NAME/FILE; `--data NAME` and `--tokenizer gpt2` read from it. Each file comes
from its canonical address (its source repository at a fixed commit, or
OpenAI's own copy of GPT-2's files); with GLASSFORMER_DATA_MIRROR=URL set, from
URL/NAME/FILE instead (a mirror laid out as the cache). A file whose SHA-256 is
not the pinned one is never kept, and a download is written atomically:
Ctrl-C leaves no partial file.
"""
import hashlib
import http.client
import os
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..files import atomic_path
from ..progress import Meter

HOME_ENV, MIRROR_ENV = "GLASSFORMER_DATA", "GLASSFORMER_DATA_MIRROR"
DEFAULT_HOME = "~/.cache/glassformer"
TIMEOUT_S = 30                                              # per connection attempt and per read
CHUNK = 1 << 16                                             # bytes per read


@dataclass(frozen=True)
class Remote:
    """One file of a data set: where it goes in the cache (name/file), where it comes from, what it is."""
    name: str
    file: str
    url: str
    sha256: str
    bytes: int


GITHUB = "https://raw.githubusercontent.com"
CHAR_RNN = f"{GITHUB}/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare"
WIKITEXT = (f"{GITHUB}/pytorch/examples/77f55b912142e11fcfdf5b530231fb9c52f181e8/word_language_model/"
            "data/wikitext-2")
OPENAI = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main"   # as tiktoken fetches them
GENSIM = f"{GITHUB}/piskvorky/gensim/37f90ec121eb7cd401448a947e80953e0c53ccdc/gensim/test/test_data"
WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
# (name, file, url, sha256, bytes): the same files and sums as shared/data/README.md lists
FILES = (
    Remote("tinyshakespeare", "input.txt", f"{CHAR_RNN}/input.txt",
           "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 1_115_394),
    Remote("wikitext-2", "train.txt", f"{WIKITEXT}/train.txt",
           "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f", 10_797_148),
    Remote("wikitext-2", "valid.txt", f"{WIKITEXT}/valid.txt",
           "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8", 1_121_681),
    Remote("wikitext-2", "test.txt", f"{WIKITEXT}/test.txt",
           "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0", 1_256_449),
    Remote("gpt2-tokenizer", "encoder.json", f"{OPENAI}/encoder.json",
           "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783", 1_042_301),
    Remote("gpt2-tokenizer", "vocab.bpe", f"{OPENAI}/vocab.bpe",
           "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5", 456_318),
    Remote("wikipedia-sample", WIKI_DUMP, f"{GENSIM}/{WIKI_DUMP}",
           "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d", 1_695_871),
)
NAMES = tuple(dict.fromkeys(r.name for r in FILES))        # in table order
# what `--data NAME` stands for: one file of the set, or ("") its folder (WikiText: its three splits)
DATA_TARGETS = {"tinyshakespeare": "input.txt", "wikitext-2": "", "wikipedia-sample": WIKI_DUMP}
NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError,
                  http.client.HTTPException)


# ---- the cache ------------------------------------------------------------------------------------

def data_home():
    """The cache folder: $GLASSFORMER_DATA, else ~/.cache/glassformer."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def files_of(name):
    """The Remote rows of data set `name`."""
    return [r for r in FILES if r.name == name]


def fetch_command(name):
    """The command that fetches `name`, as error messages quote it."""
    return f"python -m glassformer.data fetch {name}"


def is_fetched(name, home=None):
    """True when every file of `name` is in the cache (present; fetch checks the sums)."""
    home = data_home() if home is None else home
    return all((home / r.name / r.file).is_file() for r in files_of(name))


def resolve_dataset(value, flag="--data"):
    """A data set's name (tinyshakespeare, wikitext-2, wikipedia-sample) as its path in the cache; any other
    value, or a name that is also an existing path (the path wins), as it is; UserError when not fetched."""
    if value is None or str(value) not in DATA_TARGETS or Path(value).exists():
        return value
    name = str(value)
    if not is_fetched(name):
        raise UserError(f"{flag} {name}: the data set is not in the cache {data_home() / name}: fetch it "
                        f"with `{fetch_command(name)}` (or set {HOME_ENV} to the folder that holds {name}/)")
    return data_home() / name / DATA_TARGETS[name] if DATA_TARGETS[name] else data_home() / name


def gpt2_folder():
    """Where the cache keeps GPT-2's encoder.json and vocab.bpe."""
    return data_home() / "gpt2-tokenizer"


# ---- downloading ----------------------------------------------------------------------------------

def url_of(remote):
    """The address a file is fetched from: $GLASSFORMER_DATA_MIRROR/name/file, else its canonical url."""
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{remote.name}/{remote.file}" if mirror else remote.url


def sha256_of(path):
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_checked(response, tmp, remote, url, stream):
    """Write the response's body to tmp with a progress meter; UserError when its length or SHA-256 is wrong."""
    digest, got = hashlib.sha256(), 0
    meter = Meter(f"{remote.name}/{remote.file}", total=remote.bytes, unit=" MB", stream=stream, scale=1e-6,
                  digits=1)
    with open(tmp, "wb") as f:
        while block := response.read(CHUNK):
            got += len(block)
            if got > remote.bytes:
                break                                       # not the file: stop reading
            f.write(block)
            digest.update(block)
            meter.update(len(block))
    meter.close()
    if got != remote.bytes:
        how = "is longer than" if got > remote.bytes else f"stopped after {got:,} of"
        raise UserError(f"{url}: the download {how} the expected {remote.bytes:,} bytes, so nothing was "
                        f"kept: run the command again, or download it by hand from {remote.url}")
    if digest.hexdigest() != remote.sha256:
        raise UserError(f"{url}: the download's SHA-256 is {digest.hexdigest()}, not the pinned "
                        f"{remote.sha256}: it is not the expected file, so nothing was kept")


def download(remote, dest, stream):
    """Fetch one file to dest atomically (a failure or Ctrl-C leaves nothing); one UserError line when the
    network fails, naming the address to fetch by hand and where to put the file."""
    url = url_of(remote)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, atomic_path(dest) as tmp:
            copy_checked(response, tmp, remote, url, stream)
    except urllib.error.HTTPError as e:
        raise UserError(f"{url}: HTTP {e.code} {e.reason}: {by_hand(remote, url, dest)}") from None
    except NETWORK_ERRORS as e:
        reason = getattr(e, "reason", None) or e
        raise UserError(f"cannot download {url} ({reason}): offline? {by_hand(remote, url, dest)}, "
                        "then run the command again") from None


def by_hand(remote, url, dest):
    """What to do when the download fails: the address to fetch by hand, and where to put the file."""
    where = "it" if url == remote.url else remote.url
    return f"download {where} by hand and put it at {dest}"


def fetch(name, home=None, stream=None):
    """Fetch every file of data set `name` into the cache, skipping those already there with the right
    SHA-256; returns how many were downloaded."""
    home, stream = data_home() if home is None else home, sys.stderr if stream is None else stream
    fetched = 0
    for remote in files_of(name):
        dest = home / remote.name / remote.file
        if dest.is_file() and sha256_of(dest) == remote.sha256:
            print(f"{dest}: already here, SHA-256 checked", file=stream)
            continue
        if dest.exists():
            print(f"{dest}: its SHA-256 is not the pinned one: fetching it again", file=stream)
        download(remote, dest, stream)
        print(f"{dest}: {remote.bytes:,} bytes fetched, SHA-256 checked", file=stream)
        fetched += 1
    return fetched
