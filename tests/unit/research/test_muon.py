"""Muon: Newton-Schulz orthogonalisation, which parameters it takes, state_dict, that it trains."""
import numpy as np
import pytest

from glassformer.layers.loss import CrossEntropyLoss
from glassformer.research import Muon, ToyConfig, build_toy_model, orthogonalize
from glassformer.research.muon import uses_muon

SHAPES = [(16, 64), (64, 16), (32, 48), (48, 32), (32, 32), (100, 30)]


@pytest.mark.parametrize("shape", SHAPES)
def test_quintic_newton_schulz_singular_values_near_one(shape, rng):
    G = rng.standard_normal(shape)
    O = orthogonalize(G)                                     # 5 quintic steps
    s = np.linalg.svd(O, compute_uv=False)
    assert O.shape == shape
    assert s.min() >= 0.65 and s.max() <= 1.2               # tolerance: s in [0.65, 1.2]
    U, _, Vt = np.linalg.svd(G, full_matrices=False)
    assert np.abs(O - U @ Vt).max() < 0.35                   # close to U V^T, not exactly


@pytest.mark.parametrize("shape", SHAPES)
def test_cubic_newton_schulz_converges_to_the_polar_factor(shape, rng):
    G = rng.standard_normal(shape)
    O = orthogonalize(G, steps=30, exact=True)
    s = np.linalg.svd(O, compute_uv=False)
    assert np.abs(s - 1).max() <= 1e-3
    U, _, Vt = np.linalg.svd(G, full_matrices=False)
    np.testing.assert_allclose(O, U @ Vt, atol=1e-3)
    few = np.linalg.svd(orthogonalize(G, steps=2, exact=True), compute_uv=False)
    assert np.abs(few - 1).max() > 1e-3                      # the steps matter


def test_orthogonalize_dtypes_and_zero(rng):
    G = rng.standard_normal((8, 12)).astype(np.float32)
    assert orthogonalize(G).dtype == np.float32
    assert orthogonalize(G.astype(np.float16)).dtype == np.float32   # computed in float32
    assert not orthogonalize(np.zeros((4, 6))).any()                  # no NaN from 0 / 0


def _toy(rng, **kw):
    config = ToyConfig(vocab_size=8, d_model=32, n_heads=2, n_ctx=8, **kw)
    return build_toy_model(config, rng)


def test_muon_takes_hidden_matrices_and_adamw_the_rest(rng):
    model = _toy(rng, model_type="transformer_1L")
    opt = Muon(model.named_parameters())
    assert set(opt.muon_names) == {"blocks.0.attn.qkv.W", "blocks.0.attn.proj.W",
                                   "blocks.0.mlp.fc1.W", "blocks.0.mlp.fc2.W"}
    assert {"tok_emb.W", "pos.P", "head.W", "blocks.0.attn.qkv.b", "blocks.0.ln1.gamma",
            "ln_f.beta"} <= set(opt.adamw_names)
    assert len(opt.muon_names) + len(opt.adamw_names) == len(model.get_parameters())
    assert not uses_muon("blocks.0.attn.proj.W", np.zeros((3, 3)), exclude=("proj",))


def test_muon_step_is_the_scaled_orthogonalised_gradient(rng):
    model = _toy(rng, model_type="transformer_1L")
    opt = Muon(model.named_parameters(), lr=0.1, nesterov=False)
    W, dW = model.blocks[0].mlp.fc1.W, model.blocks[0].mlp.fc1.dW       # (32, 128)
    dW[...] = rng.standard_normal(dW.shape)
    before = W.copy()
    opt.step()
    expected = before - 0.1 * np.sqrt(128 / 32) * orthogonalize(dW.copy())
    np.testing.assert_allclose(W, expected, rtol=1e-5, atol=1e-6)


def test_lr_schedule_moves_both_rates(rng):
    opt = Muon(_toy(rng).named_parameters(), lr=0.02, adamw_lr=1e-3)
    opt.lr = 0.01
    assert opt.adamw.lr == pytest.approx(5e-4)


def _previous_token_batch(rng, B=32, T=8):
    ids = rng.integers(0, 8, (B, T))
    targets = np.concatenate([np.full((B, 1), -1), ids[:, :-1]], axis=1)   # predict x[t-1]
    return ids, targets


def _train(model, opt, rng, steps):
    loss_fn = CrossEntropyLoss(ignore_index=-1)
    losses = []
    for _ in range(steps):
        ids, targets = _previous_token_batch(rng)
        opt.zero_grad()
        losses.append(float(loss_fn.forward(model.forward(ids), targets)))
        model.backward(loss_fn.backward())
        opt.step()
    return losses


def test_muon_trains_a_toy_model(rng):
    model = _toy(rng)
    losses = _train(model, Muon(model.named_parameters(), lr=0.02, adamw_lr=3e-3), rng, 60)
    assert losses[0] > 2.0 and losses[-1] < 0.3              # ln 8 = 2.08 -> near 0


def test_state_dict_round_trip_continues_identically(rng):
    a, b = _toy(np.random.default_rng(0)), _toy(np.random.default_rng(1))
    opt_a = Muon(a.named_parameters(), lr=0.02, adamw_lr=3e-3)
    _train(a, opt_a, np.random.default_rng(2), 5)
    opt_a.lr = 0.01
    b.load_state_dict({k: v.copy() for k, v in a.state_dict().items()})
    opt_b = Muon(b.named_parameters(), lr=0.5, adamw_lr=3e-3)
    state = opt_a.state_dict()
    assert set(state) == {"t", "lr", "arrays", "adamw_lr"} and "adamw.m.0" in state["arrays"]
    opt_b.load_state_dict({**state, "arrays": {k: v.copy() for k, v in state["arrays"].items()}})
    assert opt_b.t == opt_b.adamw.t == 5 and opt_b.adamw.lr == pytest.approx(opt_a.adamw.lr)
    la = _train(a, opt_a, np.random.default_rng(3), 3)
    lb = _train(b, opt_b, np.random.default_rng(3), 3)
    np.testing.assert_allclose(la, lb, rtol=1e-6)
