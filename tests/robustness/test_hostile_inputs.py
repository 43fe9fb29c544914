"""Hostile inputs by cause x surface: every file the commands read, made into what no file should be.

Causes: the kind of file (a FIFO, a character device, a socket, a folder, a symlink to a FIFO, missing,
empty, a 5 GB sparse file) and its content (JSON/JSONL/TOML nested 100,000 deep, 5,000-digit numbers,
NaN/Infinity, a NUL in a path, bytes that are not UTF-8, CSV with a NUL, text or a missing cell).
Surfaces: --data, --val-data, --test-data, --config, --tokenizer, --task qa --data, --mix-data,
a --resume folder's files, a Hugging Face folder's files, evaluate --data and --prompt-file.

The contract (glassformer.inputs makes it hold by construction): exit 2 with exactly one `error:`
line naming the hostile file (or exit 0 where the input is legitimately fine), never a traceback,
within seconds. Regular files run in-process under a deadline; FIFOs, devices and sockets run in one
child process with a deadline per case and a timeout around it, so a hang fails a test, not the run.
"""
import contextlib
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from glassformer.cli import evaluate, export
from glassformer.cli import repl, train
from glassformer.errors import run_main
from test_fuzz import Hang, deadline          # one deadline for every fuzz suite

PER_CASE_S = 10                                             # longer is a hang
STREAM_KINDS = ("fifo", "chardev", "devnull", "socket", "link_to_fifo")
WORDS = "the a cat dog sat on mat and ran far away quick brown fox jumps over lazy".split()
TINY = ["--context", "8", "--batch-size", "2", "--eval-interval", "2", "--eval-batches", "2",
        "--no-interactive", "--preset", "tiny"]




# ---- the hostile things ----------------------------------------------------------------------

def make_kind(path, kind):
    """Make path into a file of this kind (anything but a sound regular file)."""
    path = Path(path)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "chardev":
        path.symlink_to("/dev/zero")
    elif kind == "devnull":
        path.symlink_to("/dev/null")
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(path))                               # the socket file stays after close
    elif kind == "folder":
        path.mkdir()
    elif kind == "link_to_fifo":
        os.mkfifo(path.with_name(path.name + ".target"))
        path.symlink_to(path.name + ".target")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "huge":
        with open(path, "wb") as f:
            f.truncate(5 << 30)                             # 5 GB of zeros, no disk used
    elif kind != "missing":
        raise ValueError(kind)


def deep(n, kind):
    """JSON text nested n deep: [[[...]]], {"a": {"a": ...}}, or n unclosed brackets."""
    if kind == "list":
        return "[" * n + "]" * n
    if kind == "object":
        return '{"a": ' * n + "1" + "}" * n
    return "[" * n


NUMBERS = {"int5000": "1" * 5000, "neg5000": "-" + "9" * 5000, "float5000": "1." + "1" * 5000,
           "exp5000": "1e" + "9" * 5000, "tiny5000": "0." + "0" * 4999 + "1", "int4301": "7" * 4301,
           "int101": "9" * 101}
CONSTANTS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity", "overflow": "1e999"}
BAD_UTF8 = {"ff": b"\xff", "cut": b"\xc3", "overlong": b"\xc0\xaf", "surrogate": b"\xed\xa0\x80",
            "utf16": "text".encode("utf-16")}
DEPTHS = (65, 1_000, 100_000)


def json_contents(wrap):
    """{name: bytes} of hostile JSON documents; wrap(value_text) puts a value where the surface reads."""
    out = {}
    for n in DEPTHS:
        for shape in ("list", "object", "open"):
            out[f"deep{n}_{shape}"] = wrap(deep(n, shape)).encode()
    out.update({f"number_{k}": wrap(v).encode() for k, v in NUMBERS.items()})
    out.update({f"const_{k}": wrap(v).encode() for k, v in CONSTANTS.items()})
    out.update({f"utf8_{k}": wrap('"x"').encode()[:-2] + v + b"}" for k, v in BAD_UTF8.items()})
    out["nul_raw"] = wrap('"a\0b"').encode()
    return out


