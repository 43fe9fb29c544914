"""The Layer contract (layers/base.py), on every layer: shapes, live parameter arrays, gradients that
accumulate, named parameters, state dicts, dtypes, train and eval."""
import numpy as np
import pytest

from glassformer.errors import UserError
from glassformer.layers import Embedding, FeedForward, LayerNorm, Linear, TransformerBlock


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


