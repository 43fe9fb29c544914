#!/usr/bin/env bash
# bench/gpu_check.sh: the one GPU check of glassformer's CuPy path, in five parts, under 7 minutes on an H200.
#
#   env     nvidia-smi, python / numpy / cupy / torch versions                      cap  20 s
#   pytest  the gpu-marked tests (NumPy vs CuPy gradchecks, fused vs reference,      cap 140 s
#           loss scaler, training, checkpoints GPU->CPU->GPU); junit in pytest.xml
#   probe   bench/gpu_matmul_probe.py: batched float16 cupy.matmul, tensor cores     cap  35 s
#           or float32 (CuPy PR #10317), vs the project's cuBLAS route
#   lm      bench/gpu_lm.py: tokens/s, TFLOP/s, MFU, memory per preset x precision   cap 150 s
#           beside PyTorch eager (a time budget inside stops it before its cap)
#   curve   bench/gpu_fp16_curve.py: fp16 vs fp32 loss over 200 steps of WikiText-2  cap  60 s
#   (aliases: bench = lm, probe = matmul, curve = fp16; summary = no part, just the summary)
#
# On the device machine (bare: python3 3.12, torch, cupy-cuda13x, numpy, pytest; run from the tree with
# PYTHONPATH=src, which this script sets), from the repository root, ONE call:
#   run(command="bash bench/gpu_check.sh", timeout_s=480)
# The caps add up to 405 s and all parts share a 450 s budget (GPU_CHECK_BUDGET): lm also gets the time
# that earlier parts left unused (its grid stops starting configurations 45 s before its cap), and a
# part that would run past the budget gets a smaller cap, so the summary always prints. 480 s covers that and the GPU check, and
# keeps ~5 minutes of a 15-minute device budget for one rerun. Part curve needs WikiText-2 and GPT-2's tokenizer inside the
# repository (the device has no ../shared): before the call,
#   mkdir -p .gpu_data && cp -r ../shared/data/wikitext-2 ../shared/data/gpt2-tokenizer .gpu_data/
# An untracked, not ignored .gpu_data/ travels with the tree by itself (do not commit it); if .gitignore
# lists it, add carry=[".gpu_data"] (14.5 MB). It also looks under shared/data, shared, .gpu_data/data,
# or $GPU_CHECK_DATA; without the files the part is skipped with a message saying so.
#
# Output, under $OUT when set (the device's $OUT comes back), else ./gpu_check_out/ (not git-ignored:
# do not commit it): per part
# PART.out (what it printed: JSON lines, pytest's report), PART.log (stderr), PART.status.json;
# pytest.xml, curve.json; summary.json, which is also printed last.
#
# Rerun only the failed parts at once (the machine stays warm briefly after a call; the summary's
# "rerun" line names the parts), merging the first run's results, with GPU_CHECK_BUDGET = timeout - 30:
#   cp <files_at of the first call>/summary.json gpu_check_prev.json   # untracked: travels with the tree
#   run(command="GPU_CHECK_BUDGET=240 bash bench/gpu_check.sh --merge gpu_check_prev.json pytest lm",
#       timeout_s=270)
# One part with other settings: LM_ARGS="--presets large-16x1024 --precisions fp16" ... lm
# Merge two runs' summaries on this machine (no GPU needed; later files win, skipped parts never win):
#   OUT=/tmp/merged bash bench/gpu_check.sh --merge first/summary.json --merge second/summary.json summary
#
# Knobs (environment): GPU_CHECK_BUDGET=seconds for all parts (450; a part that would run past it gets a
# smaller cap, or is not started and reported as timeout), GPU_CHECK_T_<PART>=seconds (a part's cap,
# e.g. GPU_CHECK_T_LM=200), LM_ARGS, PROBE_ARGS, CURVE_ARGS, PYTEST_ARGS (extra arguments, split on
# spaces), GPU_CHECK_DATA (the curve's data folder), PYTHON (default python3).
# Without CuPy or a GPU (any CPU machine) the GPU parts report "skipped: no CuPy/GPU" and it exits 0.
# Exit status: 0 when no part failed or timed out, 1 otherwise, 2 on a usage error.