def toml_contents():
    """{name: bytes} of hostile TOML configs."""
    out = {}
    for n in DEPTHS:
        out[f"deep{n}_array"] = ("steps = " + "[" * n + "]" * n).encode()
        out[f"deep{n}_inline"] = ("steps = " + "{a = " * n + "1" + "}" * n).encode()
        out[f"deep{n}_open"] = ("steps = " + "[" * n).encode()
    out.update({f"number_{k}": f"steps = {v}".encode() for k, v in NUMBERS.items()
                if k in ("int5000", "neg5000", "float5000", "int4301", "int101")})
    out.update({f"const_{k}": f"steps = {v}".encode() for k, v in
                {"nan": "nan", "inf": "inf", "-inf": "-inf", "overflow": "1e999"}.items()})
    out.update({f"utf8_{k}": b'task = "' + v + b'"' for k, v in BAD_UTF8.items()})
    out["nul_raw"] = b'task = "a\0b"'
    return out


TEXT_CONTENTS = {**{f"utf8_{k}": b"hello world\n" * 3 + v + b"\nmore\n" for k, v in BAD_UTF8.items()},
                 "nul_start": b"\0hello\n", "nul_middle": b"hello\n" * 50 + b"\0" + b"world\n" * 50,
                 "nul_after_64k": b"hello world\n" * 6000 + b"\0\n", "bom_utf16": b"\xff\xfeh\0i\0"}
CSV_HEADER = b"step,tokens,elapsed_s,lr,train_loss,grad_norm,tokens_per_s,ms_per_iter,val_loss,val_ppl\n"
CSV_ROW = b"2,32,0.1,0.001,5.0,1.0,100,10,5.4,220\n"
CSV_CONTENTS = {"nul": CSV_HEADER + CSV_ROW.replace(b"5.4", b"5\0.4"), "abc": CSV_HEADER + CSV_ROW.replace(b"5.4", b"abc"),
                "missing_cell": CSV_HEADER + b"2,32,0.1\n", "extra_cell": CSV_HEADER + CSV_ROW[:-1] + b",9\n",
                "number5000": CSV_HEADER + CSV_ROW.replace(b"5.4", b"1" * 5000),
                "open_quote": CSV_HEADER + b'2,"32,0.1\n', "huge_field": CSV_HEADER + b"2," + b"9" * 200_000 + b"\n",
                "step_text": CSV_HEADER + CSV_ROW.replace(b"2,32", b"two,32"), "utf8_ff": CSV_HEADER + b"\xff\n",
                "bad_header": b"step,\0\n" + CSV_ROW}
NPZ_CONTENTS = {"random": np.random.default_rng(0).bytes(4096), "zip_cut": b"PK\x03\x04" + b"\0" * 60,
                "text": b"not a checkpoint\n"}


def safetensors_contents():
    """{name: bytes} of safetensors files with hostile headers."""
    def file(header):
        return struct.pack("<Q", len(header)) + header
    return {"deep": file(deep(100_000, "list").encode()), "number": file(b'{"a": ' + b"1" * 5000 + b"}"),
            "nan": file(b'{"__metadata__": {}, "x": NaN}'), "claims_more": struct.pack("<Q", 1 << 40) + b"{}",
            "not_utf8": file(b'{"\xff": 1}')}


# ---- the surfaces ----------------------------------------------------------------------------

# name -> (file name, how the path reaches the program); member surfaces replace a file of a copy
ARG_SURFACES = {"data": "data.txt", "val_data": "valid.txt", "test_data": "test.txt", "config": "run.json",
                "tokenizer": "tok.json", "qa_data": "qa.jsonl", "mix_data": "mix.txt",
                "evaluate_data": "eval.txt", "prompt_file": "prompt.txt"}
