"""Probe: does cupy.matmul on float16 arrays of more than two dimensions use float16 tensor cores?

CuPy before PR #10317 casts batched float16 operands to float32 and runs a float32 GEMM (then casts the
product back): right answers, float32 speed, three extra copies. Attention's products are batched
(B, H, T, D), so this decides whether backend.set_batched_matmul("cublas") (the project's own
cublasGemmStridedBatchedEx call, float16 in, float32 accumulation) is needed under the fp16 policy.

For each shape it times q @ k^T (B,H,T,D)@(B,H,D,T) and att @ v (B,H,T,T)@(B,H,T,D) by cupy.matmul in
float32 (TF32 off), TF32 and float16; float16 by the project's cuBLAS route; the float32-cast path
written out; and one 2-D float16 GEMM of the same FLOPs (what tensor cores do for this K). It checks
every result against a float64 product of the same inputs, measures the pool bytes a float16
cupy.matmul allocates besides its output, and times MultiHeadAttention forward + backward under fp16
with each batched-matmul mode. Prints one JSON line; exits 0, 1 when a check failed, 2 without a GPU.
Run from the repository root: PYTHONPATH=src python3 bench/gpu_matmul_probe.py
"""
import argparse
import importlib
import json
import sys

import numpy as np

from glassformer import backend, precision
from glassformer.errors import UserError

SHAPES = {"large-16x1024": (16, 12, 1024, 64), "small-8x256": (8, 8, 256, 32),   # (B, H, T, D)
          "tiny": (2, 2, 32, 16)}                                                  # a quick try only
DEFAULT_SHAPES = "large-16x1024,small-8x256"
TOLERANCE = {"fp32": 1e-5, "tf32": 5e-3, "fp16": 5e-3}     # max |got - want| / max |want|


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"comma list of {list(SHAPES)}")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per measurement")
    p.add_argument("--no-attention", action="store_true", help="skip the MultiHeadAttention timing")
    args = p.parse_args(argv)
    args.shapes = [s for s in args.shapes.split(",") if s]
    for s in args.shapes:
        if s not in SHAPES:
            p.error(f"unknown shape {s!r}: use some of {list(SHAPES)}")
    return args


# ---- judgement (pure Python; tests/bench/test_gpu_check.py) ------------------------------------------

def rel_error(got, want):
    """max |got - want| / max |want| (as tests/gpu/test_gpu.py's rel)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max(initial=0.0) / max(np.abs(want).max(initial=0.0), 1e-30))


def verdict(t_fp16, t_fp32):
    """How cupy.matmul computed a batched float16 product, judged by its time against float32's."""
    if t_fp16 <= 0.5 * t_fp32:
        return "float16 tensor cores"
    if t_fp16 >= 0.8 * t_fp32:
        return "float32 (operands cast)"
    return "unclear"


def recommend(t_matmul, t_cublas):
    """The batched-matmul mode for fp16 attention: cublas when it is at least 10% faster."""
    if t_cublas is None:
        return "matmul"
    return "cublas" if t_cublas < 0.9 * t_matmul else "matmul"


# ---- measurement ----------------------------------------------------------------------------------

def gpu_seconds(cp, fn, repeats):
    """Mean seconds of fn() over `repeats` calls, by CUDA events, after one untimed call."""
    fn()
    cp.cuda.Device().synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    end.synchronize()
    return cp.cuda.get_elapsed_time(start, end) / 1e3 / repeats


def temp_bytes(cp, fn):
    """Bytes the memory pool grew by during fn() beyond the result it returns (its temporaries)."""
    pool = cp.get_default_memory_pool()
    pool.free_all_blocks()
    before = pool.total_bytes()
    out = fn()
    cp.cuda.Device().synchronize()
    return int(pool.total_bytes() - before - out.nbytes)


ROUTES = ("glassformer.kernels.attention", "glassformer.kernels")   # where the project's bmm may live


def cublas_bmm():
    """The project's batched product (kernels' bmm, cuBLAS under mode "cublas"), or None if not found."""
    for module in ROUTES:
        try:
            return importlib.import_module(module).bmm
        except (ImportError, AttributeError):
            continue
    return None


def attention_kernel(x):
    """Whether attention on x runs its CuPy kernel (backend.kernel_for("attend", x)); None if unknown."""
    find = getattr(backend, "kernel_for", None)
    return None if find is None else find("attend", x) is not None


def probe_product(cp, a, b, repeats):
    """Times (ms), TFLOP/s and errors of a @ b ((..., M, K) @ (..., K, N)) by every route."""
    *batch, M, K = a.shape
    N = b.shape[-1]
    flops = 2.0 * np.prod(batch) * M * K * N
    a16, b16 = a.astype(cp.float16), b.astype(cp.float16)
    want32 = cp.matmul(a.astype(cp.float64), b.astype(cp.float64))
    want16 = cp.matmul(a16.astype(cp.float64), b16.astype(cp.float64))
    a2 = a16.reshape(-1, K)                                  # (batch*M, K): one 2-D GEMM, same FLOPs
    b2 = cp.ascontiguousarray(b16.reshape(-1, K, N)[0])      # (K, N)
    routes = {"matmul_fp32": ("fp32", lambda: cp.matmul(a, b), want32),
              "matmul_tf32": ("tf32", lambda: cp.matmul(a, b), want32),
              "matmul_fp16": ("fp32", lambda: cp.matmul(a16, b16), want16),
              "cast_fp16_via_fp32": ("fp32", lambda: cp.matmul(a16.astype(cp.float32),
                                                              b16.astype(cp.float32)).astype(cp.float16),
                                     want16),
              "gemm2d_fp16": ("fp32", lambda: cp.matmul(a2, b2), None)}
    bmm = cublas_bmm()
    if bmm is not None:
        routes["cublas_fp16"] = ("fp32", lambda: bmm(a16, b16), want16)
        routes["cublas_tf32"] = ("tf32", lambda: bmm(a, b), want32)
    out = {"shape_a": list(a.shape), "shape_b": list(b.shape), "gflop": round(flops / 1e9, 2)}
    backend.set_batched_matmul("cublas")                    # bmm() reads the mode when called
    try:
        for name, (policy, fn, want) in routes.items():
            try:
                with precision.policy(policy):
                    t = gpu_seconds(cp, fn, repeats)
                    got = fn()
            except Exception as e:                          # one route failing leaves the others
                out[name] = {"error": f"{type(e).__name__}: {e}"[:300], "ok": False}
                continue
            row = {"ms": round(1e3 * t, 4), "tflops": round(flops / t / 1e12, 1)}
            if want is not None:
                row["rel_error"] = rel_error(backend.to_numpy(got), backend.to_numpy(want))
                tol = TOLERANCE["tf32" if "tf32" in name else "fp16" if "fp16" in name else "fp32"]
                row["ok"] = row["rel_error"] <= tol
            out[name] = row
    finally:
        backend.set_batched_matmul("matmul")
    try:
        out["matmul_fp16_temp_bytes"] = temp_bytes(cp, lambda: cp.matmul(a16, b16))
    except Exception as e:
        out["matmul_fp16_temp_bytes"] = f"{type(e).__name__}: {e}"[:200]
    out["fp32_copies_size_bytes"] = 2 * (a16.nbytes + b16.nbytes)     # what casting both would take
    t16, t32 = out["matmul_fp16"].get("ms"), out["matmul_fp32"].get("ms")
    out["verdict"] = verdict(t16, t32) if t16 and t32 else "not measured"
    return out


def probe_shape(cp, B, H, T, D, repeats):
    """q @ k^T with k^T a transposed view (as attention passes it), and att @ v."""
    rs = cp.random.RandomState(0)
    q, k, v = (rs.standard_normal((B, H, T, D), dtype=cp.float32) for _ in range(3))
    att = rs.random_sample((B, H, T, T), dtype=cp.float32) * (2.0 / T)    # rows summing to about 1
    return {"qk": probe_product(cp, q, k.swapaxes(-1, -2), repeats),
            "av": probe_product(cp, att, v, repeats)}


def attention_timing(cp, B, T, C, H, repeats):
    """ms of MultiHeadAttention forward + backward under fp16, per batched-matmul mode; their agreement."""
    from glassformer.layers import MultiHeadAttention
    backend.use("cupy")
    out, results = {}, {}
    try:
        layer = MultiHeadAttention(C, H, np.random.default_rng(0), causal=True)
        rs = cp.random.RandomState(1)
        x = rs.standard_normal((B, T, C), dtype=cp.float32)
        dout = rs.standard_normal((B, T, C), dtype=cp.float32)
        with precision.policy("fp16"):
            for mode in backend.BATCHED_MATMUL_MODES:
                backend.set_batched_matmul(mode)

                def step():
                    layer.zero_grad()
                    y = layer.forward(x)
                    return y, layer.backward(dout)
                out[f"{mode}_ms"] = round(1e3 * gpu_seconds(cp, step, repeats), 3)
                results[mode] = [backend.to_numpy(r) for r in step()]
    finally:
        backend.set_batched_matmul("matmul")
        backend.use("numpy")
    a, b = results["matmul"], results["cublas"]
    out["rel_error_y"], out["rel_error_dx"] = rel_error(b[0], a[0]), rel_error(b[1], a[1])
    out["ok"] = max(out["rel_error_y"], out["rel_error_dx"]) <= 3e-2     # fp16 policy, as tests
    out["shape"] = {"B": B, "T": T, "C": C, "H": H}
    return out


def main(argv=None):
    args = parse_args(argv)
    try:
        backend.require_gpu()
    except UserError as e:
        print(json.dumps({"error": str(e)}))
        return 2
    cp = backend.xp_for("cupy")
    name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
    result = {"probe": "batched float16 cupy.matmul", "cupy": cp.__version__,
              "device": name.decode() if isinstance(name, bytes) else str(name),
              "default_batched_matmul": backend.batched_matmul_mode(), "shapes": {}, "errors": []}
    for s in args.shapes:
        try:
            result["shapes"][s] = probe_shape(cp, *SHAPES[s], args.repeats)
        except Exception as e:
            result["errors"].append(f"{s}: {type(e).__name__}: {e}"[:400])
    probe = cp.zeros((1, 1, 2, 2), cp.float16)
    result["attention_route"] = {
        "attention_kernel": attention_kernel(probe),
        "cublas_route": f"{bmm.__module__}.{bmm.__name__}" if (bmm := cublas_bmm()) else None,
        "products_by": {"matmul": "cupy.matmul", "cublas": "cublasGemmStridedBatchedEx"}[
            backend.batched_matmul_mode()]}
    first = next(iter(result["shapes"].values()), None)
    if first is not None and first["av"]["verdict"] != "not measured":   # the first shape's att @ v
        av = first["av"]
        result["verdict"] = av["verdict"]
        result["fp16_over_fp32_time"] = round(av["matmul_fp16"]["ms"] / av["matmul_fp32"]["ms"], 3)
        cublas = av.get("cublas_fp16", {}).get("ms")
        result["recommend_batched_matmul_for_fp16"] = recommend(av["matmul_fp16"]["ms"], cublas)
    if not args.no_attention:
        B, H, T, D = SHAPES[args.shapes[0]] if args.shapes else SHAPES["small-8x256"]
        try:
            result["attention_fp16"] = attention_timing(cp, B, T, H * D, H, max(2, args.repeats // 2))
        except Exception as e:
            result["errors"].append(f"attention: {type(e).__name__}: {e}"[:400])
    checks = [r["ok"] for shape in result["shapes"].values() for product in shape.values()
              for r in product.values() if isinstance(r, dict) and "ok" in r]
    checks.append(result.get("attention_fp16", {}).get("ok", True))
    result["checks_ok"] = all(checks) and not result["errors"]
    print(json.dumps(result), flush=True)
    return 0 if result["checks_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
