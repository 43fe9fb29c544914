"""Hostile streams, generated: endless pipes into every reading command, .bz2 with trailing garbage, cut
short, in several streams or of a bomb's ratio, pathological Wikipedia markup, huge single lines in each
format and reading budgets. Each case is judged (hostile.judge): a command stops reading once it has what
it needs, within its budget and a bounded memory, or refuses with one error line; the cleaner is linear.
"""
import bz2
import contextlib
import gzip
import io
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from hostile import early, judge
from test_fuzz import Hang, deadline          # one deadline for every fuzz suite

from glassformer import evaluate
from glassformer.cli import evaluate as evaluate_cli
from glassformer.data.wikipedia import clean_wikitext

ROOT = Path(__file__).resolve().parents[2]
SRC = Path(evaluate.__file__).resolve().parents[1]     # the package this run imports: children run it too
CKPT = ROOT / "checkpoints" / "shakespeare_char.npz"
MEMORY_CAP = 2 << 30                      # RLIMIT_AS of every subprocess: a runaway read dies, not the machine
RSS_BOUND_MB = 600                        # the peak RSS a huge input may cost a command (stated bound)
TEXT = "the king and the queen are here. what say you, my lord?\n"





def run_in_process(argv, env=None, seconds=20):
    """(exit code, stderr, hung) of evaluate_cli.main(argv) with env set: a case in milliseconds, not a
    process; past `seconds` it is stopped and called hung."""
    err, old = io.StringIO(), {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    rc, hung = -1, False
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), deadline(seconds):
            rc = evaluate_cli.main(argv)
    except Hang:
        hung = True
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return rc, err.getvalue(), hung


def timed_clean(text, seconds):
    """CPU seconds clean_wikitext(text) took (this thread's: other processes on a shared machine do not count,
    the cleaner's own work does); inf when it ran past `seconds` of wall time (stopped there)."""
    t = time.thread_time()
    try:
        with deadline(seconds):
            clean_wikitext(text)
    except Hang:
        return float("inf")
    return time.thread_time() - t