set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-$ROOT/gpu_check_out}
DEADLINE=${GPU_CHECK_BUDGET:-450}       # seconds for all parts together; caps shrink to fit it
ALL_PARTS=(env pytest probe lm curve)
declare -A CAP=([env]=${GPU_CHECK_T_ENV:-20} [pytest]=${GPU_CHECK_T_PYTEST:-140}
                [probe]=${GPU_CHECK_T_PROBE:-35} [lm]=${GPU_CHECK_T_LM:-150}
                [curve]=${GPU_CHECK_T_CURVE:-60})

usage() {
    sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# ---- the env part (run as a child: bash bench/gpu_check.sh __env) ------------------------------------
part_env() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi >&2
        nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap,clocks.max.sm,power.limit \
            --format=csv >&2
    else
        echo "nvidia-smi: not found" >&2
    fi
    "$PY" - <<'PY'
import importlib, json, os, platform, sys
info = {"python": platform.python_version(), "executable": sys.executable, "cpus": os.cpu_count(),
        "env": {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "NVIDIA_TF32_OVERRIDE",
                                               "CUPY_TF32", "CUPY_CACHE_DIR", "CUDA_PATH")}}
for name in ("numpy", "cupy", "torch", "pytest", "mpi4py", "matplotlib"):
    try:
        info[name] = importlib.import_module(name).__version__
    except Exception as e:
        info[name] = f"missing ({type(e).__name__}: {e})"[:200]
