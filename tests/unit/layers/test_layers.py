"""Layers: shapes, known values, the parameter contract (live arrays, accumulation), state dicts."""
import numpy as np
import pytest

from glassformer.backend import to_numpy
from glassformer.errors import UserError
from glassformer.layers import (GELU, Dropout, Embedding, FeedForward, LayerNorm,
                                LearnedPositionalEmbedding, Linear, ReLU, SinusoidalPositionalEncoding,
                                Softmax, TransformerBlock, softmax)
from glassformer.layers.positional import sinusoidal_table


def on(xp, layer):
    """The layer with its parameters moved to xp's device."""
    return layer.to(xp.__name__)


# ---- shapes ---------------------------------------------------------------------------------

def test_shapes(xp, rng):
    x = xp.asarray(rng.standard_normal((2, 3, 8)), dtype=xp.float32)
    assert on(xp, Linear(8, 5, rng)).forward(x).shape == (2, 3, 5)
    assert on(xp, LayerNorm(8)).forward(x).shape == (2, 3, 8)
    assert on(xp, FeedForward(8, 16, rng)).forward(x).shape == (2, 3, 8)
    assert on(xp, TransformerBlock(8, 2, 16, rng)).forward(x).shape == (2, 3, 8)
    ids = xp.asarray([[0, 4, 4], [1, 2, 3]])
    assert on(xp, Embedding(5, 8, rng)).forward(ids).shape == (2, 3, 8)


def test_linear_computes_x_w_plus_b(rng):
    layer = Linear(4, 3, rng)
    layer.b[...] = [1.0, 2.0, 3.0]
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(layer.forward(x), x @ layer.W + layer.b, rtol=1e-6)
    no_bias = Linear(4, 3, rng, bias=False)
    assert [n for n, _ in no_bias.named_parameters()] == ["W"]


def test_linear_rejects_unknown_init(rng):
    with pytest.raises(ValueError, match="init"):
        Linear(2, 2, rng, init="bogus")


# ---- softmax and activations ----------------------------------------------------------------

def test_softmax_rows_sum_to_one(xp, rng):
    z = xp.asarray(rng.standard_normal((3, 4, 7)))
    p = to_numpy(softmax(z))
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
    assert (p > 0).all()
    np.testing.assert_allclose(to_numpy(softmax(z, axis=0)).sum(axis=0), 1.0, rtol=1e-12)


