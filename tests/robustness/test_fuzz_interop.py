"""Fuzzing the loaders of other people's files: our safetensors reader (crafted headers, byte flips,
truncations), Hugging Face GPT-2 folders (config.json, the tensors, vocab.json + merges.txt) through
load_checkpoint, the REPL, python -m glassformer.evaluate and python -m glassformer.export, and the
--task qa data files (.jsonl, .tsv) through the reader and through train_step_by_step.py --task qa up
to its first training step. The rule is test_fuzz.py's: never a traceback, never a hang (a deadline on
every input), bounded memory, and bad input is exit 2 with an `error:` line. The inputs are counted.

The deadline, Hang and call() are test_fuzz.py's (Hang is a BaseException: a TimeoutError would be
an OSError, which run_main turns into a quiet exit 2, so a hang inside the boundary would pass).
"""
import contextlib
import io
import json
import os
import shutil
import struct
import sys
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from glassformer.cli import evaluate, export
from glassformer.checkpoint import load_checkpoint
from glassformer.checkpoint.safetensors import DTYPES, load_safetensors, save_safetensors
from glassformer.cli import qa, repl, train
from glassformer.tasks.qa import read_pairs
from test_fuzz import FUZZ, TRIED, Hang, assert_clean, call, json_value
from unit.checkpoint.test_hf_gpt2 import gpt2_arrays, write_folder

MEMORY_MIB = 100                                            # the most a block of inputs may allocate


@pytest.fixture(scope="module", autouse=True)
def report(request):
    """Print how many inputs this module tried and how long it took."""
    TRIED["inputs"], TRIED["start"] = 0, time.perf_counter()
    yield
    line = (f"test_fuzz_interop: {TRIED['inputs']:,} inputs tried in "
            f"{time.perf_counter() - TRIED['start']:.1f} s")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\n{line}", flush=True)


@contextlib.contextmanager
def bounded_memory(mib=MEMORY_MIB):
    """Fail when the block's traced allocations (Python's and NumPy's) peak above mib."""
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < mib << 20, f"memory grew by {peak / 2 ** 20:.0f} MiB"


def loaded(load, *args):
    """(exit status, stdout, stderr) of a loader load(*args): 0 when it returns, whatever it returns."""
    return call(lambda: load(*args) and 0)


def refused_cleanly(rc, out, err, expect=None):
    """assert_clean, and a refusal never comes from running out of memory (it must come before)."""
    assert_clean(rc, out, err, expect)
    assert "out of memory" not in err, err


# ---- the checks can fail -----------------------------------------------------------------------------

def test_the_assertions_catch_a_traceback_and_a_hang_inside_the_boundary(tmp_path):
    """Stand-in loaders with bugs: a bare exception is a traceback and exit 1, a hang is a Hang even
    inside run_main (a TimeoutError there would be a quiet exit 2), a MemoryError is not a refusal."""
    def bare(path):
        raise KeyError("a bug")

    def hangs(path):
        time.sleep(5)

    def greedy(path):
        raise MemoryError
    rc, out, err = call(bare, tmp_path)
    assert rc == 1 and "Traceback (most recent call last)" in err
    with pytest.raises(AssertionError, match="a traceback"):
        refused_cleanly(rc, out, err)
    with pytest.raises(Hang, match="a hang"):
        call(hangs, tmp_path, timeout=0.2)
    with pytest.raises(AssertionError, match="out of memory"):
        refused_cleanly(*call(greedy, tmp_path))
    with pytest.raises(AssertionError, match="memory grew"), bounded_memory(mib=10):
        np.ones(16 << 20)                                   # 128 MiB
    with pytest.raises(AssertionError, match="no error line"):
        refused_cleanly(2, "", "something went wrong\n")


# ---- safetensors --------------------------------------------------------------------------------------

def st_load(path):
    """load_safetensors inside the boundary; (rc, out, err, tensors or None)."""
    got = {}
    rc, out, err = loaded(lambda: got.update(load_safetensors(path)) or 1)
    return rc, out, err, got if rc == 0 else None


