"""The safetensors reader/writer: round trips, bfloat16 by bit shifts, and every malformed header refused."""
import json
import os
import struct
import tracemalloc

import numpy as np
import pytest

from glassformer.checkpoint.safetensors import (MAX_HEADER_BYTES, SafeTensors, bf16_to_f32, f32_to_bf16,
                                                load_safetensors, read_header, save_safetensors)
from glassformer.errors import UserError


def raw_file(path, header, data=b"", length=None):
    """A file of our own bytes: the length (given, or the header's), the header (dict or bytes), data."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head) if length is None else length) + head + data)
    return path


def f32(n):
    return {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}


# ---- round trips ----------------------------------------------------------------------------------

def test_round_trip_of_every_dtype_and_the_metadata(tmp_path, rng):
    tensors = {"w": rng.standard_normal((3, 5)).astype(np.float32),
               "h": rng.standard_normal(7).astype(np.float16), "d": rng.standard_normal((2, 2)),
               "i": np.arange(6, dtype=np.int64).reshape(2, 3), "u": np.arange(4, dtype=np.uint8),
               "m": np.array([True, False, True]), "empty": np.zeros((0, 4), np.float32),
               "s": np.float32(2.5)}
    path = save_safetensors(tmp_path / "a.safetensors", tensors, metadata={"format": "pt"})
    back = load_safetensors(path)
    assert sorted(back) == sorted(tensors)
    for name, a in tensors.items():
        assert back[name].dtype == np.asarray(a).dtype and back[name].shape == np.shape(a)
        assert np.array_equal(back[name], a)
    assert SafeTensors(path).metadata == {"format": "pt"}
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]      # atomic: no temp left


def test_the_layout_is_the_format_s(tmp_path):
    """8-byte little-endian length, JSON header padded with spaces to 8, data back to back, little-endian."""
    path = save_safetensors(tmp_path / "a.safetensors", {"b": np.array([1.0], ">f4"), "a": np.ones(2)})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0 and raw[8 + n - 1:8 + n] in (b" ", b"}")
    header = json.loads(raw[8:8 + n])
    assert header["a"] == {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}
    assert header["b"] == {"dtype": "F32", "shape": [1], "data_offsets": [16, 20]}
    assert raw[8 + n + 16:] == struct.pack("<f", 1.0)      # a big-endian array is written little-endian


@pytest.mark.parametrize("dtype,tol", [("F32", 0), ("F16", 1e-3), ("BF16", 1e-2)])
def test_writing_as_f32_f16_bf16_reads_back_as_floats(tmp_path, rng, dtype, tol):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    path = save_safetensors(tmp_path / "a.safetensors", {"x": x, "n": np.arange(3)}, dtype=dtype)
    st = SafeTensors(path)
    assert st.entries["x"].dtype == dtype and st.entries["n"].dtype == "I64"   # only floats are cast
    y = st.read("x")
    assert y.dtype == (np.float16 if dtype == "F16" else np.float32)
    assert np.allclose(y, x, rtol=tol, atol=0)
    again = save_safetensors(tmp_path / "b.safetensors", {"x": y}, dtype=dtype)
    assert np.array_equal(SafeTensors(again).read("x"), y)             # representable: exact


def test_bfloat16_is_float32_s_upper_half_rounded_to_nearest_even():
    x = np.array([1.0, -2.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, np.inf, -np.inf, 0.0,
                  3.4e38], np.float32)
    bits = f32_to_bf16(x)
    assert bits.dtype == np.uint16
    assert list(bits) == [0x3F80, 0xC000, 0x3F80, 0x3F82, 0x3F81, 0x7F80, 0xFF80, 0, 0x7F80]
    assert list(bf16_to_f32(bits)) == [1.0, -2.0, 1.0, 1 + 2 ** -6, 1 + 2 ** -7, np.inf, -np.inf, 0.0,
                                       np.inf]
    nan = f32_to_bf16(np.array([np.nan, -np.nan], np.float32))
    assert np.isnan(bf16_to_f32(nan)).all()                  # NaN stays NaN, never rounds to inf


def test_a_bf16_file_of_our_bytes_reads_as_float32(tmp_path):
    bits = np.array([0x3F80, 0x4049, 0xBF00], np.uint16)         # 1.0, 3.140625, -0.5
    path = raw_file(tmp_path / "a.safetensors", {"x": {"dtype": "BF16", "shape": [3],
                                                       "data_offsets": [0, 6]}}, bits.tobytes())
    assert list(load_safetensors(path)["x"]) == [1.0, 3.140625, -0.5]


def test_unwritable_values_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="cannot hold"):
        save_safetensors(tmp_path / "a", {"c": np.ones(2, np.complex64)})
    with pytest.raises(UserError, match="F32, F16 or BF16"):
        save_safetensors(tmp_path / "a", {"x": np.ones(2)}, dtype="Q4")
    with pytest.raises(UserError, match="strings only"):
        save_safetensors(tmp_path / "a", {"x": np.ones(2)}, metadata={"step": 3})
    assert not any(tmp_path.iterdir())


# ---- malformed files: one UserError each ---------------------------------------------------------

ENTRY = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
BAD_HEADERS = {
    "not JSON": (b"{not json", b"", "not valid JSON"),
    "not UTF-8": (b"\xff\xfe{}", b"", "not valid JSON"),
    "a JSON list": (b"[1, 2]", b"", "not an object"),
    "a repeated name": (b'{"x": %s, "x": %s}' % (json.dumps(ENTRY).encode(), json.dumps(ENTRY).encode()),
                        bytes(8), "twice"),
    "an entry that is not an object": ({"x": [1, 2]}, b"", "exactly the keys"),
    "a missing key": ({"x": {"dtype": "F32", "shape": [2]}}, bytes(8), "exactly the keys"),
    "an extra key": ({"x": dict(ENTRY, order="C")}, bytes(8), "exactly the keys"),
    "an unknown dtype": ({"x": dict(ENTRY, dtype="F8_E4M3")}, bytes(8), "does not read"),
    "a dtype that is a list": ({"x": dict(ENTRY, dtype=["F32"])}, bytes(8), "does not read"),   # fuzz
    "a dtype that is an object": ({"x": dict(ENTRY, dtype={"F32": 1})}, bytes(8), "does not read"),
    "a shape that is not a list": ({"x": dict(ENTRY, shape=2)}, bytes(8), "not a list of whole"),
    "a negative dimension": ({"x": dict(ENTRY, shape=[-2])}, bytes(8), "not a list of whole"),
    "a boolean dimension": ({"x": dict(ENTRY, shape=[True, 2])}, bytes(8), "not a list of whole"),
    "a fractional offset": ({"x": dict(ENTRY, data_offsets=[0, 8.0])}, bytes(8), "data_offsets"),
    "offsets past the end": ({"x": dict(ENTRY, data_offsets=[0, 16])}, bytes(8), "within the file"),
    "offsets reversed": ({"x": dict(ENTRY, data_offsets=[8, 0])}, bytes(8), "data_offsets"),
    "three offsets": ({"x": dict(ENTRY, data_offsets=[0, 4, 8])}, bytes(8), "data_offsets"),
    "a shape larger than its span": ({"x": dict(ENTRY, shape=[3])}, bytes(8), "needs 12 bytes"),
    "overlapping tensors": ({"x": ENTRY, "y": dict(ENTRY, data_offsets=[4, 12])}, bytes(12), "overlaps"),
    "a gap": ({"x": dict(ENTRY, data_offsets=[4, 12])}, bytes(12), "gap"),
    "trailing bytes": ({"x": ENTRY}, bytes(12), "trailing"),
    "metadata that is not strings": ({"__metadata__": {"step": 3}, "x": ENTRY}, bytes(8), "strings"),
    "metadata that is a list": ({"__metadata__": ["a"], "x": ENTRY}, bytes(8), "strings"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_a_malformed_header_is_one_user_error(tmp_path, case):
    header, data, message = BAD_HEADERS[case]
    path = raw_file(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(UserError, match=message) as e:
        SafeTensors(path)
    assert str(path) in str(e.value)


def test_a_deeply_nested_header_is_a_user_error(tmp_path):
    path = raw_file(tmp_path / "deep.safetensors", b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(UserError, match="not valid JSON"):
        SafeTensors(path)


@pytest.mark.parametrize("length", [0, 5, 1 << 40, (1 << 64) - 1])
def test_a_header_length_beyond_the_file_is_refused(tmp_path, length):
    path = raw_file(tmp_path / "a.safetensors", {"x": ENTRY}, bytes(8), length=length)
    with pytest.raises(UserError, match="header|JSON"):
        SafeTensors(path)


def test_short_missing_and_special_files_are_user_errors(tmp_path):
    (tmp_path / "short").write_bytes(b"\x01\x02")
    for path, message in [(tmp_path / "short", "too short"), (tmp_path / "none", "no such file"),
                          (tmp_path, "not a regular file")]:
        with pytest.raises(UserError, match=message):
            SafeTensors(path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)                                         # opening it would wait for a writer forever
    with pytest.raises(UserError, match="not a regular file"):
        SafeTensors(fifo)


def test_a_huge_claim_is_refused_before_anything_is_allocated(tmp_path):
    """A header over the bound, and a tensor whose shape claims terabytes, cost no memory to refuse."""
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as f:                              # a sparse 32 MiB file: room for the claim
        f.write(struct.pack("<Q", MAX_HEADER_BYTES + 8))
        f.truncate(32 << 20)
    huge = raw_file(tmp_path / "huge.safetensors",
                    {"x": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 8]}}, bytes(8))
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match="limit"):
            read_header(big)
        with pytest.raises(UserError, match="needs 4,398,046,511,104 bytes"):
            read_header(huge)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_tensor_is_mapped_from_the_file_copy_on_write(tmp_path, rng):
    x = rng.standard_normal((256, 256)).astype(np.float32)             # 256 KiB
    path = save_safetensors(tmp_path / "a.safetensors", {"x": x})
    before = path.read_bytes()
    st = SafeTensors(path)
    tracemalloc.start()
    try:
        y = st.read("x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(y, x) and peak < x.nbytes // 8     # a view of the mapped file, no read copy
    y[0, 0] += 1.0                                           # writable, but private:
    assert path.read_bytes() == before and np.array_equal(SafeTensors(path).read("x"), x)


def test_each_tensor_is_read_alone_from_its_offset(tmp_path, rng):
    x = rng.standard_normal((64, 64)).astype(np.float32)
    path = save_safetensors(tmp_path / "a.safetensors", {"a": np.ones(8), "x": x, "z": np.zeros(1 << 16)})
    st = SafeTensors(path)
    tracemalloc.start()
    try:
        y = st.read("x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(y, x) and peak < 2 * x.nbytes     # not the 512 KiB of "z"
    with open(path, "r+b") as f:                            # cut short after the header was checked
        f.truncate(os.path.getsize(path) - 8)
    with pytest.raises(UserError, match="cut short"):
        st.read("z")