def test_softmax_is_stable_for_huge_logits(xp):
    z = xp.asarray([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4]], dtype=xp.float32)
    p = to_numpy(Softmax().forward(z))
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p[0], [1.0, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(p[1], [1 / 3] * 3, rtol=1e-6)


def test_softmax_matches_the_definition(rng):
    z = rng.standard_normal((2, 5))
    np.testing.assert_allclose(softmax(z), np.exp(z) / np.exp(z).sum(-1, keepdims=True), rtol=1e-12)


def test_relu_values(xp):
    x = xp.asarray([-2.0, -0.5, 0.0, 0.5, 3.0])
    layer = ReLU()
    np.testing.assert_array_equal(to_numpy(layer.forward(x)), [0, 0, 0, 0.5, 3.0])
    np.testing.assert_array_equal(to_numpy(layer.backward(xp.ones(5))), [0, 0, 0, 1, 1])


def test_gelu_values(xp):
    layer = GELU()
    out = to_numpy(layer.forward(xp.asarray([0.0, 10.0, -10.0, 1.0])))
    assert out[0] == 0.0
    assert out[1] == pytest.approx(10.0, abs=1e-9)         # GELU(large) = x
    assert out[2] == pytest.approx(0.0, abs=1e-9)          # GELU(very negative) = 0
    assert out[3] == pytest.approx(0.8411919906, abs=1e-6)  # tanh form at 1


# ---- LayerNorm ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-15), (np.float32, 2e-7)])
def test_gelu_sigmoid_form_equals_the_tanh_formula(dtype, tol):
    """gelu_forward computes x sigmoid(2u); it must be GPT-2's 0.5 x (1 + tanh u), and t = tanh u."""
    x = np.concatenate([np.linspace(-60, 60, 2001), [-1e4, 1e4, 0.0]]).astype(dtype)
    layer = GELU()
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # no warning, no NaN
        out = layer.forward(x)
    u = np.sqrt(2 / np.pi) * (x.astype(np.float64) + 0.044715 * x.astype(np.float64) ** 3)
    ref = 0.5 * x * (1 + np.tanh(u))
    assert out.dtype == dtype and np.all(np.isfinite(out))
    assert np.max(np.abs(out - ref) / (1 + np.abs(ref))) < tol
    assert np.max(np.abs(layer.t - np.tanh(u))) < 4 * tol


def test_layernorm_normalises_each_row(xp, rng):
    x = xp.asarray(5.0 + 3.0 * rng.standard_normal((4, 6, 32)))
    out = to_numpy(on(xp, LayerNorm(32).astype(np.float64)).forward(x))
    np.testing.assert_allclose(out.mean(axis=-1), 0.0, atol=1e-9)
    np.testing.assert_allclose(out.var(axis=-1), 1.0, rtol=1e-3)   # eps makes it just below 1


def test_layernorm_applies_gamma_and_beta(rng):
    ln = LayerNorm(4).astype(np.float64)
    x = rng.standard_normal((3, 4))
    base = ln.forward(x).copy()
    ln.gamma[...] = 2.0
    ln.beta[...] = [1.0, 0.0, -1.0, 0.5]
    np.testing.assert_allclose(ln.forward(x), 2 * base + ln.beta, rtol=1e-12)


# ---- Dropout --------------------------------------------------------------------------------

def test_dropout_eval_is_identity(rng):
    drop = Dropout(0.5, rng).eval()
    x = rng.standard_normal((4, 5))
    assert drop.forward(x) is x
    assert drop.backward(x) is x


def test_dropout_train_zeroes_about_p_and_keeps_the_expectation(xp):
    p = 0.3
    drop = Dropout(p, np.random.default_rng(1))
    out = to_numpy(drop.forward(xp.ones((200, 500))))
    assert abs((out == 0).mean() - p) < 0.01
    np.testing.assert_allclose(out[out != 0], 1.0 / (1.0 - p), rtol=1e-6)
    assert abs(out.mean() - 1.0) < 0.02
    dx = to_numpy(drop.backward(xp.ones((200, 500))))
    np.testing.assert_array_equal(dx, out)                 # backward uses the same mask


def test_dropout_same_seed_same_mask():
    x = np.ones((10, 10))
    a = Dropout(0.5, np.random.default_rng(7)).forward(x)
    b = Dropout(0.5, np.random.default_rng(7)).forward(x)
    c = Dropout(0.5, np.random.default_rng(8)).forward(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_dropout_rejects_bad_p(rng):
    with pytest.raises(ValueError):
        Dropout(1.0, rng)
    with pytest.raises(ValueError):
        Dropout(-0.1, rng)


# ---- Embedding and positions ----------------------------------------------------------------

def test_embedding_looks_up_rows_and_sums_repeated_ids(xp, rng):
    emb = on(xp, Embedding(5, 3, rng))
    ids = xp.asarray([[2, 2, 0], [2, 4, 0]])
    out = to_numpy(emb.forward(ids))
    np.testing.assert_array_equal(out[0, 0], to_numpy(emb.W)[2])
    dout = np.arange(18, dtype=np.float32).reshape(2, 3, 3)
    assert emb.backward(xp.asarray(dout)) is None
    dW = to_numpy(emb.dW)
    np.testing.assert_allclose(dW[2], dout[0, 0] + dout[0, 1] + dout[1, 0])
    np.testing.assert_allclose(dW[0], dout[0, 2] + dout[1, 2])
    np.testing.assert_allclose(dW[4], dout[1, 1])
    assert not dW[[1, 3]].any()


def test_sinusoidal_table_values():
    table = sinusoidal_table(10, 6)
    np.testing.assert_array_equal(table[0], [0, 1, 0, 1, 0, 1])
    assert table[3, 0] == pytest.approx(np.sin(3.0))
    assert table[3, 1] == pytest.approx(np.cos(3.0))
    assert table[5, 2] == pytest.approx(np.sin(5 / 10000 ** (2 / 6)))
    assert table[5, 5] == pytest.approx(np.cos(5 / 10000 ** (4 / 6)))
    assert sinusoidal_table(4, 5).shape == (4, 5)          # odd d_model works


def test_sinusoidal_encoding_adds_the_table(rng):
    pe = SinusoidalPositionalEncoding(8, 4)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    out = pe.forward(x, start=2)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out - x, np.broadcast_to(sinusoidal_table(8, 4)[2:5], x.shape),
                               rtol=1e-5, atol=1e-6)
    assert pe.backward(x) is x and pe.n_parameters() == 0
    with pytest.raises(ValueError, match="max_len"):
        pe.forward(x, start=6)


def test_learned_positional_embedding(rng):
    pos = LearnedPositionalEmbedding(8, 4, rng).astype(np.float64)
    x = rng.standard_normal((2, 3, 4))
    np.testing.assert_allclose(pos.forward(x, start=1), x + pos.P[1:4])
    dout = rng.standard_normal((2, 3, 4))
    pos.backward(dout)
    np.testing.assert_allclose(pos.dP[1:4], dout.sum(axis=0))
    assert not pos.dP[[0, 4, 5, 6, 7]].any()
    with pytest.raises(ValueError, match="max_len"):
        pos.forward(x, start=6)


# ---- the parameter contract -----------------------------------------------------------------

def _run_backward(layer, rng):
    """One forward+backward of a layer on fixed inputs (a fresh rng draws the same ones each call)."""
    r = np.random.default_rng(3)
    if isinstance(layer, Embedding):
        layer.forward(np.array([[0, 1, 1], [2, 0, 3]]))
    else:
        layer.forward(r.standard_normal((2, 3, 8)))
    layer.backward(r.standard_normal((2, 3, 8)))


@pytest.mark.parametrize("make", [
    lambda rng: Linear(8, 8, rng), lambda rng: LayerNorm(8), lambda rng: Embedding(4, 8, rng),
    lambda rng: TransformerBlock(8, 2, 16, rng),
], ids=["Linear", "LayerNorm", "Embedding", "TransformerBlock"])
def test_gradients_accumulate_and_zero_grad_zeroes(make, rng):
    layer = make(rng).astype(np.float64)
    _run_backward(layer, rng)
    once = [g.copy() for _, g in layer.get_parameters()]
    assert any(np.abs(g).sum() > 0 for g in once)
    _run_backward(layer, rng)
    for g1, (_, g2) in zip(once, layer.get_parameters()):
        np.testing.assert_allclose(g2, 2 * g1, rtol=1e-12, atol=1e-14)
    layer.zero_grad()
    assert all(not g.any() for _, g in layer.get_parameters())


def test_get_parameters_returns_live_arrays(rng):
    layer = Linear(3, 2, rng)
    params = layer.get_parameters()
    assert params[0][0] is layer.W and params[0][1] is layer.dW
    params[0][0][...] = 0.0                                # write through the returned array
    params[1][0][...] = 1.0
    np.testing.assert_array_equal(layer.forward(np.ones((1, 3), np.float32)), [[1.0, 1.0]])
    layer.zero_grad()
    assert layer.get_parameters()[0][1] is params[0][1]    # zero_grad keeps the same grad arrays


def test_named_parameters_of_a_block(rng):
    names = [n for n, _ in TransformerBlock(8, 2, 16, rng).named_parameters()]
    assert names[:4] == ["ln1.gamma", "ln1.beta", "attn.qkv.W", "attn.qkv.b"]
    assert "ffn.fc2.b" in names and len(names) == len(set(names))


def test_state_dict_round_trip(rng):
    a = TransformerBlock(8, 2, 16, np.random.default_rng(1))
    b = TransformerBlock(8, 2, 16, np.random.default_rng(2))
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    assert not np.allclose(a.forward(x), b.forward(x))
    live = [p for p, _ in b.get_parameters()]
    b.load_state_dict({k: v.copy() for k, v in a.state_dict().items()})
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    assert all(p is q for p, (q, _) in zip(live, b.get_parameters()))   # loaded in place


def test_load_state_dict_rejects_mismatches(rng):
    layer = Linear(3, 2, rng)
    before = layer.W.copy()
    with pytest.raises(UserError, match="shape"):
        layer.load_state_dict({"W": np.zeros((2, 3)), "b": np.zeros(2)})
    with pytest.raises(UserError, match=r"missing \['b'\]"):
        layer.load_state_dict({"W": np.zeros((3, 2))})
    with pytest.raises(UserError, match=r"unexpected \['c'\]"):
        layer.load_state_dict({"W": np.zeros((3, 2)), "b": np.zeros(2), "c": np.zeros(1)})
    np.testing.assert_array_equal(layer.W, before)         # nothing written on failure


def test_astype_float64(rng):
    block = TransformerBlock(8, 2, 16, rng).astype(np.float64)
    assert all(p.dtype == np.float64 and g.dtype == np.float64 for p, g in block.get_parameters())
    assert all(p.shape == g.shape for p, g in block.get_parameters())
    assert block.forward(rng.standard_normal((1, 2, 8))).dtype == np.float64
    assert all(g is getattr(block.attn.qkv, "d" + n)
               for n, (_, g) in block.attn.qkv.own_parameters().items())


def test_train_and_eval_propagate_to_children(rng):
    block = TransformerBlock(8, 2, 16, rng, dropout=0.5)
    block.eval()
    assert not block.training and not block.drop1.training and not block.ffn.fc1.training
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    np.testing.assert_array_equal(block.forward(x), block.forward(x))   # no dropout at eval
    block.train()
    assert block.drop1.training and block.drop2.training and block.attn.proj.training
    assert not np.array_equal(block.forward(x), block.forward(x))       # dropout at train


def test_the_base_Layer_has_no_backward_of_its_own():
    from glassformer.layers import Layer
    with pytest.raises(NotImplementedError):
        Layer().backward(np.zeros(3))


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 64), (4, 0), (0, 6)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_blas_sums_equal_numpys(rng, shape, dtype):
    """row_sum / row_mean / column_sum / axis_sum (x @ ones) give NumPy's sums, shapes included."""
    from glassformer.kernels.cpu.reduce import axis_sum, column_sum, row_mean, row_sum
    x = rng.standard_normal(shape).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    want = x.sum(axis=-1, keepdims=True)
    for got in (row_sum(x), axis_sum(x, -1), axis_sum(x, x.ndim - 1)):
        assert got.shape == want.shape and got.dtype == x.dtype
        np.testing.assert_allclose(got, want, **tol)
    if x.shape[-1]:
        np.testing.assert_allclose(row_mean(x), x.mean(axis=-1, keepdims=True), **tol)
    np.testing.assert_allclose(axis_sum(x, 0), x.sum(axis=0, keepdims=True), **tol)
    if x.ndim == 2:
        assert column_sum(x).shape == (x.shape[1],)
        np.testing.assert_allclose(column_sum(x), x.sum(axis=0), **tol)