@pytest.fixture(scope="module")
def small_st(tmp_path_factory):
    """A valid small safetensors file of several dtypes, and its tensors."""
    rng = np.random.default_rng(0)
    tensors = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": np.arange(5, dtype=np.int64),
               "c": rng.standard_normal(6).astype(np.float16), "d": np.array(1.5), "e": np.ones(3, bool)}
    path = save_safetensors(tmp_path_factory.mktemp("st") / "small.safetensors", tensors,
                            metadata={"format": "pt"})
    return path, tensors


DIMS = st.one_of(st.integers(0, 6), st.integers(-3, -1), st.sampled_from([2 ** 31, 2 ** 63, 10 ** 30]),
                 st.booleans(), st.floats(allow_nan=True), st.text(max_size=2), st.none())
entry = st.fixed_dictionaries({
    "dtype": st.one_of(st.sampled_from(sorted(DTYPES)), st.sampled_from(["F8_E4M3", "f32", ""]),
                       json_value),
    "shape": st.one_of(st.lists(DIMS, max_size=3), json_value),
    "data_offsets": st.one_of(st.lists(st.one_of(st.integers(-2, 64), st.just(2 ** 64), DIMS), max_size=3),
                              json_value)},
    optional={"extra": json_value})
header = st.dictionaries(st.text(max_size=6), st.one_of(entry, json_value), max_size=4).flatmap(
    lambda h: st.one_of(st.just(h), st.builds(lambda m: dict(h, __metadata__=m), json_value)))


@settings(FUZZ, max_examples=150)
@given(head=st.one_of(header, json_value), data=st.binary(max_size=64),
       length=st.one_of(st.none(), st.sampled_from([0, 1, 7, 2 ** 24, 2 ** 40, 2 ** 64 - 1]),
                        st.integers(-8, 8)))
def test_crafted_safetensors_headers(tmp_path, head, data, length):
    raw = json.dumps(head).encode()
    n = len(raw) if length is None else length if length > 8 else max(0, len(raw) + length)
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(struct.pack("<Q", n) + raw + data)
    rc, out, err, got = st_load(path)
    refused_cleanly(rc, out, err)
    if rc == 0:                                             # accepted: then every tensor is as declared
        declared = {k: v for k, v in head.items() if k != "__metadata__"}
        assert sorted(got) == sorted(declared)
        assert all(list(got[k].shape) == declared[k]["shape"] for k in got)


@settings(FUZZ, max_examples=60)
@given(raw=st.one_of(st.binary(max_size=80), st.text(max_size=40).map(str.encode)))
def test_safetensors_headers_that_are_not_json(tmp_path, raw):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    refused_cleanly(*st_load(path)[:3])


HOSTILE_HEADERS = {
    "deep list": b"[" * 100_000, "deep object": b'{"a":' * 100_000, "unbalanced": b"{" * 10 + b"}" * 10,
    "5000-digit number": b'{"x": ' + b"1" * 5000 + b"}",
    "list dtype": b'{"x": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}',
    "object dtype": b'{"x": {"dtype": {"F32": 1}, "shape": [1], "data_offsets": [0, 4]}}',
    "byte order mark": b"\xef\xbb\xbf{}", "NUL bytes": b"\x00" * 16}


@pytest.mark.parametrize("name", sorted(HOSTILE_HEADERS))
def test_hostile_safetensors_headers(tmp_path, name):
    raw = HOSTILE_HEADERS[name]
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(4))
    refused_cleanly(*st_load(path)[:3], expect=2)


def test_byte_flips_of_a_small_safetensors_file(small_st, tmp_path):
    """400 random bytes replaced (header and data): each refused, or read with the declared shapes."""
    path, tensors = small_st
    data, rng = path.read_bytes(), np.random.default_rng(0)
    refused = 0
    with bounded_memory():
        for pos, value in zip(rng.integers(0, len(data), 400), rng.integers(0, 256, 400)):
            flipped = tmp_path / "flipped.safetensors"
            flipped.write_bytes(data[:pos] + bytes([value]) + data[pos + 1:])
            rc, out, err, got = st_load(flipped)
            refused_cleanly(rc, out, err)
            if rc == 0:
                assert all(got[k].size == np.asarray(v).size for k, v in tensors.items() if k in got)
            refused += rc == 2
    assert refused >= 50, refused                           # most header bytes matter