try:
    import cupy
    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    info["device"] = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    info["compute_capability"] = dev.compute_capability
    info["memory_gib"] = round(props["totalGlobalMem"] / 2 ** 30, 1)
    info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    info["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    info["cublas"] = cupy.cuda.cublas.getVersion(cupy.cuda.device.get_cublas_handle())
except Exception as e:
    info["cupy_device"] = f"none ({type(e).__name__}: {e})"[:300]
try:
    import torch
    info["torch_cuda"] = torch.version.cuda
    info["torch_gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
except Exception as e:
    info["torch_gpu"] = f"none ({type(e).__name__}: {e})"[:200]
try:
    import glassformer
    info["glassformer"] = os.path.dirname(glassformer.__file__)
except Exception as e:
    info["glassformer"] = f"import failed ({type(e).__name__}: {e})"[:300]
print(json.dumps(info))
PY
    local rc=$?
    "$PY" -c "import cupy; cupy.show_config()" >&2 2>/dev/null || true
    return $rc
}

# ---- the summary (run as: bash bench/gpu_check.sh __summary OUT_DIR REQUESTED [MERGE...]) -----------
part_summary() {
    "$PY" - "$@" <<'PY'
import glob, json, math, os, re, sys, time
import xml.etree.ElementTree as ET

out_dir, requested, merges = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
ORDER = ["env", "pytest", "probe", "lm", "curve"]


def json_lines(path):
    """The JSON objects printed one per line in a part's .out file (other lines ignored)."""
    rows = []
    if os.path.exists(path):
        for line in open(path, encoding="utf-8", errors="replace"):
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    return rows


def junit(path, text_path):
    """Counts and failed test ids from pytest's junit xml (or its last report line)."""
    if os.path.exists(path):
        try:
            root = ET.parse(path).getroot()
            suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
            n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
            n["passed"] = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
            n["seconds"] = round(sum(float(s.get("time", 0)) for s in suites), 1)
            bad = []
            for case in root.iter("testcase"):
                for child in case:
                    if child.tag in ("failure", "error"):
                        msg = (child.get("message") or "").splitlines()[:1]
                        where = "::".join(filter(None, (case.get("classname"), case.get("name"))))
                        bad.append(f"{where} [{child.tag}] "
                                   f"{msg[0][:120] if msg else ''}".rstrip())
            n["failed_tests"] = bad[:10] + ([f"... {len(bad) - 10} more"] if len(bad) > 10 else [])
            return n
        except (ET.ParseError, ValueError) as e:
            return {"error": f"unreadable junit xml: {e}"}
    if os.path.exists(text_path):                           # killed before writing the xml
        lines = [l for l in open(text_path, errors="replace") if re.search(r"\d+ (passed|failed)", l)]
        if lines:
            return {"report_line": lines[-1].strip().strip("= ")}
    return {"error": "no junit xml and no pytest report"}


LM_KEYS = ("run", "precision", "tokens_per_s", "step_ms", "tflops", "mfu", "peak_mem_gib", "loss",
           "skipped_steps", "torch_tokens_per_s", "torch_tflops", "torch_mfu", "torch_peak_mem_gib",
           "ratio_vs_torch", "params_as_gpt2", "error", "torch_error", "skipped")


def result_of(part, status):
    """The part's findings, condensed for the summary (the full output stays in PART.out)."""
    rows = json_lines(os.path.join(out_dir, f"{part}.out"))
    errors = [r["error"] for r in rows if set(r) == {"error"}]
    if part == "pytest":
        return junit(os.path.join(out_dir, "pytest.xml"), os.path.join(out_dir, "pytest.out"))
    if errors and status["status"] != "ok":
        return {"error": errors[-1]}
    if part == "env":
        return rows[-1] if rows else {}
    if part == "probe":
        if not rows:
            return {}
        r = rows[-1]
        keep = ("verdict", "fp16_over_fp32_time", "recommend_batched_matmul_for_fp16", "checks_ok",
                "cupy", "device", "default_batched_matmul", "attention_route", "errors")
        out = {k: r[k] for k in keep if k in r}
        if "attention_fp16" in r:
            out["attention_fp16"] = {k: v for k, v in r["attention_fp16"].items() if k != "shape"}
        out["tflops"] = {f"{s}/{p}/{route}": v["tflops"] for s, shape in r.get("shapes", {}).items()
                         for p, prod in shape.items() for route, v in prod.items()
                         if isinstance(v, dict) and "tflops" in v}
        return out
    if part == "lm":
        return {"rows": [{k: r[k] for k in LM_KEYS if k in r} for r in rows if "run" in r],
                "summary": next((r["summary"] for r in rows if "summary" in r), None)}
    if part == "curve":
        comparison = next((r["comparison"] for r in rows if "comparison" in r), None)
        runs = [{k: r.get(k) for k in ("precision", "first_loss", "final_train_loss", "val_loss",
                                       "skipped_steps", "loss_scale", "nonfinite_steps", "seconds")}
                for r in rows if "final_train_loss" in r]
        return {"comparison": comparison, "runs": runs}
    return {}


def note(part, entry):
    """One human line per part."""
    r, s = entry.get("result") or {}, entry["status"]
    if s == "skipped" or entry.get("result") is None:     # skipped, or never started
        return entry.get("reason", "")
    if r.get("error"):
        return f"error: {r['error']}"[:160]
    if part == "env":
        short = {k: str(r.get(k)).split(" (")[0] for k in ("python", "numpy", "cupy", "torch")}
        return (f"python {short['python']}, numpy {short['numpy']}, cupy {short['cupy']}, torch "
                f"{short['torch']}, device {r.get('device', str(r.get('cupy_device')).split(' (')[0])}")
    if part == "pytest":
        if "tests" in r:
            return (f"{r['passed']} passed, {r['failures']} failed, {r['errors']} errors, "
                    f"{r['skipped']} skipped of {r['tests']}")
        return r.get("report_line", "")
    if part == "probe":
        return (f"batched fp16 cupy.matmul: {r.get('verdict')} (fp16/fp32 time "
                f"{r.get('fp16_over_fp32_time')}); recommend {r.get('recommend_batched_matmul_for_fp16')}"
                f"; checks_ok={r.get('checks_ok')}")
    if part == "lm":
        m = r.get("summary")
        if not m:
            return f"no summary line; {len(r.get('rows') or [])} configurations done (see lm.out / lm.log)"
        per = "; ".join(f"{q}: x{v.get('ratio_vs_torch_geomean')} of torch, best MFU {v.get('best_mfu')}"
                        for q, v in (m.get("by_precision") or {}).items())
        return (f"{m.get('measured')}/{m.get('configs')} measured, errors {m.get('errors')}, "
                f"skipped {m.get('skipped')}; {per}")[:300]
    if part == "curve":
        c = r.get("comparison")
        if not c:
            return f"no comparison line (see curve.out / curve.log); runs done: {len(r.get('runs') or [])}"
        return (f"val loss {c.get('val_loss')} (diff {c.get('val_loss_difference')}), train "
                f"{c.get('final_train_loss')}, scaler skipped {c.get('skipped_steps')}, ok={c.get('ok')}")
    return ""


parts = {}
for path in glob.glob(os.path.join(out_dir, "*.status.json")):
    status = json.load(open(path))
    ran = status["status"] != "skipped" and status.get("rc") is not None
    entry = dict(status, result=result_of(status["part"], status) if ran else None)
    parts[status["part"]] = entry
for path in merges:                                         # earlier runs: fill what this one lacks
    try:
        old = json.load(open(path))["parts"]
    except (OSError, ValueError, KeyError) as e:
        print(f"gpu_check: cannot merge {path}: {e}", file=sys.stderr)
        continue
    for name, entry in old.items():
        mine = parts.get(name)
        if mine is None or (mine["status"] == "skipped" and entry.get("status") != "skipped"):
            parts[name] = dict(entry, merged_from=entry.get("merged_from", path))
parts = {k: parts[k] for k in sorted(parts, key=lambda k: ORDER.index(k) if k in ORDER else 99)}
for name, entry in parts.items():
    entry["note"] = note(name, entry)
failed = [k for k, e in parts.items() if e["status"] in ("failed", "timeout")]
summary = {"out_dir": out_dir, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "requested": requested, "parts": parts,
           "ok": not failed, "complete": all(e["status"] == "ok" for e in parts.values())
           and set(ORDER) <= set(parts),
           "failed_parts": failed, "skipped_parts": [k for k, e in parts.items() if e["status"] == "skipped"],
           "rerun": (f"GPU_CHECK_BUDGET=240 bash bench/gpu_check.sh --merge <this summary.json> "
                     f"{' '.join(failed)}" if failed else None)}
with open(os.path.join(out_dir, "summary.json.tmp"), "w") as f:
    json.dump(summary, f, indent=1)
os.replace(os.path.join(out_dir, "summary.json.tmp"), os.path.join(out_dir, "summary.json"))

print("\n==== gpu_check summary " + "=" * 60)
for name, e in parts.items():
    print(f"{name:7s} {e['status']:8s} {e.get('seconds', 0):7.1f}s  {e['note']}"
          + (f"  [from {e['merged_from']}]" if e.get("merged_from") else ""))
lm = (parts.get("lm") or {}).get("result") or {}
if lm.get("rows"):
    print(f"\n{'run':14s} {'prec':5s} {'tok/s':>10s} {'ms':>8s} {'TFLOP/s':>8s} {'MFU':>6s} "
          f"{'torch tok/s':>11s} {'ratio':>6s} {'GiB':>6s}")
    for r in lm["rows"]:
        extra = r.get("error") or r.get("skipped") or r.get("torch_error") or ""
        print(f"{r['run']:14s} {r['precision']:5s} {r.get('tokens_per_s', ''):>10} {r.get('step_ms', ''):>8} "
              f"{r.get('tflops', ''):>8} {r.get('mfu') if r.get('mfu') is not None else '':>6} "
              f"{r.get('torch_tokens_per_s', ''):>11} {r.get('ratio_vs_torch', ''):>6} "
              f"{r.get('peak_mem_gib', ''):>6} {str(extra)[:60]}")
print("\nsummary.json (" + os.path.join(out_dir, "summary.json") + "; the notes above left out):")
keys = list(summary)
print("{")
for i, k in enumerate(keys):
    if k == "parts":
        print(' "parts": {')
        for j, (name, e) in enumerate(parts.items()):
            brief = {k: v for k, v in e.items() if k != "note"}
            print(f"  {json.dumps(name)}: {json.dumps(brief)}" + ("," if j < len(parts) - 1 else ""))
        print(" }" + ("," if i < len(keys) - 1 else ""))
    else:
        print(f" {json.dumps(k)}: {json.dumps(summary[k])}" + ("," if i < len(keys) - 1 else ""))
print("}")
sys.exit(1 if failed else 0)
PY
}

# ---- running parts ----------------------------------------------------------------------------------
write_status() {  # part status rc seconds cap reason
    "$PY" - "$OUT_DIR/$1.status.json" "$@" <<'PY'
import json, sys, time
path, part, status, rc, seconds, cap, reason = sys.argv[1:]
entry = {"part": part, "status": status, "rc": int(rc) if rc else None,
         "seconds": round(float(seconds), 1), "timeout_s": int(cap) if cap else None,
         "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
if reason:
    entry["reason"] = reason
with open(path, "w") as f:
    json.dump(entry, f)
PY
}

skip_part() {  # part reason
    echo "[$1] skipped: $2"
    write_status "$1" skipped "" 0 "" "skipped: $2"
}

run_part() {  # part cap command...
    local part=$1 cap=$2 start end rc status
    shift 2
    echo "[$part] running (cap ${cap}s): $*"
    start=$(date +%s.%N)
    timeout -s INT -k 5 "$cap" "$@" >"$OUT_DIR/$part.out" 2>"$OUT_DIR/$part.log"   # INT: pytest still writes its xml
    rc=$?
    end=$(date +%s.%N)
    case $rc in
        0) status=ok ;;
        124|137) status=timeout ;;
        *) status=failed ;;
    esac
    local secs
    secs=$(awk "BEGIN { print $end - $start }")
    echo "[$part] $status (rc $rc) after ${secs%.*}s"
    if [ "$status" != ok ]; then
        echo "---- last lines of $part.out / $part.log:"
        tail -n 8 "$OUT_DIR/$part.out" | cut -c1-300
        tail -n 12 "$OUT_DIR/$part.log" | cut -c1-300
        echo "----"
    fi
    write_status "$part" "$status" "$rc" "$secs" "$cap" \
        "$([ "$status" = timeout ] && echo "stopped at its cap of ${cap}s")"
}