def test_column_sum_adds_in_the_dtype_asked_for():
    """float16 rows summed in float32: 4096 ones give 4096, where a float16 sum would stall at 2048."""
    from glassformer.kernels.cpu.reduce import column_sum
    x = np.ones((4096, 2), np.float16)
    assert column_sum(x, np.float32).dtype == np.float32
    np.testing.assert_array_equal(column_sum(x, np.float32), [4096.0, 4096.0])


def test_the_vectors_of_ones_are_built_once_and_cannot_be_written():
    """reduce.ones caches NumPy's vectors (a hot path): the same read-only array for the same request."""
    from glassformer.kernels.cpu.reduce import ones
    v = ones(np, 5, "float32")
    assert v is ones(np, 5, np.float32) and v.dtype == np.float32 and v.tolist() == [1.0] * 5
    assert ones(np, 5, np.float64) is not v
    with pytest.raises(ValueError):
        v[0] = 2.0                                          # a caller's write would corrupt every sum


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 64), (4, 0), (0, 6)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_row_dots_equal_the_sum_of_the_product(rng, shape, dtype, monkeypatch):
    """row_dot / axis_dot give (a * b).sum(axis, keepdims=True), with vecdot and with einsum."""
    from glassformer.kernels.cpu import reduce
    a, b = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    want = (a * b).sum(axis=-1, keepdims=True)
    for got in (reduce.row_dot(a, b), reduce.axis_dot(a, b, -1)):
        assert got.shape == want.shape and got.dtype == a.dtype
        np.testing.assert_allclose(got, want, **tol)
    np.testing.assert_allclose(reduce.axis_dot(a, b, 0), (a * b).sum(axis=0, keepdims=True), **tol)
    monkeypatch.delattr(np, "vecdot", raising=False)        # NumPy 1.x: the einsum route
    np.testing.assert_allclose(reduce.row_dot(a, b), want, **tol)


