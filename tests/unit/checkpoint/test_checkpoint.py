"""The checkpoint reader refuses hostile and damaged files before it allocates, one UserError each;
saving survives a full disk and Ctrl-C with the old file intact; each check is shown to fire.

HOSTILE builds the fixed corpus (tests/robustness/test_fuzz.py runs it through the REPL and --resume too).
"""
import errno
import io
import json
import os
import pickle
import signal
import struct
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from glassformer import checkpoint
from glassformer.checkpoint import load_checkpoint, read_meta, save_checkpoint
from glassformer.errors import UserError
from glassformer.files import temp_path
from glassformer.models import ModelConfig, build_model
from glassformer.optim.optimizers import Adam

VOCAB = ["[PAD]", "[EOS]"] + [str(d) for d in range(10)] + ["First", "Max", "(", ")", ",", "x", "y", "z"]
TOKENIZER = {"type": "word", "version": 1, "specials": VOCAB[:2], "words": VOCAB[2:], "unk": None}


def tiny_model(seed=0, **kw):
    cfg = ModelConfig(**{**dict(vocab_size=len(VOCAB), d_model=8, n_heads=2, n_layers=1, d_ff=16,
                                max_len=8), **kw})
    return build_model(cfg, np.random.default_rng(seed))


def save_real(path, seed=0):
    """A small, valid checkpoint with a tokenizer, an optimizer and an RNG state."""
    model = tiny_model(seed)
    opt = Adam(model.get_parameters(), lr=1e-3)
    return save_checkpoint(path, model, tokenizer=TOKENIZER, task={"name": "digits"}, optimizer=opt,
                           step=3, rng=np.random.default_rng(seed), metrics={"val_loss": 1.0})


# ---- building hostile files -------------------------------------------------------------------------

def npy(array, allow_pickle=False):
    """The bytes np.save writes for array."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(array), allow_pickle=allow_pickle)
    return buf.getvalue()


def members_of(path):
    """{member name: bytes} of a zip file, in order."""
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def write_zip(path, members):
    """A stored zip of {name: bytes} (what np.savez writes)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def meta_bytes(meta):
    return npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))


def with_meta(real, path, change):
    """real's arrays with its header changed by change(meta) (which may return a replacement)."""
    members = members_of(real)
    meta = json.loads(np.lib.format.read_array(io.BytesIO(members["__meta__.npy"])).tobytes())
    meta = change(meta) or meta
    members["__meta__.npy"] = meta_bytes(meta)
    return write_zip(path, members)


def json_npy(value):
    """The .npy bytes of value as UTF-8 JSON in a uint8 array (a header or the tokenizer entry)."""
    return npy(np.frombuffer(json.dumps(value).encode(), np.uint8))


def with_tokenizer(real, path, value):
    """real with its __tokenizer__ entry replaced by value as JSON (bytes: as they are)."""
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return with_member(real, path, "__tokenizer__.npy", npy(np.frombuffer(raw, np.uint8)))


def as_version_1(real, path, change=None):
    """real as version 1 wrote it: the tokenizer inside the header (changed by change), no entry of its own."""
    members = members_of(real)
    tokenizer = json.loads(np.lib.format.read_array(io.BytesIO(members.pop("__tokenizer__.npy"))).tobytes())
    meta = json.loads(np.lib.format.read_array(io.BytesIO(members["__meta__.npy"])).tobytes())
    meta.update(version=1, tokenizer=tokenizer)
    members["__meta__.npy"] = json_npy((change or (lambda m: None))(meta) or meta)
    return write_zip(path, members)


def with_member(real, path, name, data):
    """real with member name replaced by data (bytes), or removed (data None)."""
    members = members_of(real)
    if data is None:
        del members[name]
    else:
        members[name] = data
    return write_zip(path, members)