find_data() {
    local d
    for d in "${GPU_CHECK_DATA:-}" shared/data shared .gpu_data/data .gpu_data; do
        if [ -n "$d" ] && [ -f "$d/wikitext-2/train.txt" ] && [ -f "$d/wikitext-2/valid.txt" ] \
            && [ -f "$d/gpt2-tokenizer/encoder.json" ] && [ -f "$d/gpt2-tokenizer/vocab.bpe" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

gpu_reason() {  # prints why there is no GPU; exit 0 when there is one
    timeout 60 "$PY" - <<'PY'
try:
    import cupy
    n = cupy.cuda.runtime.getDeviceCount()
except Exception as e:
    print(f"no CuPy/GPU ({type(e).__name__}: {e})"[:300]); raise SystemExit(1)
if n < 1:
    print("no CuPy/GPU (CuPy sees no CUDA device)"); raise SystemExit(1)
PY
}

main() {
    local parts=() merges=() want_summary_only=0 arg
    while [ $# -gt 0 ]; do
        arg=$1
        shift
        case $arg in
            -h|--help) usage; return 0 ;;
            --list) for p in "${ALL_PARTS[@]}"; do echo "$p ${CAP[$p]}"; done; return 0 ;;
            --merge) [ $# -gt 0 ] || { echo "gpu_check: --merge needs a summary.json" >&2; return 2; }
                     merges+=("$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"); shift ;;
            env|pytest|probe|lm|curve) parts+=("$arg") ;;
            bench) parts+=(lm) ;;
            matmul) parts+=(probe) ;;
            fp16) parts+=(curve) ;;
            summary) want_summary_only=1 ;;
            *) echo "gpu_check: unknown part or option '$arg' (parts: ${ALL_PARTS[*]} summary; see --help)" >&2
               return 2 ;;
        esac
    done
    if [ ${#parts[@]} -eq 0 ] && [ $want_summary_only -eq 0 ]; then
        parts=("${ALL_PARTS[@]}")
    fi
    mkdir -p "$OUT_DIR" || return 2
    OUT_DIR=$(cd "$OUT_DIR" && pwd)
    local t0 p have_gpu=0 why data budget extra cap left
    t0=$(date +%s)
    for p in "${parts[@]}"; do
        rm -f "$OUT_DIR/$p.out" "$OUT_DIR/$p.log" "$OUT_DIR/$p.status.json"
    done
    echo "gpu_check: parts '${parts[*]:-none, summary only}' -> $OUT_DIR ($(date))"
    if [ ${#parts[@]} -gt 0 ]; then
        if why=$(gpu_reason); then have_gpu=1; else why=${why:-no CuPy/GPU}; fi
    fi
    local i rest q
    for i in "${!parts[@]}"; do
        p=${parts[$i]}
        rest=0                                              # the caps of the parts still to come
        for q in "${parts[@]:$((i + 1))}"; do rest=$(( rest + CAP[$q] )); done
        left=$(( DEADLINE - ($(date +%s) - t0) - 5 ))
        cap=${CAP[$p]}
        if [ "$p" = lm ] && [ $(( left - rest )) -gt "$cap" ]; then
            cap=$(( left - rest ))                          # time earlier parts left goes to the grid
        fi
        if [ "$left" -lt "$cap" ]; then cap=$left; fi       # shrink to fit: the summary always prints
        if [ "$left" -lt 10 ]; then
            echo "[$p] not started: the ${DEADLINE}s budget is spent"
            write_status "$p" timeout "" 0 "" "not started: the ${DEADLINE}s budget (GPU_CHECK_BUDGET) was spent"
            continue
        fi
        case $p in
            env) run_part env "$cap" bash "$ROOT/bench/gpu_check.sh" __env ;;
            pytest)
                rm -f "$OUT_DIR/pytest.xml"
                if [ $have_gpu -eq 0 ]; then skip_part pytest "$why"; continue; fi
                read -ra extra <<<"${PYTEST_ARGS:-}"
                run_part pytest "$cap" "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/ \
                    --junitxml="$OUT_DIR/pytest.xml" --durations=15 -rfE --continue-on-collection-errors "${extra[@]}" ;;
            probe)
                if [ $have_gpu -eq 0 ]; then skip_part probe "$why"; continue; fi
                read -ra extra <<<"${PROBE_ARGS:-}"
                run_part probe "$cap" "$PY" bench/gpu_matmul_probe.py "${extra[@]}" ;;
            lm)
                if [ $have_gpu -eq 0 ]; then skip_part lm "$why"; continue; fi
                read -ra extra <<<"${LM_ARGS:-}"
                budget=$(( cap > 90 ? cap - 45 : cap / 2 ))  # stop starting configurations in time
                run_part lm "$cap" "$PY" bench/gpu_lm.py --budget-s "$budget" "${extra[@]}" ;;
            curve)
                rm -f "$OUT_DIR/curve.json"
                if [ $have_gpu -eq 0 ]; then skip_part curve "$why"; continue; fi
                if ! data=$(find_data); then
                    skip_part curve "no WikiText-2 + GPT-2 tokenizer under \$GPU_CHECK_DATA, shared/data, shared, .gpu_data/data or .gpu_data (mkdir -p .gpu_data && cp -r ../shared/data/wikitext-2 ../shared/data/gpt2-tokenizer .gpu_data/)"
                    continue
                fi
                read -ra extra <<<"${CURVE_ARGS:-}"
                run_part curve "$cap" "$PY" bench/gpu_fp16_curve.py "$data" \
                    --out "$OUT_DIR/curve.json" "${extra[@]}" ;;
        esac
    done
    echo "gpu_check: parts done in $(( $(date +%s) - t0 ))s"
    part_summary "$OUT_DIR" "${parts[*]}" "${merges[@]}"
}

case ${1:-} in
    __env) part_env ;;
    *) main "$@" ;;
esac
