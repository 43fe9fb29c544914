"""optim/optimizers.py: the optimizers against their textbook formulas; the decay mask; state round
trip; flat parameter buffers; the learning-rate schedule; gradient clipping (the global norm, exact in
float64, float16 summed in float32, float32 accurate at any length)."""
import math

import numpy as np
import pytest

from glassformer.layers import Linear
from glassformer.models import DecoderLM, ModelConfig
from glassformer.optim.optimizers import (SGD, Adam, AdamW, clip_grad_norm, decay_mask, grad_norm,
                                          sum_squares, warmup_cosine)


def pair(rng, shape=(3, 4)):
    """One (param, grad) pair of float64 arrays."""
    return rng.standard_normal(shape), np.zeros(shape)


def test_sgd_without_momentum_is_exact(rng):
    p, g = pair(rng)
    opt = SGD([(p, g)], lr=0.1)
    for _ in range(3):
        g[...] = rng.standard_normal(g.shape)
        expected = p - 0.1 * g
        opt.step()
        np.testing.assert_array_equal(p, expected)
    assert opt.t == 3


def test_sgd_momentum(rng):
    p, g = pair(rng)
    p0 = p.copy()
    g1, g2 = rng.standard_normal(p.shape), rng.standard_normal(p.shape)
    opt = SGD([(p, g)], lr=0.1, momentum=0.9)
    g[...] = g1
    opt.step()
    g[...] = g2
    opt.step()
    expected = p0 - 0.1 * g1 - 0.1 * (0.9 * g1 + g2)        # v1 = g1, v2 = 0.9 v1 + g2
    np.testing.assert_allclose(p, expected, rtol=1e-12)


def test_sgd_weight_decay_is_l2(rng):
    p, g = pair(rng)
    g[...] = rng.standard_normal(g.shape)
    expected = p - 0.1 * (g + 0.01 * p)
    SGD([(p, g)], lr=0.1, weight_decay=0.01).step()
    np.testing.assert_allclose(p, expected, rtol=1e-12)


def test_sgd_updates_a_layer_in_place(rng):
    layer = Linear(3, 2, rng).astype(np.float64)
    W, W0 = layer.W, layer.W.copy()
    layer.dW[...] = 1.0
    SGD(layer.get_parameters(), lr=0.5).step()
    assert layer.W is W                                    # the same array, updated in place
    np.testing.assert_array_equal(layer.W, W0 - 0.5)


def test_adam_first_step_moves_by_lr_times_sign(rng):
    p, g = pair(rng)
    p0 = p.copy()
    g[...] = rng.standard_normal(g.shape)
    Adam([(p, g)], lr=1e-2).step()
    np.testing.assert_allclose(p - p0, -1e-2 * np.sign(g), rtol=1e-5)


def reference_adam(p, grads, lr, b1, b2, eps, wd, decoupled):
    """The textbook Adam / AdamW loop (Kingma & Ba 2015; Loshchilov & Hutter 2019)."""
    p = p.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if wd and not decoupled:
            g = g + wd * p                                  # L2: decay enters the gradient
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        decay = lr * wd * p if decoupled else 0.0
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps) - decay
    return p


@pytest.mark.parametrize("cls,wd", [(Adam, 0.0), (Adam, 0.1), (AdamW, 0.1)],
                         ids=["Adam", "Adam-L2", "AdamW"])
def test_adam_matches_the_textbook_over_5_steps(rng, cls, wd):
    p, g = pair(rng)
    grads = [rng.standard_normal(p.shape) * 10.0 ** -k for k in range(5)]   # small grads: eps matters
    expected = reference_adam(p, grads, 1e-2, 0.9, 0.98, 1e-4, wd, cls is AdamW)
    opt = cls([(p, g)], lr=1e-2, betas=(0.9, 0.98), eps=1e-4, weight_decay=wd)
    for gi in grads:
        g[...] = gi
        opt.step()
    np.testing.assert_allclose(p, expected, rtol=1e-10, atol=1e-14)


def test_adamw_decay_is_decoupled(rng):
    p, g = pair(rng)
    p0 = p.copy()
    opt = AdamW([(p, g)], lr=0.1, weight_decay=0.5)
    opt.step()                                              # zero gradient: only the decay acts
    np.testing.assert_allclose(p, p0 * (1 - 0.1 * 0.5), rtol=1e-12)
    opt.step()
    np.testing.assert_allclose(p, p0 * (1 - 0.1 * 0.5) ** 2, rtol=1e-12)


def test_decay_mask_excludes_biases_norms_and_embeddings(rng):
    for positional in ("sinusoidal", "learned"):
        model = DecoderLM(ModelConfig(vocab_size=9, kind="decoder_lm", d_model=8, n_heads=2,
                                      n_layers=1, d_ff=16, max_len=8, norm_first=True,
                                      positional=positional), rng)
        named = model.named_parameters()
        decayed = {n for (n, _), d in zip(named, decay_mask(named)) if d}
        assert decayed == {"blocks.0.attn.qkv.W", "blocks.0.attn.proj.W",
                           "blocks.0.ffn.fc1.W", "blocks.0.ffn.fc2.W"}