RESUME_FILES = ("metrics.csv", "best.npz", "last.npz", "config.json")
HF_FILES = ("config.json", "vocab.json", "merges.txt", "model.safetensors")


def command(world, surface, path, case_dir):
    """(main name, argv) that makes the program read `path` as `surface`."""
    text, out = str(world["text"]), str(case_dir / "run")
    lm = ["--task", "lm", "--steps", "1", *TINY, "--out", out]
    return {"data": ("train", [*lm, "--data", str(path)]),
            "val_data": ("train", [*lm, "--data", text, "--val-data", str(path)]),
            "test_data": ("train", [*lm, "--data", text, "--test-data", str(path)]),
            "config": ("train", ["--config", str(path)]),
            "tokenizer": ("train", [*lm, "--data", text, "--tokenizer", str(path)]),
            "qa_data": ("train", ["--task", "qa", "--steps", "1", *TINY, "--data", str(path), "--out", out]),
            "mix_data": ("train", ["--task", "qa", "--steps", "1", *TINY, "--data", str(world["qa"]),
                                   "--mix-data", str(path), "--out", out]),
            "evaluate_data": ("evaluate", [str(world["ckpt"]), "--data", str(path)]),
            "prompt_file": ("repl", ["--checkpoint", str(world["ckpt"]), "--prompt-file", str(path),
                                     "--max-new-tokens", "2"]),
            "resume": ("train", ["--resume", str(path.parent), "--steps", "3"]),
            "hf": ("evaluate", [str(path.parent), "--data", text, "--max-tokens", "20"])}[surface]


def place(world, surface, member, case_dir):
    """The path the hostile thing goes to: a fresh name, or a member of a fresh copy of a folder."""
    if surface in ARG_SURFACES:                             # (a config's member: which key is hostile)
        return case_dir / ARG_SURFACES[surface]
    folder = case_dir / surface
    shutil.copytree(world["run" if surface == "resume" else "hf"], folder, copy_function=os.link)
    member = member.split("/")[0]
    (folder / member).unlink()
    return folder / member


class Case:
    """One hostile input: where it goes, how it is made, what may come out."""

    def __init__(self, surface, member, cause, make, allowed=(2,), named=True):
        self.surface, self.member, self.cause, self.make = surface, member, cause, make
        self.allowed, self.named = allowed, named
        self.id = f"{surface}{'-' + member if member else ''}-{cause}"
        self.stream = cause.startswith("kind_") and cause[5:] in STREAM_KINDS


def kind_cases():
    """Every file kind on every surface."""
    spots = [(s, None) for s in ARG_SURFACES] + [("resume", m) for m in RESUME_FILES] + \
        [("hf", m) for m in HF_FILES]
    for surface, member in spots:
        for kind in ("fifo", "chardev", "devnull", "socket", "folder", "link_to_fifo", "missing", "empty",
                     "huge"):
            legit = kind == "empty" or (surface in ("resume", "hf") and kind == "missing") or \
                (kind == "huge" and member in ("best.npz", "config.json") and surface == "resume")
            yield Case(surface, member, f"kind_{kind}", (lambda p, k=kind: make_kind(p, k)),
                       (0, 2) if legit else (2,), named=not legit and kind != "missing")


