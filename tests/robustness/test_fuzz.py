"""Fuzzing the entry points: Hypothesis on REPL lines, flag values and checkpoint headers and arrays,
and the fixed hostile corpus (tests/unit/checkpoint/test_checkpoint.py's, plus 300 single-bit flips) through the REPL
and `train_step_by_step.py --resume`. Never a traceback, never a hang (a deadline on every input),
bounded memory, and bad input is exit 2 with an `error:` line. The number of inputs tried is printed.

In-process calls run inside errors.run_main, the boundary the real scripts use, so an exception that
would be a traceback for a user is one here too; a few files also go through the real scripts.
"""
import argparse
import contextlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from glassformer import checkpoint
from glassformer.checkpoint import load_checkpoint, save_checkpoint
from glassformer.cli import repl, train
from glassformer.errors import UserError, run_main
from glassformer.models import ModelConfig, build_model
from glassformer.tasks import digits, sentences
from glassformer.tokenizers import CharTokenizer
from unit.checkpoint.test_checkpoint import build_hostile, bit_flips, members_of, npy, save_real, write_zip

ROOT = Path(__file__).resolve().parents[2]
TRIED = {"inputs": 0, "start": time.perf_counter()}        # every input any test here fed in
FUZZ = settings(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PER_INPUT_S = 20                                            # an input taking longer is a hang


@pytest.fixture(scope="module", autouse=True)
def report(request):
    """Print how many inputs this module tried and how long it took (from its first test, not collection)."""
    TRIED["start"] = time.perf_counter()
    yield
    line = (f"test_fuzz: {TRIED['inputs']:,} inputs tried in "
            f"{time.perf_counter() - TRIED['start']:.1f} s")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\n{line}", flush=True)


class Hang(BaseException):
    """A deadline passed. Not an Exception (TimeoutError is an OSError, which run_main would turn into
    a clean `error:` exit 2): a hang inside the entry points' boundary must reach the test."""


@contextlib.contextmanager
def deadline(seconds=PER_INPUT_S):
    """Raise Hang in the main thread when the block runs longer than seconds."""
    def expired(signum, frame):
        raise Hang(f"no answer within {seconds} s: a hang")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_clean(rc, out, err, expect=None):
    """The contract: no traceback; exit 0 or 2 (or `expect`); an exit 2 says why in an `error:` line."""
    text = out + err
    assert "Traceback (most recent call last)" not in text, f"a traceback:\n{text[-3000:]}"
    assert rc in ((0, 2) if expect is None else (expect,)), f"exit {rc}:\n{text[-3000:]}"
    if rc == 2:
        assert any(line.startswith("error: ") for line in err.splitlines()), f"no error line:\n{err}"


def call(main, *args, stdin="", timeout=PER_INPUT_S):
    """(exit status, stdout, stderr) of main(*args) inside the entry points' boundary, in-process."""
    TRIED["inputs"] += 1
    out, err = io.StringIO(), io.StringIO()
    with deadline(timeout), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run_main(main, *args, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def ask_repl(path, *flags, lines=""):
    """The REPL on checkpoint path with flags, typed lines on stdin; (rc, out, err)."""
    argv = ["--checkpoint", str(path), *flags]
    stdin, out, err = io.StringIO(lines), io.StringIO(), io.StringIO()
    TRIED["inputs"] += 1
    with deadline():
        rc = run_main(lambda: repl.main(argv, stdin=stdin, stdout=out, stderr=err), stderr=err)
    return rc, out.getvalue(), err.getvalue()


# ---- checkpoints to fuzz --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Small real checkpoints the REPL answers from: digits, sentences, a char LM."""
    folder = tmp_path_factory.mktemp("ckpts")
    task = digits.DigitsConfig(size="small")
    cfg = ModelConfig(vocab_size=len(digits.VOCAB), d_model=16, n_heads=2, n_layers=1, d_ff=32,
                      max_len=task.seq_len)
    tok = {"type": "word", "version": 1, "specials": digits.VOCAB[:2], "words": digits.VOCAB[2:],
           "unk": None}
    out = {"digits": save_checkpoint(folder / "digits.npz", build_model(cfg, np.random.default_rng(0)),
                                     tokenizer=tok, task={"name": "digits", **task.to_dict()})}
    vocab = sentences.vocabulary()
    cfg = ModelConfig(vocab_size=len(vocab), kind="decoder_lm", d_model=16, n_heads=2, n_layers=1,
                      d_ff=32, max_len=16)
    out["sentences"] = save_checkpoint(
        folder / "sentences.npz", build_model(cfg, np.random.default_rng(0)),
        tokenizer={"type": "word", "version": 1, "specials": vocab[:len(sentences.SPECIALS)],
                   "words": vocab[len(sentences.SPECIALS):], "unk": None}, task={"name": "sentences"})
    tok = CharTokenizer.from_text("the quick brown fox jumps over the lazy dog.\n")
    cfg = ModelConfig(vocab_size=tok.vocab_size, kind="decoder_lm", d_model=16, n_heads=2, n_layers=1,
                      d_ff=32, max_len=32, positional="learned", norm_first=True)
    out["lm"] = save_checkpoint(folder / "lm.npz", build_model(cfg, np.random.default_rng(0)),
                                tokenizer=tok.to_dict(), task={"name": "lm"})
    return out


@pytest.fixture(scope="module")
def resumable(tmp_path_factory):
    """A real train_step_by_step.py digits run (one epoch of 300 examples): its last.npz resumes."""
    out = tmp_path_factory.mktemp("run") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(digits.SIZES, "small", 300)
        rc, _, err = call(train.main, ["--task", "digits", "--size", "small", "--epochs", "1",
                                       "--no-interactive", "--out", str(out)])
    assert rc == 0, err
    return out / "last.npz"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, resumable):
    """The hostile files, built from the resumable run's checkpoint."""
    return build_hostile(tmp_path_factory.mktemp("hostile"), resumable)


# ---- the checks can fail -----------------------------------------------------------------------------

def test_the_assertions_catch_a_traceback_a_bad_exit_and_a_hang(ckpts, monkeypatch):
    def broken(path, device=None):                          # a loader with a bug in it
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(repl, "load_checkpoint", broken)
    rc, out, err = ask_repl(ckpts["digits"], "--expr", "Max(1 2 3)")
    assert rc == 1 and "Traceback (most recent call last)" in err and "report it" in err
    with pytest.raises(AssertionError, match="a traceback"):
        assert_clean(rc, out, err)
    with pytest.raises(AssertionError, match="exit 1"):
        assert_clean(1, "", "")
    with pytest.raises(AssertionError, match="no error line"):
        assert_clean(2, "", "something went wrong\n")
    with pytest.raises(Hang, match="a hang"), deadline(0.2):
        time.sleep(5)
    with pytest.raises(Hang, match="a hang"):                # through the boundary, as call() runs it
        call(time.sleep, 5, timeout=0.2)


# ---- Hypothesis: REPL lines, flags, headers, arrays ----------------------------------------------------

COMMANDS = ["help", "quit", "exit", "clear", "set", "attention", "attention on", "attention all",
            "attention off", "attention sideways", "set temperature", "set top_k", "set top_p",
            "set nonsense", "Max", "Max (", "First ( 1 2 )", "the cat", "<START>", "<END>", "<PAD>",
            "ROMEO:", "[PAD]", "Min(9,9,9)", ""]
FIXED = ["set max_tokens 3", "set max_tokens 0", "set max_tokens x", "set max-new-tokens 2",
         "set max_tokens 100001", "set max_tokens", "set max_tokens 1 2"]   # no long replies
VALUES = ["0", "-1", "1", "3", "0.5", "1e309", "nan", "inf", "-inf", "off", "none", "x", "1e-300",
          "9" * 30, "", " ", "\t", "\x00", "é", "🙂"]
line = st.one_of(st.text(max_size=30), st.sampled_from(FIXED),
                 st.builds(lambda c, v: f"{c} {v}".strip(), st.sampled_from(COMMANDS),
                           st.one_of(st.sampled_from(VALUES), st.text(max_size=8))))


@pytest.mark.parametrize("kind", ["digits", "sentences", "lm"])
@settings(FUZZ, max_examples=25)
@given(lines=st.lists(line, max_size=6))
def test_repl_lines(ckpts, kind, lines):
    lines = [l for l in lines if l in FIXED or not ("max" in l and "token" in l)]   # stay short
    text = "\n".join(l.replace("\n", " ").replace("\r", " ") for l in lines) + "\n"
    rc, out, err = ask_repl(ckpts[kind], "--max-new-tokens", "4", lines=text)
    assert_clean(rc, out, err, expect=0)                    # a bad line is an error line, not an exit


def flag_values(parser):
    """argv lists from the parser's own flags, each with a value a user might mistype."""
    flags = sorted({s for a in parser._actions for s in a.option_strings if s not in ("-h", "--help")})
    pair = st.tuples(st.sampled_from(flags + ["--bogus", "-x"]),
                     st.one_of(st.sampled_from(VALUES + ["1e20", "digits", "lm", "cuda", "0-9", "9-0",
                                                         "/dev/zero", "tiny"]), st.text(max_size=10)))
    return st.lists(pair, max_size=4).map(lambda pairs: [x for p in pairs for x in p])


def parse_clean(parse, argv):
    """parse(argv) gives a Namespace or one UserError / argparse exit, nothing else."""
    TRIED["inputs"] += 1
    err = io.StringIO()
    try:
        with deadline(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parse(argv)
    except UserError as e:
        assert "\n" not in str(e).strip()
    except SystemExit as e:                                 # argparse's own error (or --help)
        assert e.code in (0, 2) and (e.code == 0 or "error:" in err.getvalue())


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_train_flags(data):
    parser = train.build_parser()
    parse_clean(parser.parse_args, data.draw(flag_values(parser)))


def repl_parser():
    """The parser repl.parse_args builds, caught as it parses (its flags are what we fuzz)."""
    seen, real = [], argparse.ArgumentParser.parse_args

    def spy(self, args=None, namespace=None):
        seen.append(self)
        return real(self, args, namespace)
    with mock.patch.object(argparse.ArgumentParser, "parse_args", spy):
        repl.parse_args([])
    return seen[0]


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_repl_flags(data):
    parse_clean(repl.parse_args, data.draw(flag_values(repl_parser())))


json_value = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
                          | st.floats(allow_nan=True) | st.text(max_size=12),
                          lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def mutate(meta, draw):
    """meta with one value at a random key path (1 to 3 deep) replaced by random JSON, or deleted;
    sometimes a whole new header."""
    node, path, depth = meta, [], draw(st.integers(0, 3))
    while len(path) < depth and isinstance(node, dict) and node:
        key = draw(st.sampled_from(sorted(node)))
        path.append(key)
        node = node[key]
    if not path:
        return draw(json_value)
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_value)
    return meta


@pytest.mark.parametrize("kind", ["digits", "lm"])
@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_crafted_headers(ckpts, tmp_path, kind, data):
    members = members_of(ckpts[kind])
    meta = json.loads(np.lib.format.read_array(io.BytesIO(members["__meta__.npy"])).tobytes())
    if "__tokenizer__.npy" in members:                      # back in the header, as version 1 kept it,
        meta["tokenizer"] = json.loads(np.lib.format.read_array(   # so the fuzz reaches it too
            io.BytesIO(members.pop("__tokenizer__.npy"))).tobytes())
    meta = mutate(meta, data.draw)
    members["__meta__.npy"] = npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))
    path = write_zip(tmp_path / "crafted.npz", members)
    rc, out, err = ask_repl(path, "--expr", "Max(1 2 3)" if kind == "digits" else "the",
                            "--max-new-tokens", "3")
    assert_clean(rc, out, err)


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_crafted_arrays(ckpts, tmp_path, data):
    members = members_of(ckpts["digits"])
    name = data.draw(st.sampled_from(sorted(k for k in members if k != "__meta__.npy")))
    dtype = data.draw(st.sampled_from(["<f2", "<f4", "<f8", "<i4", "|u1", "|b1", ">f4", "<c8"]))
    shape = np.lib.format.read_array(io.BytesIO(members[name])).shape
    shape = data.draw(st.one_of(st.just(shape), hnp.array_shapes(min_dims=0, max_dims=3, max_side=20)))
    array = data.draw(hnp.arrays(np.dtype(dtype), shape))   # NaN and inf among the floats
    members[name] = npy(array)
    path = write_zip(tmp_path / "crafted.npz", members)
    rc, out, err = ask_repl(path, "--expr", "Max(1 2 3)")
    assert_clean(rc, out, err)
    if rc == 0:                                             # accepted: then it was a sound array
        got = load_checkpoint(path).model.state_dict()[name[len("param/"):-len(".npy")]]
        assert got.shape == array.shape and np.isfinite(got).all()