def patch_headers(path, name, flag=None, method=None):
    """Set the general-purpose flag and/or compression method of member name in both zip headers."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        local = z.getinfo(name).header_offset
    spots = [(local + 6, local + 8)]
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        n = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + n].decode() == name:
            spots.append((at + 8, at + 10))
        at = data.find(b"PK\x01\x02", at + 4)
    for flag_at, method_at in spots:
        if flag is not None:
            struct.pack_into("<H", data, flag_at, flag)
        if method is not None:
            struct.pack_into("<H", data, method_at, method)
    path.write_bytes(bytes(data))
    return path


def npy_header_only(shape, dtype="<f4", payload=b"\0" * 16):
    """A .npy header declaring shape, followed by a few bytes (far fewer than it declares)."""
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    text = repr(header).encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


class Evil:
    def __reduce__(self):                                   # would run if anything unpickled it
        return (os.system, ("echo PWNED",))


def set_config(**values):
    def change(meta):
        meta["config"].update(values)
    return change


def set_key(key, value):
    def change(meta):
        meta[key] = value
    return change


def deep_header(meta):
    meta["extra"] = {"x": json.loads("[" * 100 + "]" * 100)}   # parses, but nests past the limit
    return meta


EMB = "param/tok_emb.W.npy"
# name -> build(real, path): each a file glassformer must refuse with one UserError
HOSTILE = {
    "object_array": lambda r, p: with_member(r, p, EMB, npy(np.array([{}, "x"], dtype=object), True)),
    "pickle_member": lambda r, p: with_member(r, p, EMB, pickle.dumps(Evil())),
    "pickled_object_npy": lambda r, p: with_member(r, p, EMB, npy(np.array([Evil()], dtype=object), True)),
    "header_list": lambda r, p: with_member(r, p, "__meta__.npy", npy(np.frombuffer(b"[1, 2]", np.uint8))),
    "header_100k_deep": lambda r, p: with_member(r, p, "__meta__.npy", npy(np.frombuffer(
        b'{"format": "glassformer", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", np.uint8))),
    "header_deep": lambda r, p: with_meta(r, p, deep_header),
    "header_not_json": lambda r, p: with_member(r, p, "__meta__.npy", npy(np.frombuffer(b"\xff{", np.uint8))),
    "header_huge": lambda r, p: with_meta(r, p, set_key("pad", "x" * (2 << 20))),
    "header_float_array": lambda r, p: with_member(r, p, "__meta__.npy", npy(np.zeros(4))),
    "no_header": lambda r, p: with_member(r, p, "__meta__.npy", None),
    "config_is_list": lambda r, p: with_meta(r, p, set_key("config", [1, 2])),
    "vocab_is_text": lambda r, p: with_meta(r, p, set_config(vocab_size="20")),
    "vocab_is_bool": lambda r, p: with_meta(r, p, set_config(vocab_size=True)),
    "vocab_is_float": lambda r, p: with_meta(r, p, set_config(vocab_size=20.5)),
    "d_ff_negative": lambda r, p: with_meta(r, p, set_config(d_ff=-4)),
    "vocab_1e9": lambda r, p: with_meta(r, p, set_config(vocab_size=10 ** 9)),
    "max_len_1e7": lambda r, p: with_meta(r, p, set_config(max_len=10 ** 7)),
    "config_unknown_key": lambda r, p: with_meta(r, p, set_config(evil=1)),
    "step_is_text": lambda r, p: with_meta(r, p, set_key("step", "3")),
    "extra_is_list": lambda r, p: with_meta(r, p, set_key("extra", [])),
    "family_unknown": lambda r, p: with_meta(r, p, set_key("extra", {"family": "chess"})),
    "tokenizer_is_list": lambda r, p: with_tokenizer(r, p, ["a"]),
    "tokenizer_type_list": lambda r, p: with_tokenizer(r, p, {"type": ["word"]}),
    "tokenizer_garbage": lambda r, p: with_tokenizer(r, p, {"type": "word", "words": 5}),
    "tokenizer_not_json": lambda r, p: with_tokenizer(r, p, b"\xff{"),
    "tokenizer_100k_deep": lambda r, p: with_tokenizer(r, p, b"[" * 100_000 + b"]" * 100_000),
    "tokenizer_deep": lambda r, p: with_tokenizer(r, p, {**TOKENIZER, "x": json.loads("[" * 100 + "]" * 100)}),
    "tokenizer_float_array": lambda r, p: with_member(r, p, "__tokenizer__.npy", npy(np.zeros(4))),
    "tokenizer_twice": lambda r, p: with_meta(r, p, set_key("tokenizer", TOKENIZER)),
    "vocab_over_embedding": lambda r, p: with_tokenizer(r, p, {
        **TOKENIZER, "words": TOKENIZER["words"] + [f"w{i}" for i in range(30)]}),
    "v1_vocab_over_embedding": lambda r, p: as_version_1(r, p, set_key("tokenizer", {
        **TOKENIZER, "words": TOKENIZER["words"] + [f"w{i}" for i in range(30)]})),
    "v1_tokenizer_garbage": lambda r, p: as_version_1(r, p, set_key("tokenizer", {"type": "word", "words": 5})),
    "rng_state_bad": lambda r, p: with_meta(r, p, set_key("rng_state", {"bit_generator": "MT19937"})),
    "optimizer_meta_bad": lambda r, p: with_meta(r, p, set_key("optimizer", {"class": "Adam", "t": -1,
                                                                             "lr": 1e-3})),
    "format_other": lambda r, p: with_meta(r, p, set_key("format", "pytorch")),
    "version_3": lambda r, p: with_meta(r, p, set_key("version", 3)),
    "version_0": lambda r, p: as_version_1(r, p, set_key("version", 0)),
    "missing_array": lambda r, p: with_member(r, p, EMB, None),
    "misshaped_array": lambda r, p: with_member(r, p, EMB, npy(np.zeros((3, 3), np.float32))),
    "extra_array": lambda r, p: with_member(r, p, "param/evil.npy", npy(np.zeros(3, np.float32))),
    "int_weights": lambda r, p: with_member(r, p, EMB, npy(np.zeros((len(VOCAB), 8), np.int32))),
    "nan_weights": lambda r, p: with_member(r, p, EMB, npy(np.full((len(VOCAB), 8), np.nan, np.float32))),
    "inf_adam_state": lambda r, p: with_member(r, p, "optim/v.0.npy",
                                               npy(np.full((len(VOCAB), 8), np.inf, np.float32))),
    "huge_adam_state": lambda r, p: with_member(r, p, "optim/v.0.npy", npy(np.zeros(10 ** 5, np.float32))),
    "structured_dtype": lambda r, p: with_member(r, p, EMB, npy(np.zeros(
        (len(VOCAB), 8), [("a", "<f2"), ("b", "<f2")]))),
    "string_dtype": lambda r, p: with_member(r, p, EMB, npy(np.full((len(VOCAB), 8), "ab"))),
    "big_endian": lambda r, p: with_member(r, p, EMB, npy(np.zeros((len(VOCAB), 8), ">f4"))),
    "shape_4tib": lambda r, p: with_member(r, p, EMB, npy_header_only((2 ** 40,))),
    "shape_negative": lambda r, p: with_member(r, p, EMB, npy_header_only((-5, 8))),
    "npy_version_9": lambda r, p: with_member(r, p, EMB, b"\x93NUMPY\x09\x00" + b"\0" * 200),
    "member_not_npy": lambda r, p: with_member(r, p, "readme.txt", b"hello"),
    "member_twice": lambda r, p: write_zip(p, {**members_of(r)}) and _twice(p, EMB),
    "encrypted_member": lambda r, p: patch_headers(save_real(p), EMB, flag=0x1),
    "unknown_compression": lambda r, p: patch_headers(save_real(p), EMB, method=99),
    "deflated_members": lambda r, p: _deflated(r, p),
    "empty_file": lambda r, p: write(p, b""),
    "random_bytes": lambda r, p: write(p, np.random.default_rng(0).bytes(4000)),
    "zeros": lambda r, p: write(p, bytes(4000)),
    "truncated": lambda r, p: write(p, r.read_bytes()[:-300]),
    "cut_in_half": lambda r, p: write(p, r.read_bytes()[:len(r.read_bytes()) // 2]),
    "npy_not_npz": lambda r, p: write(p, npy(np.zeros(5))),
    "a_folder": lambda r, p: p.mkdir() or p,
}


def write(path, data):
    path.write_bytes(data)
    return path


def _twice(path, name):
    """Append a second member of the same name."""
    with zipfile.ZipFile(path, "a") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")                     # zipfile warns: "Duplicate name"
        z.writestr(name, npy(np.zeros((len(VOCAB), 8), np.float32)))
    return path


def _deflated(real, path):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members_of(real).items():
            z.writestr(name, data)
    return path


def build_hostile(folder, real):
    """{name: path} of every HOSTILE file, plus /dev/zero and a named pipe (where the OS has them)."""
    out = {}
    for name, build in HOSTILE.items():
        path = folder / f"{name}.npz"
        out[name] = build(real, path)
    if os.path.exists("/dev/zero"):
        out["dev_zero"] = "/dev/zero"
    if hasattr(os, "mkfifo"):
        fifo = folder / "fifo.npz"
        os.mkfifo(fifo)                                     # opening it would block: never opened
        out["fifo"] = fifo
    return out


def bit_flips(real, n, seed=0):
    """n copies of real's bytes, each with one random bit flipped: (position, bytes)."""
    data, rng = real.read_bytes(), np.random.default_rng(seed)
    for pos in rng.choice(len(data) * 8, size=n, replace=False):
        flipped = bytearray(data)
        flipped[pos // 8] ^= 1 << (pos % 8)
        yield int(pos), bytes(flipped)


# ---- the tests --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return save_real(tmp_path_factory.mktemp("real") / "real.npz")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, real):
    return build_hostile(tmp_path_factory.mktemp("hostile"), real)


@pytest.fixture
def alarm():
    """Fail (not hang) a test that takes over 20 s: a loader must never block on a pipe or device."""
    def timeout(signum, frame):
        raise TimeoutError("the loader hung")
    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_real_checkpoint_loads_and_round_trips(real):
    ckpt = load_checkpoint(real)
    model = tiny_model(0)
    assert all(np.array_equal(ckpt.model.state_dict()[n], p) for n, p in model.state_dict().items())
    assert ckpt.step == 3 and ckpt.optimizer_state["class"] == "Adam"
    assert ckpt.rng().integers(1 << 30) == np.random.default_rng(0).integers(1 << 30)
    meta, archive = read_meta(real)
    assert meta["format"] == "glassformer" and "param/tok_emb.W" in archive.files
    assert archive["param/tok_emb.W"].shape == (len(VOCAB), 8)


def test_the_model_alone_loads_without_the_optimizer_state(real):
    """optimizer=False (chat, sampling, export): the same model, no moments kept."""
    ckpt, full = load_checkpoint(real, optimizer=False), load_checkpoint(real)
    assert ckpt.optimizer_state == {} and full.optimizer_state["arrays"]
    assert all(np.array_equal(ckpt.model.state_dict()[n], p) for n, p in full.model.state_dict().items())


@pytest.mark.parametrize("optimizer", [True, False])          # False: the model alone, still checked
@pytest.mark.parametrize("name", list(HOSTILE) + ["dev_zero", "fifo"])
def test_every_hostile_file_is_one_user_error_naming_it(hostile, name, optimizer, alarm, capfd):
    if name not in hostile:
        pytest.skip(f"no {name} on this system")
    with pytest.raises(UserError) as e:
        load_checkpoint(hostile[name], optimizer=optimizer)
    message = str(e.value)
    assert str(hostile[name]) in message and "\n" not in message and "Traceback" not in message
    assert "PWNED" not in capfd.readouterr().out            # nothing was unpickled


@pytest.mark.parametrize("name,words", [
    ("object_array", "plain little-endian numbers"), ("pickle_member", "not a readable .npy"),
    ("structured_dtype", "no objects, records or pickles"), ("big_endian", "little-endian"),
    ("header_list", "JSON list, not an object"), ("header_100k_deep", "not valid JSON"),
    ("header_deep", "deeper than 64"), ("header_huge", "at most 1048576 bytes"),
    ("vocab_is_text", "config.vocab_size is '20', not a whole number >= 0"),
    ("vocab_is_bool", "vocab_size is True"), ("vocab_1e9", "describes a model of up to"),
    ("step_is_text", "header.step"), ("missing_array", "missing ['tok_emb.W']"),
    ("misshaped_array", "has shape (3, 3)"), ("int_weights", "not floating point"),
    ("nan_weights", "non-finite values"), ("inf_adam_state", "'optim/v.0' holds"),
    ("huge_adam_state", "larger than any parameter"),
    ("vocab_over_embedding", "tokenizer has 50 tokens but the embedding only 20 rows"),
    ("v1_vocab_over_embedding", "tokenizer has 50 tokens but the embedding only 20 rows"),
    ("tokenizer_is_list", "the checkpoint's tokenizer is a JSON list, not an object"),
    ("tokenizer_type_list", "tokenizer.type is ['word'], not a string"),
    ("tokenizer_not_json", "the checkpoint's tokenizer: not valid JSON (not UTF-8 text"),
    ("tokenizer_100k_deep", "the checkpoint's tokenizer: not valid JSON (nested too deeply)"),
    ("tokenizer_deep", "the checkpoint's tokenizer: not valid JSON (nested too deeply), deeper than 64"),
    ("tokenizer_float_array", "the __tokenizer__ entry is not a JSON tokenizer (a float64 array"),
    ("tokenizer_twice", "both in its header and in its __tokenizer__ entry"),
    ("version_3", "version 3 is not supported (this glassformer reads versions 1 to 2)"),
    ("shape_4tib", "(4,398,046,511,104 bytes) but holds 16"), ("encrypted_member", "is encrypted"),
    ("unknown_compression", "compressed (zip method 99)"), ("deflated_members", "compressed (zip method 8)"),
    ("member_not_npy", "is not a .npy array"), ("member_twice", "appears twice"),
    ("rng_state_bad", "random-generator state"), ("optimizer_meta_bad", "header.optimizer.t is -1"),
    ("empty_file", "not a readable .npz"), ("truncated", ".npz"), ("a_folder", "folder"),
    ("fifo", "named pipe"), ("dev_zero", "character device")])
def test_the_message_says_what_is_wrong(hostile, name, words, alarm):
    if name not in hostile:
        pytest.skip(f"no {name} on this system")
    with pytest.raises(UserError) as e:
        load_checkpoint(hostile[name])
    assert words in str(e.value), str(e.value)


# ---- the tokenizer in its own entry (format version 2) ----------------------------------------------

SHIPPED = Path(__file__).resolve().parents[3] / "checkpoints"


def big_word_tokenizer(n):
    """A word tokenizer of n words: at 150,000 its JSON is about 1.7 MB, GPT-2's size, over the header's
    1 MiB."""
    return {"type": "word", "version": 1, "specials": ["[PAD]"], "words": [f"w{i:06d}" for i in range(n)],
            "unk": None}


def test_a_tokenizer_larger_than_the_header_bound_round_trips(tmp_path):
    """The issue: a 1.7 MB tokenizer made the checkpoint unreadable; now it is its own entry, the
    header stays small, and the tokenizer comes back equal."""
    tok = big_word_tokenizer(150_000)
    model = tiny_model(vocab_size=150_001, d_model=4, d_ff=8)
    path = save_checkpoint(tmp_path / "big.npz", model, tokenizer=tok, task={"name": "lm"})
    assert len(json.dumps(tok)) > checkpoint.MAX_HEADER_BYTES
    members = members_of(path)
    assert len(members["__meta__.npy"]) < 10_000 and "__tokenizer__.npy" in members
    ckpt = load_checkpoint(path)
    assert ckpt.tokenizer == tok and ckpt.meta["version"] == 2 and ckpt.step == 0
    meta, archive = read_meta(path)
    archive.close()
    assert meta["tokenizer"] == tok


def test_version_1_checkpoints_still_load(real, tmp_path):
    """Version 1 kept the tokenizer inside the header: such a file loads as it did."""
    old = as_version_1(real, tmp_path / "v1.npz")
    assert "__tokenizer__.npy" not in members_of(old)
    ckpt = load_checkpoint(old)
    assert ckpt.meta["version"] == 1 and ckpt.tokenizer == TOKENIZER
    assert all(np.array_equal(a, b) for a, b in zip(ckpt.model.state_dict().values(),
                                                    load_checkpoint(real).model.state_dict().values()))


@pytest.mark.parametrize("name", ["digits", "sentences", "shakespeare_char"])
def test_the_shipped_version_1_checkpoints_load(name):
    path = SHIPPED / f"{name}.npz"
    if not path.exists():
        pytest.skip(f"checkpoints/{name}.npz not shipped")
    ckpt = load_checkpoint(path, optimizer=False)
    assert ckpt.meta["version"] == 1 and ckpt.tokenizer["type"] in ("word", "char")


def test_the_header_is_checked_before_the_tokenizer(real, tmp_path):
    """A bad header is reported, not the bad tokenizer entry after it: the small part is read first."""
    both = with_tokenizer(real, tmp_path / "both_bad.npz", b"\xff{")
    both = with_meta(both, tmp_path / "both_bad2.npz", set_key("format", "pytorch"))
    with pytest.raises(UserError, match="format 'pytorch'"):
        load_checkpoint(both)


def test_the_tokenizer_entry_has_its_own_bound(real, tmp_path, monkeypatch):
    """Over its bound the entry is refused from its .npy header (never read), and never saved."""
    monkeypatch.setitem(checkpoint.PARTS, "tokenizer", ("__tokenizer__", 100, checkpoint.TOKENIZER_SCHEMA))
    with pytest.raises(UserError, match="not a JSON tokenizer .* at most 100 bytes expected"):
        load_checkpoint(real)
    with pytest.raises(UserError, match="tokenizer is .* bytes of JSON, over its limit of 100"):
        save_real(tmp_path / "new.npz")
    assert list(tmp_path.iterdir()) == []


def test_a_header_over_its_bound_is_never_saved(tmp_path):
    """A checkpoint that read_meta would refuse is not written: the save says why instead."""
    with pytest.raises(UserError, match="header is .* bytes of JSON, over its limit of 1,048,576"):
        save_checkpoint(tmp_path / "huge.npz", tiny_model(), extra={"pad": "x" * (2 << 20)})
    assert list(tmp_path.iterdir()) == []


def test_a_declared_4tib_array_costs_no_memory(hostile):
    """The shape is checked against the bytes the file holds before anything is allocated."""
    tracemalloc.start()
    try:
        for name in ("shape_4tib", "vocab_1e9", "max_len_1e7", "huge_adam_state"):
            with pytest.raises(UserError):
                load_checkpoint(hostile[name])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 << 20, f"peak {peak / 2**20:.0f} MiB"


def test_size_bound_covers_every_family():
    """parameter_bound is an upper bound on what each family's builder allocates as parameters."""
    from glassformer.models import lm_config
    from glassformer.research import EncoderDecoderConfig, ToyConfig
    configs = [lm_config("tiny", 65), ModelConfig(vocab_size=20, n_layers=3, d_ff=1000),
               ToyConfig(vocab_size=30, n_blocks=3, d_mlp=512),
               EncoderDecoderConfig(vocab_size=40, tgt_vocab_size=50, n_layers=2, n_decoder_layers=3)]
    for cfg in configs:
        family = {ToyConfig: "toy", EncoderDecoderConfig: "encoder_decoder"}.get(type(cfg), "decoder_lm")
        n = checkpoint.FAMILIES[family][1](cfg, np.random.default_rng(0)).n_parameters()
        assert n <= checkpoint.parameter_bound(cfg) <= 4 * n + (16 << 20), type(cfg).__name__


def test_bit_flips_are_user_errors_or_harmless(real):
    """Single-bit flips: each is refused (CRC, headers, JSON) or lands where nothing is read."""
    want = load_checkpoint(real).model.state_dict()
    refused = 0
    for i, (pos, data) in enumerate(bit_flips(real, 100)):
        path = real.with_name(f"flip{i}.npz")
        path.write_bytes(data)
        try:
            got = load_checkpoint(path).model.state_dict()
        except UserError:
            refused += 1
        else:
            assert all(np.array_equal(got[n], want[n]) for n in want), f"bit {pos} changed a weight"
    assert refused >= 80


# ---- saving: atomic, disk full, Ctrl-C, stale temps ---------------------------------------------------

def test_a_full_disk_is_one_error_and_the_old_checkpoint_stays(tmp_path, monkeypatch):
    path = save_real(tmp_path / "best.npz")
    before = path.read_bytes()

    def full(f, **arrays):
        f.write(b"PK partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(checkpoint.np, "savez", full)
    with pytest.raises(UserError, match="No space left on device.*old file is unchanged"):
        save_real(path, seed=1)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.npz"]          # no temp left


def test_ctrl_c_while_saving_leaves_the_old_file(tmp_path, monkeypatch):
    path = save_real(tmp_path / "best.npz")
    before = path.read_bytes()

    def interrupted(f, **arrays):
        f.write(b"PK half")
        raise KeyboardInterrupt
    monkeypatch.setattr(checkpoint.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_real(path, seed=1)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["best.npz"]


def test_stale_temps_of_dead_writers_are_removed(tmp_path):
    dead = tmp_path / ".best.npz.999999999.abcd1234.tmp"    # no process has this id
    alive = tmp_path / f".best.npz.{os.getppid()}.abcd1234.tmp"   # our parent is alive: kept
    other = tmp_path / ".last.npz.999999999.abcd1234.tmp"  # another file's temp: not this write's
    for p in (dead, alive, other):
        p.write_bytes(b"half")
    save_real(tmp_path / "best.npz")
    assert not dead.exists() and alive.exists() and other.exists()
    assert temp_path(tmp_path / "best.npz") != temp_path(tmp_path / "best.npz")   # unique names