def test_every_truncation_of_a_small_safetensors_file_is_refused(small_st, tmp_path):
    path, _ = small_st
    data = path.read_bytes()
    for n in range(len(data)):
        cut = tmp_path / "cut.safetensors"
        cut.write_bytes(data[:n])
        refused_cleanly(*st_load(cut)[:3], expect=2)
    assert st_load(path)[0] == 0


# ---- Hugging Face GPT-2 folders ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """A tiny valid GPT-2 folder written by our own writer, its arrays, and a text file to score."""
    base = tmp_path_factory.mktemp("hf")
    arrays = gpt2_arrays(np.random.default_rng(0))
    folder = write_folder(base / "gpt2", arrays)
    (base / "text.txt").write_text(" the cat sat on the mat." * 20, encoding="utf-8")
    return folder, arrays, base / "text.txt"


def variant(hf, tmp_path, name="variant"):
    """A fresh copy of the valid folder to damage."""
    out = tmp_path / name
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(hf[0], out)
    return out


def hf_load(folder):
    """load_checkpoint(folder) inside the boundary; (rc, out, err)."""
    return loaded(load_checkpoint, folder)


CONFIG_KEYS = ["model_type", "architectures", "n_embd", "n_head", "n_layer", "n_positions", "n_ctx",
               "n_inner", "vocab_size", "layer_norm_epsilon", "activation_function", "tie_word_embeddings",
               "scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn",
               "add_cross_attention", "bos_token_id", "eos_token_id"]
WRONG = st.one_of(st.sampled_from([0, -1, 1, 2, 3, 16, 10 ** 12, 2 ** 63, 10 ** 30, True, False, None, 1.5,
                                   float("nan"), float("inf"), "16", "", "gpt2", "gelu", [], {},
                                   ["GPT2LMHeadModel"], "GPT2LMHeadModel"]), json_value)


@settings(FUZZ, max_examples=80)
@given(changes=st.dictionaries(st.sampled_from(CONFIG_KEYS), st.one_of(st.just("drop"), WRONG),
                               min_size=1, max_size=4))
def test_crafted_config_json(hf, tmp_path, changes):
    config = json.loads((hf[0] / "config.json").read_text())
    for key, value in changes.items():
        if value == "drop":
            config.pop(key, None)
        else:
            config[key] = value
    folder = tmp_path / "gpt2"
    folder.mkdir(exist_ok=True)
    for name in ("model.safetensors", "vocab.json", "merges.txt"):
        if not (folder / name).exists():
            os.link(hf[0] / name, folder / name)            # the same bytes, no copy
    (folder / "config.json").write_text(json.dumps(config))
    with bounded_memory():
        rc, out, err = hf_load(folder)
    refused_cleanly(rc, out, err)


@pytest.mark.parametrize("key", ["n_embd", "n_head", "n_layer", "n_positions", "n_ctx", "n_inner",
                                 "vocab_size"])
@pytest.mark.parametrize("value", [10 ** 12, 2 ** 62, 10 ** 30])
def test_a_huge_size_in_config_json_is_refused_before_allocating(hf, tmp_path, key, value):
    folder = variant(hf, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    if key == "n_ctx":
        del config["n_positions"]                           # read only when n_positions is absent
    (folder / "config.json").write_text(json.dumps(config))
    tracemalloc.start()
    try:
        rc, out, err = hf_load(folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    refused_cleanly(rc, out, err, expect=2)
    assert peak < 32 << 20, f"{peak / 2 ** 20:.0f} MiB allocated to refuse {key}={value}"


NOT_CONFIGS = {"a list": b"[1, 2]", "a string": b'"gpt2"', "null": b"null", "not UTF-8": b"\xff\xfe{}",
               "deep": b"{" * 100_000, "5000-digit n_embd": b'{"model_type": "gpt2", "n_embd": ' + b"9" * 5000
               + b"}", "empty": b"", "NUL bytes": b"\x00" * 64}


@pytest.mark.parametrize("name", sorted(NOT_CONFIGS))
def test_config_json_that_is_not_a_config(hf, tmp_path, name):
    body = NOT_CONFIGS[name]
    folder = variant(hf, tmp_path)
    (folder / "config.json").write_bytes(body)
    refused_cleanly(*hf_load(folder), expect=2)


FLOATS = ["<f4", "<f2", "<f8", ">f4"]


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_crafted_tensors(hf, tmp_path, data):
    """One tensor dropped, added, renamed, reshaped, of another dtype, or holding NaN/inf."""
    arrays = dict(hf[1])
    name = data.draw(st.sampled_from(sorted(arrays)))
    how = data.draw(st.sampled_from(["drop", "extra", "rename", "shape", "dtype", "values"]))
    if how == "drop":
        del arrays[name]
    elif how == "extra":
        arrays[data.draw(st.sampled_from(["h.2.ln_1.weight", "lm_head.weight", "h.0.attn.bias", "x"]))] = \
            np.ones(data.draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=4)), np.float32)
    elif how == "rename":
        arrays[data.draw(st.text(max_size=8))] = arrays.pop(name)
    elif how == "shape":
        arrays[name] = np.ones(data.draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=20)), np.float32)
    elif how == "dtype":
        dtype = data.draw(st.sampled_from(FLOATS + ["<i4", "<i8", "|u1", "|b1", "<u2"]))
        arrays[name] = arrays[name].astype(dtype)
    else:
        arrays[name] = data.draw(hnp.arrays(np.dtype(data.draw(st.sampled_from(FLOATS))),
                                            arrays[name].shape))
    folder = write_folder(tmp_path / "gpt2", arrays, tokenizer=False)
    rc, out, err = hf_load(folder)
    refused_cleanly(rc, out, err)
    if rc == 0:                                             # accepted: then it was sound
        assert how in ("dtype", "values", "rename", "extra", "shape"), (how, name)
        model = load_checkpoint(folder).model
        assert all(np.isfinite(p).all() for _, (p, _) in model.named_parameters())