# ---- the fixed hostile corpus ------------------------------------------------------------------------

def test_hostile_files_through_the_repl_and_resume(corpus):
    """Every hostile file: exit 2 and one error line, from the REPL and from --resume; memory bounded."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, path in corpus.items():
        rc, out, err = ask_repl(path, "--expr", "Max(1 2 3)")
        assert_clean(rc, out, err, expect=2)
        assert str(path) in err, name
        rc, out, err = call(train.main, ["--resume", str(path), "--no-interactive"])
        assert_clean(rc, out, err, expect=2)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024   # KiB -> MiB
    assert grown < 500, f"memory grew by {grown:.0f} MiB"


def test_300_bit_flips_through_the_repl(ckpts, tmp_path):
    """Each flip of a real checkpoint is refused with one error line, or is harmless (loads the same)."""
    want = load_checkpoint(ckpts["digits"]).model.state_dict()
    refused = 0
    for i, (pos, data) in enumerate(bit_flips(ckpts["digits"], 300)):
        path = tmp_path / "flipped.npz"
        path.write_bytes(data)
        rc, out, err = ask_repl(path, "--expr", "Max(1 2 3)")
        assert_clean(rc, out, err)
        if rc == 0:
            got = load_checkpoint(path).model.state_dict()
            assert all(np.array_equal(got[n], want[n]) for n in want), f"bit {pos} changed a weight"
        refused += rc == 2
    assert refused >= 250, refused


def test_bit_flips_through_resume(resumable, tmp_path):
    """Flips of a train_step_by_step.py checkpoint that damage it: --resume exits 2 with one line."""
    tried = 0
    for pos, data in bit_flips(resumable, 60, seed=1):
        path = tmp_path / "last.npz"
        path.write_bytes(data)
        try:
            load_checkpoint(path)
            continue                                        # harmless: it would resume for real
        except UserError:
            pass
        rc, out, err = call(train.main, ["--resume", str(path), "--no-interactive"])
        assert_clean(rc, out, err, expect=2)
        tried += 1
    assert tried >= 40


@pytest.mark.parametrize("script", ["test_model_manually.py", "train_step_by_step.py"])
def test_the_real_scripts_refuse_a_pipe_a_device_and_a_deep_header(corpus, script):
    """Through the real wrapper scripts, in a subprocess with a timeout: no hang, no traceback."""
    flag = "--checkpoint" if script.startswith("test_") else "--resume"
    for name in ("fifo", "dev_zero", "header_100k_deep"):
        if name not in corpus:
            continue
        TRIED["inputs"] += 1
        done = subprocess.run([sys.executable, str(ROOT / script), flag, str(corpus[name])],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                              cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        assert_clean(done.returncode, done.stdout, done.stderr, expect=2)


def test_ctrl_c_during_the_imports_is_quiet(tmp_path):
    """The wrapper installs the boundary before importing glassformer: Ctrl-C there is exit 130."""
    fake = tmp_path / "glassformer"
    (fake / "cli").mkdir(parents=True)
    (fake / "__init__.py").write_text("raise KeyboardInterrupt\n")
    for script in ("train_step_by_step.py", "test_model_manually.py"):
        (tmp_path / script).write_text((ROOT / script).read_text())
        TRIED["inputs"] += 1
        done = subprocess.run([sys.executable, str(tmp_path / script)], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
        assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr
