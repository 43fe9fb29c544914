"""The compiled overlay (kernels/cpu/compiled.py, numba): each kernel against its reference at sizes
where it runs compiled, the same numbers bit for bit on 1 and 2 threads, NaN kept, and NumPy's kernel
for what it does not take. Skipped without numba (the `fast` extra)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glassformer import backend
from glassformer.gradcheck import rel_error
from glassformer.layers.attention import attention_mask
from glassformer.kernels.cpu import compiled

pytest.importorskip("numba", reason="the compiled overlay needs numba: pip install -e .[fast]")
from glassformer.kernels.cpu import jit  # noqa: E402  (numba's loops: only once numba is known here)
ROOT = Path(__file__).resolve().parents[4]
pytestmark = pytest.mark.usefixtures("compiled_on")

TOL = {np.float64: 1e-12, np.float32: 1e-5}


def layer_norm(impl, rng, dtype):
    C = 128
    x, dout = ((rng.standard_normal((12, 64, C)) * 3 + 1).astype(dtype) for _ in range(2))
    gamma, beta = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    dgamma, dbeta = np.ones(C, dtype), np.ones(C, dtype)
    y, cache = impl("layer_norm_forward")(x, gamma, beta, 1e-5)
    dx = impl("layer_norm_backward")(dout, cache, gamma, dgamma, dbeta)
    return {"y": y, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def gelu(impl, rng, dtype):
    x, dout = ((rng.standard_normal((12, 64, 100)) * 3).astype(dtype) for _ in range(2))   # 2.3 tiles
    y, cache = impl("gelu_forward")(x)
    return {"y": y, "dx": impl("gelu_backward")(dout, cache)}


def softmax(impl, rng, dtype):
    z, dp = ((rng.standard_normal((8, 4, 40, 33)) * 3).astype(dtype) for _ in range(2))
    probs = impl("softmax")(z)
    return {"probs": probs, "dz": impl("softmax_backward")(dp, probs)}


def large_scores(impl, rng, dtype):
    """Scores in the thousands: a shift short of a row's max (a lane row_max missed) overflows exp."""
    z = (rng.standard_normal((8, 4, 40, 33)) * 1000).astype(dtype)
    return {"probs": impl("softmax")(z)}


def attention(impl, rng, dtype, padding=True):
    B, H, T, D = 6, 4, 48, 16
    q, k, v, dy = (rng.standard_normal((B, H, T, D)).astype(dtype) for _ in range(4))
    keep = np.ones((B, T), bool)
    keep[0, -5:] = keep[3, 10:] = False                     # padded keys in two sequences
    allowed = attention_mask(np, T, T, True, keep if padding else None)
    y, att = impl("attend")(q, k, v, allowed)
    dq, dk, dv = impl("attend_backward")(dy, q, k, v, att)
    return {"y": y, "att": att, "dq": dq, "dk": dk, "dv": dv}


def causal_attention(impl, rng, dtype):
    return attention(impl, rng, dtype, padding=False)


def adam(impl, rng, dtype):
    params = [(rng.standard_normal(n).astype(dtype), np.zeros(n, dtype)) for n in (40_000, 3 * 7)]
    ms, vs = [np.zeros_like(p) for p, _ in params], [np.zeros_like(p) for p, _ in params]
    t = 0
    for decoupled in (True, False, True):                   # AdamW, Adam with L2, AdamW
        for _, g in params:
            g[...] = rng.standard_normal(g.shape)
        t = impl("adam_step")(params, ms, vs, t, (1e-2, 0.9, 0.99, 1e-8, decoupled, [0.1, 0.05]))
    return {"p0": params[0][0], "p1": params[1][0], "m0": ms[0], "v0": vs[0], "t": np.asarray(t)}


def clip_norm(impl, rng, dtype):
    grads = [(None, (rng.standard_normal(n) * 3).astype(dtype)) for n in (70_000, 5, 3 * 16384)]
    return {"norm": np.asarray(impl("grad_norm")(grads))}


SCENARIOS = [layer_norm, gelu, softmax, large_scores, attention, causal_attention, adam, clip_norm]


def run(scenario, dtype, kernel=True, seed=1):
    table = backend.overlays("cpu")
    pick = (lambda name: table[name][1] or table[name][0]) if kernel else (lambda name: table[name][0])
    return scenario(pick, np.random.default_rng(seed), dtype)


@pytest.fixture
def threads():
    """backend.set_threads for the test, restored after."""
    saved = backend._threads
    yield backend.set_threads
    backend.set_threads(saved)


def test_the_kernels_registered_for_the_cpu_are_the_compiled_ones():
    table = backend.overlays("cpu")
    for name in ("layer_norm_forward", "layer_norm_backward", "gelu_forward", "gelu_backward", "softmax",
                 "softmax_backward", "attend", "attend_backward", "adam_step", "grad_norm"):
        assert table[name][1].__module__ == compiled.__name__, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_each_compiled_kernel_matches_its_reference(scenario, dtype):
    """float64 to 1e-12, float32 to 1e-5, outputs and in-place updates alike, at sizes that run compiled."""
    got, want = run(scenario, dtype), run(scenario, dtype, kernel=False)
    for key in want:
        assert got[key].shape == want[key].shape, key
        assert rel_error(got[key], want[key]) <= TOL[dtype], (key, rel_error(got[key], want[key]))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_the_scenarios_run_compiled_not_numpy_s_kernel(monkeypatch, scenario):
    """Every scenario calls a numba loop (so the test above tests the loops, not NumPy's fallback)."""
    calls = []
    for name in ("layer_norm_forward", "gelu_forward32", "softmax_normalise", "softmax_backward", "adam",
                 "block_sum_squares"):
        loop = getattr(jit, name)
        monkeypatch.setattr(jit, name, lambda *a, _loop=loop, _name=name: calls.append(_name) or _loop(*a))
    run(scenario, np.float32)
    assert calls, f"{scenario.__name__} ran no compiled loop"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_one_and_two_threads_give_the_same_numbers_bit_for_bit(threads, scenario, monkeypatch):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: no second thread to compare with")
    monkeypatch.setattr(compiled, "PARALLEL_SIZE", 0)       # the scenarios' sizes: parallel too
    threads(1)
    one = run(scenario, np.float32)
    threads(2)
    two = run(scenario, np.float32)
    for key in one:
        assert np.array_equal(one[key], two[key]), key


def test_a_loop_runs_on_every_thread_only_for_work_worth_waking_them_for(threads):
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread here: nothing to choose")
    threads(2)
    small, large = np.zeros(compiled.MIN_SIZE, np.float32), np.zeros(compiled.PARALLEL_SIZE, np.float32)
    assert compiled.loops(large) is not None and numba.get_num_threads() == 2
    assert compiled.loops(small) is not None and numba.get_num_threads() == 1
    assert compiled.loops(small, size=compiled.PARALLEL_SIZE) is not None and numba.get_num_threads() == 2


def test_a_nan_stays_a_nan_for_the_divergence_guard():
    x = np.random.default_rng(0).standard_normal((768, 128)).astype(np.float32)
    x[5, 7] = np.nan
    gamma, beta = np.ones(128, np.float32), np.zeros(128, np.float32)
    y, _ = compiled.layer_norm_forward_compiled(x, gamma, beta, 1e-5)
    assert np.isnan(y[5]).all() and np.isfinite(np.delete(y, 5, axis=0)).all()
    h = np.random.default_rng(1).standard_normal(1 << 16).astype(np.float32)
    h[3] = np.nan
    out, _ = compiled.gelu_forward_compiled(h)
    assert np.isnan(out[3]) and np.isfinite(np.delete(out, 3)).all()


def rational_tanh64(u, p, q):
    """jit.tanh_rational's function, u P(t) / Q(t) with t = (u / 9)^2, evaluated in float64."""
    t = (u / jit.TANH_EDGE) ** 2
    return u * np.polyval(np.asarray(p)[::-1], t) / np.polyval(np.asarray(q)[::-1], t)


def loeb_fit(n_p=5, n_q=4, edge=9.0, points=20_000, rounds=40):
    """Coefficients of P (degree n_p) and Q (n_q, Q(0) = 1) with u P(t) / Q(t) ~ tanh u, t = (u / edge)^2:
    least squares on P - (tanh u / u) Q relative to tanh u / u, each round weighted by 1 / Q of the
    last (Loeb's method: the linear problem's weights make it the relative error of P / Q)."""
    u = edge * (1 - np.cos(np.linspace(0, np.pi / 2, points + 1)[1:]))   # dense near 0 and the edge
    t, f = (u / edge) ** 2, np.tanh(u) / u
    w = np.ones_like(u)
    for _ in range(rounds):
        A = np.hstack([t[:, None] ** np.arange(n_p + 1), -f[:, None] * t[:, None] ** np.arange(1, n_q + 1)])
        c, *_ = np.linalg.lstsq(A * (w / f)[:, None], w, rcond=None)
        p, q = c[:n_p + 1], np.concatenate([[1.0], c[n_p + 1:]])
        w = 1 / np.abs(np.polyval(q[::-1], t))
    return p, q


def test_the_rational_tanh_is_within_5e_9_of_tanh_up_to_its_edge_and_an_ulp_beyond():
    u = np.linspace(1e-6, jit.TANH_EDGE, 1 << 20)
    rel = lambda p: np.abs(rational_tanh64(u, p, jit.TANH_Q) / np.tanh(u) - 1).max()
    assert rel(jit.TANH_P) <= 5e-9
    assert rel(np.multiply(jit.TANH_P, 1 + 1e-7)) > 5e-9     # a coefficient a little off: caught
    p, q = loeb_fit()                                       # the method reproduced: as close
    assert np.abs(rational_tanh64(u, p, q) / np.tanh(u) - 1).max() <= 5e-9
    assert 1 - np.tanh(jit.TANH_EDGE) < np.spacing(np.float32(1))   # beyond the edge, +-1 is an ulp off


def test_float32_gelu_s_is_within_3_ulp_of_one_and_nan_inf_keep_their_meaning():
    """s = (1 + tanh u) / 2 of the one-pass float32 GELU against float64 NumPy, absolute (s is in [0, 1])."""
    x = np.linspace(-12, 12, 1 << 20).astype(np.float32)
    out, s = np.empty_like(x), np.empty_like(x)
    c, c3 = np.float32(compiled.GELU_C2 / 2), np.float32(compiled.GELU_C2 / 2 * 0.044715)
    jit.gelu_forward32(x, out, s, c, c3)
    x64 = x.astype(np.float64)
    s_true = 0.5 * (1 + np.tanh(x64 * (float(c) + float(c3) * x64 * x64)))
    assert np.abs(s - s_true).max() <= 3 * 2.0 ** -24
    assert np.array_equal(out, x * s)
    edge = [jit.tanh_rational(np.float32(v)) for v in (np.inf, -np.inf, 0.0, 100.0, -100.0)]
    assert edge == [1, -1, 0, 1, -1] and np.isnan(jit.tanh_rational(np.float32(np.nan)))


def test_what_the_loops_do_not_take_goes_to_numpy_s_kernel():
    big = np.random.default_rng(0).standard_normal((512, 128))
    assert compiled.loops(big.astype(np.float32)) is not None
    assert compiled.loops(big.astype(np.float16)) is None                   # 16-bit: NumPy's kernel
    assert compiled.loops(big[:1].astype(np.float32)) is None               # small: NumPy's kernel
    assert compiled.loops(big.astype(np.float32), big) is None              # mixed dtypes
    compiled.set_enabled(False)
    assert compiled.loops(big.astype(np.float32)) is None


@pytest.mark.parametrize("env,imported", [("", False), ("0", False)])
def test_small_work_and_glassformer_numba_0_never_import_numba(env, imported):
    """numba's import (0.1-0.3 s) is paid only when a loop's work arrives: one row's LayerNorm (128
    numbers, under MIN_SIZE), or any step with GLASSFORMER_NUMBA=0, leaves it unimported."""
    size = 1024 if env == "0" else 1
    code = ("import sys, numpy as np\n"
            "from glassformer.layers.norm import layer_norm_forward\n"
            f"x = np.ones(({size}, 128), np.float32)\n"
            "layer_norm_forward(x, np.ones(128, np.float32), np.zeros(128, np.float32), 1e-5)\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, compiled.ENV: env})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(imported)


def test_a_real_training_command_runs_the_compiled_loops(tmp_path):
    """train_step_by_step.py on a text at the tiny preset's real size (hidden 12 x 64 x 512 numbers),
    GLASSFORMER_NUMBA=1: it trains, and numba was imported, which happens only when a loop runs."""
    text = tmp_path / "text.txt"
    text.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(400)))
    argv = ["train_step_by_step.py", "--task", "lm", "--data", str(text), "--tokenizer", "char",
            "--preset", "tiny", "--steps", "3", "--eval-batches", "1", "--no-interactive",
            "--out", str(tmp_path / "run")]
    code = ("import runpy, sys\n"
            f"sys.argv = {argv!r}\n"
            "try:\n"
            f"    runpy.run_path({str(ROOT / 'train_step_by_step.py')!r}, run_name='__main__')\n"
            "finally:\n"
            "    print('numba imported:', 'numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, compiled.ENV: "1"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "numba imported: True" in out.stdout
    assert (tmp_path / "run").is_dir()


class PoisonedRng:
    """A generator whose standard_normal arrays hold a NaN, a +inf and a -inf at fixed places."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def standard_normal(self, shape):
        x = self.rng.standard_normal(shape)
        flat = x.reshape(-1)
        flat[[1, flat.size // 2, flat.size - 2]] = [np.nan, np.inf, -np.inf]     # sizes >= 5 here
        return x


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_a_non_finite_input_is_never_made_finite_where_the_reference_keeps_it(scenario):
    """NaN and +-inf in: wherever the reference's output is not finite, the loops' is not either, so
    the divergence guard (which looks for a non-finite loss, gradient or state) never misses one.
    (They may give more: attention's mask is added as a bias, so a NaN key the reference masks out
    with -inf still reaches its row.)"""
    table = backend.overlays("cpu")
    with np.errstate(all="ignore"):
        got = scenario(lambda name: table[name][1], PoisonedRng(3), np.float32)
        want = scenario(lambda name: table[name][0], PoisonedRng(3), np.float32)
    assert not all(np.isfinite(out).all() for out in want.values())    # the poison got through
    for key in want:
        assert not np.isfinite(got[key])[~np.isfinite(want[key])].any(), key