def test_adamw_with_decay_mask_leaves_excluded_params_alone(rng):
    layer = Linear(3, 2, rng).astype(np.float64)
    layer.b[...] = 1.0
    W0 = layer.W.copy()
    named = layer.named_parameters()
    AdamW(layer.get_parameters(), lr=0.1, weight_decay=0.5, decay=decay_mask(named)).step()
    np.testing.assert_array_equal(layer.b, 1.0)
    np.testing.assert_allclose(layer.W, W0 * 0.95, rtol=1e-12)


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1)],
                         ids=["SGD-momentum", "AdamW"])
def test_state_dict_round_trip_continues_identically(rng, make):
    shapes = [(3, 4), (4,)]
    params_a = [pair(rng, s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(6)]
    opt_a = make(params_a)
    for gs in grads[:3]:
        for (_, g), gi in zip(params_a, gs):
            g[...] = gi
        opt_a.step()
    params_b = [(p.copy(), np.zeros_like(g)) for p, g in params_a]
    opt_b = make(params_b)
    opt_b.lr = 123.0                                       # overwritten by the load
    state = opt_a.state_dict()
    opt_b.load_state_dict({"t": state["t"], "lr": state["lr"],
                           "arrays": {k: v.copy() for k, v in state["arrays"].items()}})
    assert opt_b.t == 3 and opt_b.lr == opt_a.lr
    for gs in grads[3:]:
        for opt, params in ((opt_a, params_a), (opt_b, params_b)):
            for (_, g), gi in zip(params, gs):
                g[...] = gi
            opt.step()
    for (pa, _), (pb, _) in zip(params_a, params_b):
        np.testing.assert_array_equal(pa, pb)


def test_load_state_dict_rejects_wrong_shapes(rng):
    opt = Adam([pair(rng)])
    state = opt.state_dict()
    state["arrays"] = {k: np.zeros((5,)) for k in state["arrays"]}
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(state)


def test_optimizer_zero_grad(rng):
    p, g = pair(rng)
    g[...] = 1.0
    SGD([(p, g)]).zero_grad()
    assert not g.any()


# ---- flat parameter buffers (Layer.flatten) ----------------------------------------------------

def small_lm(rng, flat):
    """A tiny DecoderLM, flattened (as build_model makes it) or with one array per parameter."""
    config = ModelConfig(vocab_size=11, kind="decoder_lm", d_model=8, n_heads=2, n_layers=2, d_ff=16,
                         max_len=6, norm_first=True, positional="learned", activation="gelu")
    model = DecoderLM(config, rng)
    return model.flatten() if flat else model


def test_flatten_keeps_values_and_lays_parameters_into_few_buffers():
    loose, flat = small_lm(np.random.default_rng(3), False), small_lm(np.random.default_rng(3), True)
    assert [n for n, _ in loose.named_parameters()] == [n for n, _ in flat.named_parameters()]
    for (_, (p, _)), (_, (q, g)) in zip(loose.named_parameters(), flat.named_parameters()):
        assert np.array_equal(p, q) and not g.any()
    bases = {id(p.base) for p, _ in flat.get_parameters()}
    assert len(bases) == 2 and all(p.base is not None for p, _ in flat.get_parameters())  # matrices, vectors
    assert flat.head.W.base is flat.tok_emb.W.base          # the tied head reads the flat table


def test_adamw_on_a_flat_model_merges_parameters_and_updates_them_bit_for_bit():
    """Adam's arithmetic is per element: merging adjacent parameters changes the calls, not the numbers."""
    results = []
    for flat in (False, True):
        model, data = small_lm(np.random.default_rng(5), flat), np.random.default_rng(9)
        named = model.named_parameters()
        opt = AdamW(model.get_parameters(), lr=1e-2, weight_decay=0.1, decay=decay_mask(named))
        for _ in range(3):
            opt.zero_grad()
            for _, (p, g) in named:
                g += data.standard_normal(g.shape).astype(g.dtype)
            opt.step()
        results.append((len(opt.pairs), [p.copy() for p, _ in model.get_parameters()], opt.state_dict()))
    (n_loose, loose, state_loose), (n_flat, flat, state_flat) = results
    assert n_loose == len(loose) and n_flat == 3            # decayed matrices, the other matrices, vectors
    assert all(np.array_equal(a, b) for a, b in zip(loose, flat))
    for name, arr in state_loose["arrays"].items():
        assert np.array_equal(arr, state_flat["arrays"][name])


def test_a_flat_optimizer_state_loads_into_its_views(rng):
    model = small_lm(rng, True)
    opt = Adam(model.get_parameters(), lr=1e-3)
    state = opt.state_dict()
    state = {"t": 4, "lr": 1e-3, "arrays": {k: np.full(v.shape, 0.5, v.dtype) for k, v in state["arrays"].items()}}
    opt.load_state_dict(state)
    assert all((m == 0.5).all() for m in opt._m) and opt.t == 4     # the flat moments hold it
    opt.zero_grad()
    model.get_parameters()[0][1][...] = 1.0
    opt.zero_grad()
    assert not any(g.any() for _, g in model.get_parameters())


# ---- the learning-rate schedule: linear warm-up, then cosine decay to the floor ----

def test_warmup_cosine_schedule():
    lr = [warmup_cosine(s, max_lr=1.0, warmup_steps=10, total_steps=100, min_lr=0.1)
          for s in range(101)]
    assert lr[0] == pytest.approx(0.1)                     # (0 + 1) / 10 of max_lr
    assert lr[4] == pytest.approx(0.5)
    assert lr[9] == pytest.approx(1.0)                     # warm-up ends at max_lr
    assert lr[10] == pytest.approx(1.0)                    # cosine starts at max_lr
    assert all(a < b for a, b in zip(lr[:10], lr[1:10]))   # warm-up rises
    assert all(a > b for a, b in zip(lr[10:], lr[11:]))    # then strictly decays
    assert lr[55] == pytest.approx(0.55)                   # halfway: the mean of max and min
    assert lr[100] == pytest.approx(0.1)
    assert warmup_cosine(500, 1.0, 10, 100, 0.1) == 0.1    # past the end: the floor
    assert warmup_cosine(0, 1.0, 0, 100) == pytest.approx(1.0)   # no warm-up


# ---- gradient clipping ----

def test_clip_grad_norm(rng):
    g1, g2 = np.full((2, 2), 3.0), np.full(3, 4.0)         # norm sqrt(4*9 + 3*16) = sqrt(84)
    params = [(np.zeros((2, 2)), g1), (np.zeros(3), g2)]
    norm = clip_grad_norm(params, 1.0)
    assert float(norm) == pytest.approx(np.sqrt(84.0), rel=1e-6)
    new_norm = np.sqrt((g1 ** 2).sum() + (g2 ** 2).sum())
    assert new_norm == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(g1 / g2[0], 0.75)           # direction kept
    before = [g1.copy(), g2.copy()]
    assert float(clip_grad_norm(params, 10.0)) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(g1, before[0], rtol=1e-6)   # below the limit: unchanged
    np.testing.assert_allclose(g2, before[1], rtol=1e-6)


def test_grad_norm_of_float64_gradients_is_exact_to_float64(rng):
    """Summed in the gradients' own float64 (not float32, which is 3e-8 off), the norm agrees with an
    exactly rounded math.fsum of the squares, as torch.nn.utils.clip_grad_norm_ does for float64."""
    grads = [rng.standard_normal((37, 41)) * 10.0 ** rng.integers(-3, 3, (37, 41)),
             rng.standard_normal(1001), rng.standard_normal((3, 5, 7)) * 1e3]
    params = [(np.zeros_like(g), g) for g in grads]
    exact = math.sqrt(math.fsum(float(v) ** 2 for g in grads for v in g.ravel()))
    norm = grad_norm(params)
    assert norm.dtype == np.float64
    assert abs(float(norm) - exact) <= 1e-13 * exact
    total = clip_grad_norm(params, 0.5 * exact)
    assert abs(float(total) - exact) <= 1e-13 * exact
    after = math.sqrt(math.fsum(float(v) ** 2 for g in grads for v in g.ravel()))
    assert after == pytest.approx(0.5 * exact * exact / (exact + 1e-6), rel=1e-12)   # torch's eps


def test_sum_squares_sums_float16_in_float32_and_keeps_float32_and_float64():
    for dtype, want in [(np.float16, np.float32), (np.float32, np.float32), (np.float64, np.float64)]:
        g = np.full(3000, 1.5, dtype)                       # 6750: above float16's exact integers
        s = sum_squares(g)
        assert s.dtype == want and float(s) == 6750.0


@pytest.mark.parametrize("n", [1000, 1 << 16, 1 << 22])
def test_sum_squares_of_float32_is_accurate_at_any_length(rng, n):
    """Short gradients take the BLAS dot, long ones the pairwise sum: within 1e-6 of float64 either
    way (one running float32 dot over 4M numbers is off by about 8e-6, and fails this)."""
    g = rng.standard_normal(n).astype(np.float32) * 1e-3
    exact = float(np.dot(g.astype(np.float64), g.astype(np.float64)))
    s = sum_squares(g)
    assert s.dtype == np.float32 and abs(float(s) / exact - 1) < 1e-6