vocab_text = st.one_of(json_value.map(json.dumps),
                       st.dictionaries(st.text(max_size=3), st.one_of(st.integers(-2, 300), json_value),
                                       max_size=6).map(json.dumps),
                       st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
merges_text = st.lists(st.one_of(st.text(max_size=8), st.sampled_from(["#version: 0.2", "Ġ t", "h e",
                                                                       "a b c", " ", "Ġt he"])),
                       max_size=6).map("\n".join)


@settings(FUZZ, max_examples=60)
@given(vocab=st.one_of(st.none(), vocab_text), merges=st.one_of(st.none(), merges_text),
       edit=st.one_of(st.none(), st.tuples(st.text(max_size=3), st.one_of(st.integers(-1, 400), json_value))))
def test_crafted_vocab_and_merges(hf, tmp_path, vocab, merges, edit):
    folder = variant(hf, tmp_path)
    if edit is not None:                                    # one entry of the real vocab changed
        real = json.loads((folder / "vocab.json").read_text())
        real[edit[0]] = edit[1]
        vocab = json.dumps(real) if vocab is None else vocab
    if vocab is not None:
        (folder / "vocab.json").write_text(vocab, encoding="utf-8")
    if merges is not None:
        (folder / "merges.txt").write_text(merges, encoding="utf-8")
    refused_cleanly(*hf_load(folder))


HOSTILE_TOKENIZER = {"vocab.json not UTF-8": b"\xff\xfe", "vocab.json deep": b"[" * 100_000,
                     "vocab.json 5000-digit id": b'{"a": ' + b"1" * 5000 + b"}",
                     "vocab.json one id": b'{"a": 0}', "merges.txt not UTF-8": b"\xffa b\n",
                     "merges.txt three parts": b"a b c\n", "merges.txt unknown tokens": b"zz yy\n"}


@pytest.mark.parametrize("case", sorted(HOSTILE_TOKENIZER))
def test_hostile_tokenizer_files(hf, tmp_path, case):
    name, body = case.split(" ")[0], HOSTILE_TOKENIZER[case]
    folder = variant(hf, tmp_path)
    (folder / name).write_bytes(body)
    refused_cleanly(*hf_load(folder), expect=2)


def hostile_folders(hf, base):
    """Damaged GPT-2 folders, each refused by every entry point: {name: folder}."""
    def config_with(**changes):
        folder = variant(hf, base, f"config_{len(made)}")
        d = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({k: v for k, v in dict(d, **changes).items()
                                                        if v != "drop"}))
        return folder
    made = {}
    for key in ("n_embd", "n_layer", "vocab_size", "n_positions"):
        made[f"huge {key}"] = config_with(**{key: 10 ** 12})
    made["n_head 3"] = config_with(n_head=3)
    made["no n_layer"] = config_with(n_layer="drop")
    made["string n_embd"] = config_with(n_embd="16")
    made["architectures 7"] = config_with(model_type="bert", architectures=7)
    made["not utf-8"] = variant(hf, base, "utf8")
    (made["not utf-8"] / "config.json").write_bytes(b'{"model_type": "gpt2\xff"}')
    made["nan tensor"] = write_folder(base / "nan", dict(hf[1], **{"wte.weight": np.full_like(
        hf[1]["wte.weight"], np.nan)}))
    made["missing tensor"] = write_folder(base / "missing", {k: v for k, v in hf[1].items()
                                                             if k != "h.0.mlp.c_fc.bias"})
    made["truncated weights"] = variant(hf, base, "cut")
    weights = made["truncated weights"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    made["bad vocab"] = variant(hf, base, "vocab")
    (made["bad vocab"] / "vocab.json").write_text('{"a": "b"}')
    return made


def test_hostile_folders_through_the_repl_evaluate_and_export(hf, tmp_path):
    """Every hostile folder: exit 2 and an error line naming it, from the three entry points."""
    text = hf[2]
    with bounded_memory():
        for name, folder in hostile_folders(hf, tmp_path).items():
            argv = ["--checkpoint", str(folder), "--prompt", "x", "--max-new-tokens", "2"]
            rc, out, err = call(repl_code, argv)
            refused_cleanly(rc, out, err, expect=2)
            assert str(folder) in err, (name, err)
            rc, out, err = call(evaluate.main, [str(folder), "--data", str(text)])
            refused_cleanly(rc, out, err, expect=2)
            rc, out, err = call(export.main, [str(folder), str(tmp_path / "out")])
            refused_cleanly(rc, out, err, expect=2)
            assert not (tmp_path / "out" / "model.safetensors").exists(), name


def repl_code(argv):
    """repl.main's exit status (it prints its own error line), writing to the redirected streams."""
    return repl.main(argv, stdin=io.StringIO(""), stdout=sys.stdout, stderr=sys.stderr)


def test_the_valid_folder_works_through_the_three_entry_points(hf, tmp_path):
    """The fuzzed folder is sound: the REPL answers, evaluate scores, export writes (refusals mean faults)."""
    folder, _, text = hf
    refused_cleanly(*call(repl_code, ["--checkpoint", str(folder), "--prompt", "x", "--max-new-tokens", "2"]),
                    expect=0)
    refused_cleanly(*call(evaluate.main, [str(folder), "--data", str(text)]), expect=0)
    refused_cleanly(*call(export.main, [str(folder), str(tmp_path / "out")]), expect=0)


# ---- --task qa data files ----------------------------------------------------------------------------

record = st.one_of(
    st.fixed_dictionaries({"question": st.text(max_size=12), "answer": st.text(max_size=12)},
                          optional={"extra": json_value}),
    st.fixed_dictionaries({}, optional={"question": json_value, "answer": json_value}),
    json_value)
jsonl_line = st.one_of(record.map(json.dumps), st.text(max_size=30),
                       st.sampled_from(['{"question": "q", "answer": "a"}', "", " ", "\r", "[", "{",
                                        '{"question": NaN, "answer": Infinity}']))
tsv_line = st.one_of(st.lists(st.text(max_size=10), max_size=4).map("\t".join),
                     st.sampled_from(["question\tanswer", "q\ta", "\t", "q\t", "\ta", "q\ta\t", ""]))


def file_bytes(line):
    """Lines joined as a file, sometimes with invalid UTF-8 or \\r\\n endings."""
    return st.tuples(st.lists(line, max_size=6), st.sampled_from([b"\n", b"\r\n"]),
                     st.sampled_from([b"", b"\xff", b"\xc3", b"\xed\xa0\x80"])).map(
        lambda t: t[1].join(s.encode("utf-8", "surrogatepass") for s in t[0]) + t[2])


def pairs_read(path):
    """read_pairs inside the boundary; (rc, out, err)."""
    return loaded(read_pairs, path)


@pytest.mark.parametrize("suffix, line", [(".jsonl", jsonl_line), (".tsv", tsv_line)])
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_qa_files_through_the_reader(tmp_path, suffix, line, data):
    path = tmp_path / f"qa{suffix}"
    path.write_bytes(data.draw(file_bytes(line)))
    rc, out, err = pairs_read(path)
    refused_cleanly(rc, out, err)
    if rc == 0:                                             # accepted: every pair one line of text
        assert all(p.question and p.answer and "\n" not in p.question + p.answer for p in read_pairs(path))


HOSTILE_QA = {"deep.jsonl": b"[" * 100_000, "deep_object.jsonl": b'{"a":' * 100_000,
              "big_int.jsonl": b'{"question": ' + b"1" * 5000 + b', "answer": "a"}',
              "empty.jsonl": b"", "empty.tsv": b"", "blank.tsv": b"\n\n\r\n", "number.jsonl": b"3\n",
              "header_only.tsv": b"question\tanswer\n", "bom.jsonl": b"\xef\xbb\xbf[]",
              "huge_line.tsv": b"q" * (4 << 20),
              "huge_line.jsonl": b'{"question": "' + b"q" * (4 << 20) + b'"}'}


@pytest.mark.parametrize("name", sorted(HOSTILE_QA))
def test_hostile_qa_files_are_refused_by_the_reader(tmp_path, name):
    body = HOSTILE_QA[name]
    path = tmp_path / name
    path.write_bytes(body)
    with bounded_memory():
        refused_cleanly(*pairs_read(path), expect=2)


class ReachedTraining(BaseException):
    """The --task qa run got as far as its first training step: the data passed every check."""


def train_qa(path, tmp_path, monkeypatch):
    """train_step_by_step.py --task qa --data path in-process, stopped at the first step: (rc, out, err)."""
    def fit(self):
        raise ReachedTraining
    monkeypatch.setattr(qa.QATrainer, "fit", fit)
    argv = ["--task", "qa", "--data", str(path), "--preset", "tiny", "--context", "48", "--batch-size", "2",
            "--steps", "1", "--no-interactive", "--out", str(tmp_path / "run")]
    try:
        return call(train.main, argv)
    except ReachedTraining:
        return 0, "", ""


@pytest.mark.parametrize("suffix, line", [(".jsonl", jsonl_line), (".tsv", tsv_line)])
@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_qa_files_through_train_step_by_step(tmp_path, monkeypatch, suffix, line, data):
    path = tmp_path / f"qa{suffix}"
    path.write_bytes(data.draw(file_bytes(line)))
    refused_cleanly(*train_qa(path, tmp_path, monkeypatch))


def test_hostile_qa_files_through_train_step_by_step(tmp_path, monkeypatch):
    """The reader's hostile files, a FIFO and a directory named .jsonl: exit 2, an error line, no hang."""
    cases = {"deep.jsonl": b"[" * 100_000, "big_int.jsonl": b'{"question": ' + b"1" * 5000 + b"}",
             "empty.jsonl": b"", "header_only.tsv": b"question\tanswer\n", "one.tsv": b"q\ta\n",
             "long.tsv": b"q" * 200 + b"\ta\nq\ta\n"}
    for name, body in cases.items():
        (tmp_path / name).write_bytes(body)
    os.mkfifo(tmp_path / "fifo.jsonl")
    (tmp_path / "folder.jsonl").mkdir()
    for name in [*cases, "fifo.jsonl", "folder.jsonl"]:
        rc, out, err = train_qa(tmp_path / name, tmp_path, monkeypatch)
        refused_cleanly(rc, out, err, expect=2)
        assert name in err, err
    assert not (tmp_path / "run").exists()
    (tmp_path / "good.tsv").write_text("q\ta\nr\tb\ns\tc\n", encoding="utf-8")
    assert train_qa(tmp_path / "good.tsv", tmp_path, monkeypatch)[0] == 0   # a sound file reaches training