def test_flat_tiles_cover_the_array_in_order(monkeypatch):
    from glassformer.kernels.cpu import tiling
    monkeypatch.setattr(tiling, "TILE", 4)
    tiles = tiling.flat_tiles(np.zeros((3, 5)))
    assert [(t.start, t.stop) for t in tiles] == [(0, 4), (4, 8), (8, 12), (12, 15)]
    assert [(t.start, t.stop) for t in tiling.flat_tiles(np.zeros(4))] == [(0, 4)]
    assert [(t.start, t.stop) for t in tiling.flat_tiles(np.zeros((0, 3)))] == [(0, 0)]


@pytest.mark.parametrize("dtypes", [("float32", "float32"), ("float64", "float64"), ("float32", "float64")])
def test_gelu_in_tiles_gives_the_numbers_of_one_pass(rng, dtypes, monkeypatch):
    """The CPU overlay's gelu_forward/backward on tiles of 7 (shorter last tile, odd shape) equal the
    one-tile result bit for bit, and the tiled backward is the derivative (a product of x and dout in
    mixed dtypes)."""
    from glassformer.kernels.cpu import activations, tiling
    forward, backward = activations.gelu_forward_cpu, activations.gelu_backward_cpu
    x = (4 * rng.standard_normal((5, 3, 11))).astype(dtypes[0])
    dout = rng.standard_normal(x.shape).astype(dtypes[1])
    monkeypatch.setattr(tiling, "TILE", 10 ** 9)
    y1, c1 = forward(x)
    dx1 = backward(dout, c1)
    monkeypatch.setattr(tiling, "TILE", 7)
    y7, c7 = forward(x)
    dx7 = backward(dout, c7)
    assert y7.shape == x.shape and dx7.shape == x.shape and dx7.dtype == np.result_type(x, dout)
    np.testing.assert_array_equal(y7, y1)
    np.testing.assert_array_equal(c7[1], c1[1])
    np.testing.assert_array_equal(dx7, dx1)
    x64 = x.astype(np.float64)
    h = 1e-6
    numeric = (forward(x64 + h)[0] - forward(x64 - h)[0]) / (2 * h)
    np.testing.assert_allclose(dx7, dout * numeric, rtol=1e-4 if "float32" in dtypes else 1e-7, atol=1e-5)