def content_cases():
    """Every hostile content on every surface that reads that format."""
    def write(data):
        return lambda p: Path(p).write_bytes(data)
    json_spots = {("config", None): lambda v: '{"task": "lm", "steps": %s}' % v,
                  ("config", "_comment"): lambda v: '{"task": "lm", "_comment": [%s]}' % v,
                  ("hf", "config.json/nested"): lambda v: ('{"model_type": "gpt2", "task_specific_params": '
                                                           '{"x": %s}}' % v),
                  ("tokenizer", None): lambda v: '{"type": "char", "chars": ["a"], "x": %s}' % v,
                  ("qa_data", None): lambda v: '{"question": "q", "answer": "a", "x": %s}' % v,
                  ("hf", "config.json"): lambda v: '{"model_type": "gpt2", "n_embd": 128, "x": %s}' % v,
                  ("hf", "vocab.json"): lambda v: '{"a": 0, "x": %s}' % v}
    for (surface, member), wrap in json_spots.items():
        for name, data in json_contents(wrap).items():
            yield Case(surface, member, f"json_{name}", write(data))   # member "x/y": the file x, wrapped as y
    for surface in ("data", "val_data", "test_data", "mix_data", "evaluate_data"):   # .jsonl: a document a line
        for name, data in json_contents(lambda v: '{"text": "hello", "x": %s}' % v).items():
            yield Case(surface, None, f"jsonl_{name}", write(data + b"\n"))
    for name, data in toml_contents().items():
        yield Case("config_toml", None, f"toml_{name}", write(data))
    for surface in ("data", "val_data", "test_data", "evaluate_data", "prompt_file", "mix_data"):
        for name, data in TEXT_CONTENTS.items():
            yield Case(surface, None, f"text_{name}", write(data))
    for name, data in TEXT_CONTENTS.items():
        yield Case("hf", "merges.txt", f"text_{name}", write(b"#version: 0.2\n" + data))
    for name, data in CSV_CONTENTS.items():
        yield Case("resume", "metrics.csv", f"csv_{name}", write(data))
    for name, data in NPZ_CONTENTS.items():                 # (best.npz is not read to resume)
        yield Case("resume", "last.npz", f"npz_{name}", write(data))
    for name, data in safetensors_contents().items():
        yield Case("hf", "model.safetensors", f"st_{name}", write(data))
    for fmt, quote in (("json", '{"task": "lm", "%s": "%s"}'), ("toml", 'task = "lm"\n%s = "%s"')):
        for key in ("data", "val_data", "test_data", "mix_data", "init_from", "out", "resume", "tokenizer"):
            for where in ("a\\u0000b", "\\u0000", "x.txt\\u0000.json"):
                yield Case("config" if fmt == "json" else "config_toml", None, f"nulpath_{fmt}_{key}_{len(where)}",
                           write((quote % (key, where)).encode()))


CASES = {c.id: c for c in [*kind_cases(), *content_cases()]}


# ---- running one case ------------------------------------------------------------------------



def run_case(world, case, base):
    """{"rc", "out", "err", "seconds", "named"} of one case, run in this process."""
    case_dir = Path(tempfile.mkdtemp(prefix="c", dir=base))  # short: a socket path must fit 108 bytes
    surface = "config" if case.surface == "config_toml" else case.surface
    path = place(world, surface, case.member, case_dir)
    if case.surface == "config_toml":
        path = path.with_suffix(".toml")
    elif case.cause.startswith("jsonl_"):
        path = path.with_suffix(".jsonl")
    case.make(path)
    main, argv = command(world, surface, path, case_dir)
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    try:
        with deadline(PER_CASE_S), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if main == "repl":
                rc = run_main(lambda: repl.main(argv, stdin=io.StringIO(""), stdout=out, stderr=err), stderr=err)
            else:
                rc = run_main({"train": train.main, "evaluate": evaluate.main}[main], argv, stderr=err)
    except Hang as e:
        rc = f"hang: {e}"
    return {"rc": rc, "out": out.getvalue()[-2000:], "err": err.getvalue()[-4000:],
            "seconds": time.perf_counter() - start, "named": path.name, "target": os.path.realpath(path)}


def check(case, result):
    """The contract for one case."""
    rc, err = result["rc"], result["err"]
    text = result["out"] + err
    assert "Traceback" not in text, f"{case.id}: a traceback:\n{text}"
    assert rc in case.allowed, f"{case.id}: exit {rc!r}, expected {case.allowed}:\n{text}"
    assert result["seconds"] < PER_CASE_S, f"{case.id}: {result['seconds']:.1f} s"
    if rc == 2:
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, f"{case.id}: {len(errors)} error lines:\n{err}"
        if case.named:
            names = (result["named"], result.get("target", result["named"]))   # a link's name or target
            assert any(n in errors[0] for n in names), f"{case.id}: the error names another file:\n{err}"