# A small launcher forks the command and writes its peak RSS (KiB) to a file. The peak is measured
# there, not by our own os.wait4, because Linux carries the parent's high-water RSS into a child
# spawned from it through exec: from this test process (hundreds of MB after a long session of
# tests) every child would look as big as pytest itself.
LAUNCHER = """import os, signal, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
if os.WIFSIGNALED(status):
    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(os.getpid(), os.WTERMSIG(status))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_process(args, feed=None, env=None, timeout=30):
    """(rc, stderr, hung, peak RSS in MB, seconds) of `python args` (stdin fed by the shell command `feed`),
    under RLIMIT_AS (bash's ulimit: no preexec_fn, so the pool's threads may start it); the peak is this
    command's own, measured by LAUNCHER (0 when it was killed at the deadline before saying)."""
    env = dict(os.environ, PYTHONPATH=str(SRC), **(env or {}))
    fd, peak_file = tempfile.mkstemp(prefix="glassformer-peak-")
    os.close(fd)
    cmd = " ".join([f"exec {sys.executable} -c {_quote(LAUNCHER)} {_quote(peak_file)} {sys.executable}",
                    *map(_quote, args)])
    if feed:
        cmd = f"{feed} | {cmd}"
    start = time.monotonic()
    proc = subprocess.Popen(["bash", "-c", f"ulimit -v {MEMORY_CAP >> 10} && {cmd}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    err = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    status, _, hung = wait_for(proc.pid, start + timeout)
    seconds = time.monotonic() - start
    reader.join(10)
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = (err[0] if err else b"").decode("utf-8", "replace")
    peak = Path(peak_file).read_text()
    os.unlink(peak_file)
    return proc.returncode, stderr, hung, int(peak or 0) / 1024, seconds


def wait_for(pid, deadline):
    """(wait status, rusage, hung) of child pid, its process group killed at the deadline."""
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage, False
        if time.monotonic() > deadline:
            os.killpg(pid, 9)
            _, status, usage = os.wait4(pid, 0)
            return status, usage, True
        time.sleep(0.02)


def _quote(text):
    return "'" + str(text).replace("'", "'\\''") + "'"


def evaluate_args(data, *more):
    return ["-m", "glassformer.evaluate", str(CKPT), "--data", str(data), *more]


# ---- endless pipes into each reading command -------------------------------------------------------

ENDLESS = {"yes": "yes", "long lines": "yes \"$(head -c 3000 /dev/zero | tr '\\0' a)\"",
           "no newline": "cat /dev/zero | tr '\\0' b", "text": f"yes '{TEXT.strip()}'"}


MAX_TOKENS = [1, 50, 3000]
OTHER_COMMANDS = {"train": ["train_step_by_step.py", "--task", "lm", "--data", "/dev/stdin", "--steps", "1"],
                  "prompt file": ["test_model_manually.py", "--checkpoint", str(CKPT), "--prompt-file", "/dev/stdin"],
                  "prompt stdin": ["test_model_manually.py", "--checkpoint", str(CKPT), "--prompt-file", "-"]}
NO_WRITER = ["named fifo", "/dev/zero", "/dev/urandom"]


def pipe_jobs(tmp_path_factory):
    """Every endless-pipe and no-writer case below, each a process with its own timeout."""
    fifo = tmp_path_factory.mktemp("fifo") / "fifo"
    os.mkfifo(fifo)
    jobs = {("max tokens", p, n): (evaluate_args("/dev/stdin", "--max-tokens", n), ENDLESS[p], None, 15)
            for p in ENDLESS for n in MAX_TOKENS}
    jobs.update({("budget", p): (evaluate_args("/dev/stdin", "--stride", "64"), ENDLESS[p],
                                 {"GLASSFORMER_READ_LIMIT": "3k"}, 30) for p in ("yes", "text")})
    jobs.update({("other", name): ([str(ROOT / c[0]), *c[1:]], "yes", None, 30)
                 for name, c in OTHER_COMMANDS.items()})
    jobs.update({("no writer", w): (evaluate_args(fifo if w == "named fifo" else w, "--max-tokens", "5"), None,
                                    None, 15) for w in NO_WRITER})
    return {key: (lambda job=job: run_process(*job)) for key, job in jobs.items()}


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    """{case: Future of run_process's result}, started with the session (hostile.early)."""
    return early(pipe_jobs, tmp_path_factory)


@pytest.mark.parametrize("producer", ENDLESS)
@pytest.mark.parametrize("n", MAX_TOKENS)
def test_evaluate_max_tokens_stops_an_endless_pipe(pipes, producer, n):
    """evaluate --max-tokens N on an endless pipe reads what N tokens need and finishes in seconds (15)."""
    rc, err, hung, _, seconds = pipes["max tokens", producer, n].result()
    judge("streams", rc, err, must_refuse=False, hung=hung or seconds > 15)


@pytest.mark.parametrize("producer", ["yes", "text"])
def test_evaluate_endless_pipe_stops_at_the_budget(pipes, producer):
    """Without --max-tokens an endless pipe is read up to the reading budget, which says so."""
    rc, err, hung, _, _ = pipes["budget", producer].result()
    judge("streams", rc, err, must_refuse=False, hung=hung)
    assert "reading budget of 3,000 bytes" in err


@pytest.mark.parametrize("command", OTHER_COMMANDS)
def test_other_commands_refuse_an_endless_pipe(pipes, command):
    """Training (reads --data twice) refuses a pipe; a prompt file stops at its 16 MB bound."""
    rc, err, hung, _, _ = pipes["other", command].result()
    judge("streams", rc, err, must_refuse=True, hung=hung)


@pytest.mark.parametrize("what", NO_WRITER)
def test_evaluate_refuses_what_no_writer_ends(pipes, what):
    """A pipe a process writes is read; a named FIFO (it waits for a writer) or a device is refused."""
    rc, err, hung, _, _ = pipes["no writer", what].result()
    judge("streams", rc, err, must_refuse=True, hung=hung)


# ---- reading budgets: the setting itself ------------------------------------------------------------

@pytest.mark.parametrize("value", ["lots", "-5", "1e9", "5X", "G", "1..2G", "9" * 40, "2 GiB", "½G", "0x10"])
def test_a_bad_budget_is_one_error(tmp_path, value):
    data = tmp_path / "a.txt"
    data.write_text(TEXT * 20)
    rc, err, hung = run_in_process([str(CKPT), "--data", str(data), "--max-tokens", "10"],
                                   {"GLASSFORMER_READ_LIMIT": value})
    judge("streams", rc, err, must_refuse=True, hung=hung)


@pytest.mark.parametrize("value,cut", [("1k", True), ("500", True), ("1.5k", True), ("0", False),
                                       ("10M", False), ("2G", False)])
def test_a_budget_cuts_a_file_and_says_so(tmp_path, value, cut):
    data = tmp_path / "a.txt"
    data.write_text("é" + TEXT * 40)      # a 2-byte character first: cuts fall on whole characters
    rc, err, hung = run_in_process([str(CKPT), "--data", str(data), "--json"], {"GLASSFORMER_READ_LIMIT": value})
    judge("streams", rc, err, must_refuse=False, hung=hung)
    assert ("read stopped at the reading budget" in err) == cut


# ---- .bz2: trailing garbage, cut short, several streams, a bomb's ratio ------------------------------

def bz2_file(tmp_path, name, payload):
    path = tmp_path / name
    path.write_bytes(payload)
    return path


GARBAGE = [b"x", b"\0", b"\0" * 4096, b"garbage after the stream\n", b"BZ", b"PK\x03\x04", b"\x1f\x8b",
           bytes(range(256)), b"BZh9" + b"\xff" * 64, b"\n", b"BZh", b"BZh91AY&SY", b"\xff" * 100_000]


@pytest.mark.parametrize("garbage", range(len(GARBAGE)))
@pytest.mark.parametrize("streams", [1, 2, 3])
def test_bz2_with_trailing_garbage_is_refused(tmp_path, garbage, streams):
    payload = b"".join(bz2.compress((TEXT * 5).encode()) for _ in range(streams)) + GARBAGE[garbage]
    path = bz2_file(tmp_path, "a.txt.bz2", payload)
    rc, err, hung = run_in_process([str(CKPT), "--data", str(path), "--stride", "64"])
    judge("streams", rc, err, must_refuse=True, hung=hung)


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.3, 0.5, 0.7, 0.9, 0.99])
@pytest.mark.parametrize("streams", [1, 2])
def test_truncated_bz2_is_refused(tmp_path, fraction, streams):
    whole = b"".join(bz2.compress((TEXT * 9 + str(k)).encode()) for k in range(streams))
    cut = len(whole) - len(bz2.compress((TEXT * 9).encode())) // 2 if streams == 2 and fraction > 0.5 \
        else int(len(whole) * fraction)
    path = bz2_file(tmp_path, "a.txt.bz2", whole[:max(cut, 0)] if fraction else b"")
    rc, err, hung = run_in_process([str(CKPT), "--data", str(path), "--stride", "64"])
    judge("streams", rc, err, must_refuse=True, hung=hung)


@pytest.mark.parametrize("streams", [2, 3, 5, 17])
@pytest.mark.parametrize("kind", ["txt", "xml"])
def test_multistream_bz2_is_read_whole(tmp_path, streams, kind):
    """Several bz2 streams one after another (pbzip2, split dumps) are one legitimate file."""
    if kind == "txt":
        parts = [(TEXT * 3 + f"part {k}\n").encode() for k in range(streams)]
        name = "a.txt.bz2"
    else:
        pages = "".join(f"<page><title>T{k}</title><ns>0</ns><revision><text>{TEXT * 2}</text></revision></page>"
                        for k in range(streams))
        doc = f"<mediawiki>{pages}</mediawiki>".encode()
        step = -(-len(doc) // streams)
        parts, name = [doc[i:i + step] for i in range(0, len(doc), step)], "a.xml.bz2"
    path = bz2_file(tmp_path, name, b"".join(bz2.compress(p) for p in parts))
    rc, err, hung = run_in_process([str(CKPT), "--data", str(path), "--stride", "64", "--json"])
    judge("streams", rc, err, must_refuse=False, hung=hung)


BOMB_MB = 200        # MiB decompressed: 200 times the largest budget below; at BPE's old 0.57 MB/s, 6 minutes


def write_bomb(path, megabytes=BOMB_MB):
    """BOMB_MB of text in under 1 MB of .bz2/.gz: one MiB compressed once, its stream written `megabytes`
    times (bzip2 packs 900 kB blocks apart anyway: the ratio of one long stream; and in 1 s, not 2 min)."""
    block = (TEXT * 20000).encode()[:1 << 20]
    one = bz2.compress(block, 9) if path.name.endswith(".bz2") else gzip.compress(block, 9)
    with open(path, "wb") as f:
        for _ in range(megabytes):
            f.write(one)
    return path


def bomb_jobs(tmp_path_factory):
    """A BOMB_MB bomb of each suffix ("paths": a job that returns them), and the process cases on them."""
    d = tmp_path_factory.mktemp("bombs")
    paths = {suffix: write_bomb(d / ("bomb" + suffix)) for suffix in BOMB_SUFFIXES}
    jobs = {("evaluate", s): (evaluate_args(p, "--split", "val", "--stride", "64"), None,
                              {"GLASSFORMER_READ_LIMIT": "20k"}, 30) for s, p in paths.items()}
    jobs.update({("bpe", s): ([str(ROOT / "train_step_by_step.py"), "--task", "lm", "--data", p, "--tokenizer",
                               "bpe", "--bpe-vocab", "300", "--steps", "1", "--preset", "tiny", "--context", "8",
                               "--batch-size", "2", "--eval-batches", "1", "--no-interactive", "--out",
                               d / f"run{s}"], None, {"GLASSFORMER_READ_LIMIT": "300k"}, 60)
                 for s, p in paths.items()})
    return {"paths": lambda: paths, **{key: (lambda job=job: run_process(*job)) for key, job in jobs.items()}}


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """{"paths": {suffix: bomb}, case: Future of run_process's result}, started with the session."""
    jobs = early(bomb_jobs, tmp_path_factory)
    return {**jobs, "paths": jobs["paths"].result()}


BOMB_SUFFIXES = [".txt.bz2", ".txt.gz"]


def test_a_bomb_is_what_it_claims():
    """The multi-stream bomb decompresses to BOMB_MB MiB (checked on a 3 MiB one) and is far smaller."""
    with tempfile.TemporaryDirectory() as d:
        for suffix in BOMB_SUFFIXES:
            path = write_bomb(Path(d) / ("bomb" + suffix), 3)
            data = (bz2 if suffix.endswith(".bz2") else gzip).decompress(path.read_bytes())
            assert len(data) == 3 << 20 and path.stat().st_size < 10_000


@pytest.mark.parametrize("suffix", BOMB_SUFFIXES)
@pytest.mark.parametrize("budget", ["20k", "100k", "1M"])
def test_a_bomb_is_read_to_its_budget(bombs, suffix, budget):
    """BOMB_MB of text in under 1 MB of .bz2/.gz: read up to the budget, which says where it stopped."""
    rc, err, hung = run_in_process([str(CKPT), "--data", str(bombs["paths"][suffix]), "--max-tokens", "200"],
                                   {"GLASSFORMER_READ_LIMIT": budget}, seconds=10)
    judge("streams", rc, err, must_refuse=False, hung=hung)


@pytest.mark.parametrize("suffix", BOMB_SUFFIXES)
def test_a_bomb_is_read_to_its_budget_by_the_command(bombs, suffix):
    """python -m glassformer.evaluate on the bomb, its whole val split asked for: read to the 20k budget."""
    rc, err, hung, _, _ = bombs["evaluate", suffix].result()
    judge("streams", rc, err, must_refuse=False, hung=hung)
    assert "reading budget of 20,000 bytes" in err


@pytest.mark.parametrize("suffix", BOMB_SUFFIXES)
def test_bpe_training_on_a_bomb_is_metered_and_budgeted(bombs, suffix):
    """--tokenizer bpe on the BOMB_MB bomb: BPE counts within the budget (300k), with its meter."""
    rc, err, hung, _, _ = bombs["bpe", suffix].result()
    judge("streams", rc, err, must_refuse=False, hung=hung)
    assert "bpe: counting pre-tokens" in err and err.count("read stopped at the reading budget") == 1


@pytest.mark.parametrize("garbage", [b"x", b"not gzip at all", b"\x1f\x8b\x08"])
def test_gzip_with_trailing_garbage_is_refused(tmp_path, garbage):
    path = tmp_path / "a.txt.gz"
    path.write_bytes(gzip.compress((TEXT * 5).encode()) + garbage)
    rc, err, hung = run_in_process([str(CKPT), "--data", str(path), "--stride", "64"])
    judge("streams", rc, err, must_refuse=True, hung=hung)


# ---- pathological markup: the cleaner in time linear in its input -----------------------------------

def markup(kind, size, seed=0):
    """Generated wikitext of about `size` characters of one pathological shape."""
    rng = random.Random(seed)
    atoms = {"unclosed ref": ["<ref name=a>"], "ref no >": ["<ref "], "self closed": ["<ref ", "<ref/>", "x "],
             "external": ["[http://a b "], "links": ["[[a|", "[[", "b]] "], "deep links": ["[["],
             "heading": ["= a" + " " * 200], "templates": ["{{", "{|", "a|", "}}"], "comments": ["<!--", "a-"],
             "quotes": ["''x ", "'''a'''b ", "'''"], "charrefs": ["&#" + "1" * 60 + ";", "&#x", "&amp"],
             "random": ["<ref>", "</ref>", "<ref", ">", "{{", "}}", "[[", "]]", "|", "[http://x", "]", "==",
                        "'''", "''", "<!--", "-->", " ", "\n", "a", "<math>", "&#65;", "----", "*"]}[kind]
    parts, n = [], 0
    while n < size:
        part = rng.choice(atoms)
        parts.append(part)
        n += len(part)
    return "".join(parts)


MARKUPS = ["unclosed ref", "ref no >", "self closed", "external", "links", "deep links", "heading", "templates",
           "comments", "quotes", "charrefs", "random"]


def test_80k_unclosed_refs_clean_in_under_a_second():
    """The issue's page: 1.4 MB with 80k unclosed <ref name=a> (47 s before, a lazy regex per opener)."""
    page = "<ref name=a>" * 80_000 + "Some prose. " * 36_700
    assert 1_300_000 < len(page) < 1_500_000
    judge("streams", 0, must_refuse=False, hung=timed_clean(page, 5) > 1.0)


@pytest.mark.parametrize("kind", MARKUPS)
@pytest.mark.parametrize("seed", [0, 1])
def test_cleaner_is_linear_on_generated_markup(kind, seed):
    """100 KB and 1 MB of each pathological shape: the time ratio stays under 20 (quadratic: ~100). Each
    size is timed as the best of 3 runs (the 1 MB one stops at its first run within the ratio: the verdict
    of the best of 3), the small one as at least 50 ms (a shared machine's noise)."""
    small = best_time(markup(kind, 100_000, seed), 0.0)
    large = best_time(markup(kind, 1_000_000, seed), 20 * max(small, 0.05)) if small <= 3.0 else float("inf")
    slow = large > 3.0 or large > 20 * max(small, 0.05)
    judge("streams", 0, must_refuse=False, hung=slow)


def best_time(text, enough):
    """The least of up to 3 timings of clean_wikitext(text): it stops at one within `enough` s, or past 3 s."""
    best = float("inf")
    for _ in range(3):
        best = min(best, timed_clean(text, 5))
        if best <= enough or best > 3.0:
            break
    return best


@pytest.mark.parametrize("kind", MARKUPS)
def test_pathological_pages_in_a_dump_read_fast(tmp_path, kind):
    """Each shape as the text of a page in an .xml.bz2 dump, through evaluate: one outcome in seconds."""
    text = markup(kind, 300_000).replace("<", "&lt;").replace("&#", "&amp;#")
    doc = f"<mediawiki><page><title>T</title><ns>0</ns><revision><text>{text} prose</text></revision></page>" \
          "</mediawiki>"
    path = tmp_path / "dump.xml.bz2"
    path.write_bytes(bz2.compress(doc.encode()))
    rc, err, hung = run_in_process([str(CKPT), "--data", str(path), "--max-tokens", "20"], seconds=5)
    judge("streams", rc, err, must_refuse=False, hung=hung)


# ---- huge single lines and documents in each format (subprocesses under a memory cap) -----------------

def write_big(path, head, fill, size, tail=b""):
    """A file of about `size` bytes: head, then `fill` repeated, then tail, written in 1 MB blocks."""
    block = fill * ((1 << 20) // len(fill))
    with open(path, "wb") as f:
        f.write(head)
        for _ in range(size // len(block)):
            f.write(block)
        f.write(tail)
    return path


PAGE = b"<mediawiki><page><title>T</title><ns>0</ns><revision><text>", b"</text></revision></page></mediawiki>"
BIG = {"wikitext line": ("a.tokens", b" = T = \n\n", b"word ", 200 << 20, b"\n"),      # name: write_big's args
       "wikitext lines": ("b.tokens", b"", b"a line of an article\n", 200 << 20),
       "jsonl line": ("c.jsonl", b'{"text": "', b"word ", 200 << 20, b'"}\n'),
       "txt line": ("d.txt", b"", b"word ", 200 << 20),
       "stories": ("e.txt", b"<|endoftext|>", b"word ", 200 << 20),
       "xml page": ("f.xml", PAGE[0], b"word ", 200 << 20, PAGE[1]),
       "jsonl 15 MB": ("g.jsonl", b'{"text": "', b"word ", 15 << 20, b'"}\n'),
       "xml 15 MB": ("h.xml", PAGE[0], b"word ", 15 << 20, PAGE[1]),
       "prompt": ("p.txt", b"", b"word ", 300 << 20)}


HUGE = {"wikitext line": True, "wikitext lines": False, "jsonl line": True, "txt line": False, "stories": True,
        "xml page": True, "jsonl 15 MB": False, "xml 15 MB": False}          # name: refused


def huge_jobs(tmp_path_factory):
    """What each command says of each huge input, with its peak RSS, each under its cap: the input is made
    in the job (on disk only, never in this process's memory: the writing overlaps the other jobs) and
    removed after it; the two prompt cases share one file, made once, removed by the second to end."""
    d = tmp_path_factory.mktemp("big")
    lock, users = threading.Lock(), {"prompt": 2}

    def made(name):
        with lock:
            path = d / BIG[name][0]
            return path if path.exists() else write_big(path, *BIG[name][1:])

    def job(name, argv, feed=None):
        path = made(name)
        try:
            return run_process(argv(path), feed and feed(path), None, 60)
        finally:
            with lock:
                users[name] = users.get(name, 1) - 1
                if not users[name]:
                    path.unlink()
    args = [str(ROOT / "test_model_manually.py"), "--checkpoint", str(CKPT), "--prompt-file"]
    jobs = {name: (lambda name=name: job(name, lambda p: evaluate_args(p, "--max-tokens", "100"))) for name in HUGE}
    jobs["prompt file"] = lambda: job("prompt", lambda p: [*args, p])
    jobs["prompt stdin"] = lambda: job("prompt", lambda p: [*args, "-"], lambda p: f"cat {_quote(p)}")
    return jobs


@pytest.fixture(scope="module")
def huge_runs(tmp_path_factory):
    """{case: Future of run_process's result}, started with the session (hostile.early)."""
    return early(huge_jobs, tmp_path_factory)


EARLY = {"pipes": pipe_jobs, "huge_runs": huge_jobs, "bombs": bomb_jobs}   # started with the session (conftest)
EARLY_SECONDS = 30


@pytest.mark.parametrize("name", HUGE)
def test_a_huge_single_document_stays_bounded(huge_runs, name):
    """200 MB in one line or document: streamed or refused with one error (a line, JSON line or page over
    16 MB), under RSS_BOUND_MB; one just under 16 MB is read, under the bound too."""
    rc, err, hung, rss, _ = huge_runs[name].result()
    judge("streams", rc, err, must_refuse=HUGE[name], hung=hung, unbounded=rss > RSS_BOUND_MB)


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_a_300mb_prompt_file_is_refused_within_bounds(huge_runs, how):
    rc, err, hung, rss, _ = huge_runs["prompt " + how].result()
    judge("streams", rc, err, must_refuse=True, hung=hung, unbounded=rss > RSS_BOUND_MB)