# ---- the world the cases run in ----------------------------------------------------------------

def build_world(root):
    """A text, a trained run folder (bpe tokenizer), its HF export and a Q&A file under root."""
    root = Path(root)
    rng = np.random.default_rng(0)
    text = root / "text.txt"
    text.write_text("\n".join(" ".join(rng.choice(WORDS, 8)) for _ in range(60)) + "\n", encoding="utf-8")
    (root / "qa.jsonl").write_text("".join(json.dumps({"question": f"q{i}", "answer": f"a{i}"}) + "\n"
                                           for i in range(6)), encoding="utf-8")
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        rc = train.main(["--task", "lm", "--data", str(text), "--tokenizer", "bpe", "--bpe-vocab", "270",
                         "--steps", "2", *TINY, "--out", str(root / "run")])
        assert rc == 0, quiet.getvalue()
        assert export.main([str(root / "run" / "best.npz"), str(root / "hf")]) == 0, quiet.getvalue()
    return {"text": text, "qa": root / "qa.jsonl", "run": root / "run", "hf": root / "hf",
            "ckpt": root / "run" / "best.npz"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = Path(tempfile.mkdtemp(prefix="gh"))
    yield {**build_world(tmp_path_factory.mktemp("world")), "base": base}
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def streamed(world):
    """The results of every FIFO, device and socket case, run in one child process (a hang: its case's
    deadline there; a child stuck past every deadline: killed, its missing cases fail)."""
    ids = [c.id for c in CASES.values() if c.stream]
    spec = {"world": {k: str(v) for k, v in world.items()}, "ids": ids}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    try:
        done = subprocess.run([sys.executable, __file__, json.dumps(spec)], capture_output=True, text=True,
                              env=env, timeout=PER_CASE_S * 4 + 2 * len(ids))
        lines = done.stdout.splitlines()
    except subprocess.TimeoutExpired as e:
        lines = (e.stdout or b"").decode(errors="replace").splitlines()
    return {r["id"]: r for r in map(json.loads, (line for line in lines if line.startswith("{")))}


@pytest.mark.parametrize("case_id", [c.id for c in CASES.values() if not c.stream])
def test_a_hostile_regular_file_is_one_error_line(world, case_id):
    check(CASES[case_id], run_case(world, CASES[case_id], world["base"]))


@pytest.mark.parametrize("case_id", [c.id for c in CASES.values() if c.stream])
def test_a_fifo_device_or_socket_is_refused_without_waiting(streamed, case_id):
    assert case_id in streamed, f"{case_id}: no answer from the child process (a hang?)"
    check(CASES[case_id], streamed[case_id])


def test_the_suite_is_big_enough_and_its_checks_can_fail():
    """At least 600 generated inputs; check() catches a traceback, a wrong exit, a second error line."""
    assert len(CASES) >= 600, len(CASES)
    case = Case("data", None, "kind_fifo", None)
    good = {"rc": 2, "out": "", "err": "error: data.txt: no\n", "seconds": 0.1, "named": "data.txt"}
    check(case, good)
    for bad in ({"err": "Traceback (most recent call last):\nerror: x\n"}, {"rc": 1}, {"rc": "hang: 10 s"},
                {"err": "error: data.txt: a\nerror: data.txt: b\n"}, {"err": "error: other.txt\n"},
                {"seconds": 60.0}):
        with pytest.raises(AssertionError):
            check(case, {**good, **bad})


if __name__ == "__main__":                                  # the child process of `streamed`
    spec = json.loads(sys.argv[1])
    for case_id in spec["ids"]:
        result = run_case({k: Path(v) for k, v in spec["world"].items()}, CASES[case_id], spec["world"]["base"])
        print(json.dumps({"id": case_id, **result}), flush=True)
