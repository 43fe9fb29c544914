"""The GPU check's CPU side (bench/gpu_check.sh and its scripts): FLOP and MFU arithmetic, the probe's and
the curve's judgements, TrainStep, the summary merge, and every script failing cleanly without a GPU."""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glassformer import backend, precision

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
no_gpu = pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present: gpu_check.sh runs for real")


@pytest.fixture
def bench(monkeypatch):
    """Import a bench/ script as a module (gpu_fp16_curve imports gpu_lm beside it)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module


@pytest.fixture(autouse=True)
def _fp32_after():
    yield
    precision.use("fp32")


# ---- gpu_lm: the arithmetic --------------------------------------------------------------------------

def test_flops_per_token_is_6n_plus_12_l_d_t(bench):
    lm = bench("gpu_lm")
    assert lm.flops_per_token(10, 2, 3, 4) == 6 * 10 + 12 * 2 * 3 * 4
    # GPT-2 small at a 1024 context: 6 * 124,439,808 + 12 * 12 * 768 * 1024
    assert lm.flops_per_token(124_439_808, 12, 768, 1024) == 859_885_056


def test_gpt2_params_counts_what_build_model_builds(bench):
    from glassformer.models import build_model, lm_config
    lm = bench("gpu_lm")
    assert lm.gpt2_params(lm_config("large", 50257)) == 124_439_808        # GPT-2 small's 124M
    config = lm_config("tiny", 97)
    assert lm.gpt2_params(config) == build_model(config, np.random.default_rng(0)).n_parameters()


def test_mfu_divides_by_the_dense_peak_of_the_precision(bench):
    lm = bench("gpu_lm")
    assert lm.peaks_for("NVIDIA H200") == {"fp32": 66.9, "tf32": 494.7, "fp16": 989.4}
    assert lm.peaks_for("NVIDIA H200 NVL")["fp16"] == 835.5                # NVL before the plain name
    assert lm.peaks_for("Some GPU") == {"fp32": None, "tf32": None, "fp16": None}
    assert lm.peaks_for("Some GPU", {"fp16": 100.0})["fp16"] == 100.0
    assert lm.mfu(98.94, 989.4) == pytest.approx(0.1)
    assert lm.mfu(33.45, 66.9) == pytest.approx(0.5)
    assert lm.mfu(10.0, None) is None
    assert lm.parse_peaks("fp32=1.5,fp16=2") == {"fp32": 1.5, "fp16": 2.0}
    with pytest.raises(ValueError):
        lm.parse_peaks("bf16=3")


def test_lm_summary_line(bench):
    lm = bench("gpu_lm")
    rows = [{"run": "small", "precision": "fp16", "tokens_per_s": 10.0, "ratio_vs_torch": 0.5, "mfu": 0.1},
            {"run": "large", "precision": "fp16", "tokens_per_s": 30.0, "ratio_vs_torch": 2.0, "mfu": 0.3,
             "torch_mfu": 0.2},
            {"run": "qa", "precision": "fp32", "error": "OutOfMemoryError"},
            {"run": "large-16x1024", "precision": "fp32", "skipped": "time budget"}]
    s = lm.summarize(rows, "NVIDIA H200", lm.peaks_for("NVIDIA H200"))["summary"]
    assert s["by_precision"]["fp16"] == {"ratio_vs_torch_geomean": 1.0, "best_mfu": 0.3,
                                         "best_torch_mfu": 0.2, "best_tokens_per_s": 30.0}
    assert s["errors"] == ["qa/fp32"] and s["skipped"] == ["large-16x1024/fp32"]
    assert (s["configs"], s["measured"]) == (4, 2) and "fp32" not in s["by_precision"]


def test_lm_flags(bench):
    lm = bench("gpu_lm")
    args = lm.parse_args(["--presets", "small,qa", "--precisions", "fp16", "--peaks", "fp16=900"])
    assert args.presets == ["small", "qa"] and args.precisions == ["fp16"] and args.peaks == {"fp16": 900.0}
    with pytest.raises(SystemExit):
        lm.parse_args(["--presets", "huge"])


@pytest.mark.parametrize("policy", ["fp32", "fp16"])
def test_train_step_lowers_the_loss_on_the_cpu(bench, policy):
    from glassformer.models import build_model, lm_config
    lm = bench("gpu_lm")
    precision.use(policy)
    pattern = np.arange(200) % 17                           # next token = this + 1

    def batches(rng):
        start = rng.integers(0, 180, 8)
        return np.stack([pattern[s:s + 16] for s in start]), np.stack([pattern[s + 1:s + 17] for s in start])
    model = build_model(lm_config("tiny", 17, d_model=32, n_heads=4, n_layers=2, max_len=16),
                        np.random.default_rng(0))
    step = lm.TrainStep(model, batches, rng=np.random.default_rng(0), lr=3e-3)
    first = float(step())
    for _ in range(40):
        last = float(step())
    assert last < first - 1.0 and step.step == 41
    assert (step.scaler is not None) == (policy == "fp16")


# ---- the probe's judgement ---------------------------------------------------------------------------

def test_probe_verdict_and_recommendation(bench):
    probe = bench("gpu_matmul_probe")
    assert probe.verdict(0.1, 1.0) == "float16 tensor cores"
    assert probe.verdict(1.2, 1.0) == "float32 (operands cast)"
    assert probe.verdict(0.7, 1.0) == "unclear"
    assert probe.recommend(1.0, 0.5) == "cublas" and probe.recommend(1.0, 0.95) == "matmul"
    assert probe.recommend(1.0, None) == "matmul"
    assert probe.rel_error([1.0, 2.0], [1.0, 4.0]) == pytest.approx(0.5)


# ---- the fp16 curve ----------------------------------------------------------------------------------

def test_curve_windows_and_comparison(bench):
    curve = bench("gpu_fp16_curve")
    assert curve.window_means([4.0, 2.0, 3.0, 1.0, 5.0], 2) == [[2, 3.0], [4, 2.0], [5, 5.0]]
    runs = [{"precision": "fp32", "final_train_loss": 5.0, "val_loss": 5.5, "curve": [[10, 6.0], [20, 5.0]]},
            {"precision": "fp16", "final_train_loss": 5.02, "val_loss": 5.55, "skipped_steps": 3,
             "curve": [[10, 6.2], [20, 5.0]]}]
    c = curve.compare(runs, 0.1)["comparison"]
    assert c["train_loss_difference"] == pytest.approx(0.02) and c["val_loss_difference"] == pytest.approx(0.05)
    assert c["max_curve_gap"] == pytest.approx(0.2) and c["skipped_steps"] == {"fp32": None, "fp16": 3}
    assert c["ok"] and not curve.compare(runs, 0.01)["comparison"]["ok"]
    runs[1]["val_loss"] = float("nan")
    assert not curve.compare(runs, 0.1)["comparison"]["ok"]


def byte_level_data(folder):
    """A data folder as gpu_fp16_curve wants: small 'WikiText' files and a GPT-2-format byte tokenizer."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):                                    # GPT-2's bytes_to_unicode
        if b not in chars:
            chars[b], extra = chr(256 + extra), extra + 1
    (folder / "gpt2-tokenizer").mkdir(parents=True)
    encoder = {chars[b]: b for b in range(256)}
    encoder["<|endoftext|>"] = 256
    (folder / "gpt2-tokenizer" / "encoder.json").write_text(json.dumps(encoder))
    (folder / "gpt2-tokenizer" / "vocab.bpe").write_text("#version: 0.2\n")
    (folder / "wikitext-2").mkdir()
    line = " = Valkyria Chronicles III = \n the game began development in 2010 . \n"
    (folder / "wikitext-2" / "train.txt").write_text(line * 60)
    (folder / "wikitext-2" / "valid.txt").write_text(line * 20)
    return folder


def test_curve_dry_run_on_the_cpu(bench, tmp_path, capsys):
    curve = bench("gpu_fp16_curve")
    data = byte_level_data(tmp_path / "data")
    rc = curve.main([str(data), "--device", "cpu", "--preset", "tiny", "--steps", "3", "--batch", "2",
                     "--context", "16", "--eval-batches", "2", "--every", "2", "--tolerance", "1.0",
                     "--out", str(tmp_path / "curve.json")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0 and lines[0]["vocab"] == 257
    fp32, fp16, result = lines[1], lines[2], lines[3]["comparison"]
    assert (fp32["precision"], fp16["precision"]) == ("fp32", "fp16") and fp16["skipped_steps"] >= 0
    assert [p[0] for p in fp32["curve"]] == [2, 3] and result["runs"] == ["fp32", "fp16"]
    assert len(json.loads((tmp_path / "curve.json").read_text())["losses"]["fp16"]) == 3


def test_curve_without_data_is_one_error_line(bench, tmp_path, capsys):
    curve = bench("gpu_fp16_curve")
    assert curve.main([str(tmp_path), "--device", "cpu"]) == 2
    (line,) = capsys.readouterr().out.splitlines()
    assert "missing wikitext-2/train.txt" in json.loads(line)["error"]


# ---- the scripts without a GPU -----------------------------------------------------------------------

@pytest.mark.parametrize("script", ["gpu_lm.py", "gpu_matmul_probe.py", "gpu_fp16_curve.py"])
def test_scripts_parse_help(script):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True,
                         timeout=60, env=env, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.startswith("usage:")


@no_gpu
def test_probe_without_a_gpu_prints_one_error_line(bench, capsys):
    assert bench("gpu_matmul_probe").main([]) == 2
    (line,) = capsys.readouterr().out.splitlines()
    assert "error" in json.loads(line)


def run_check(out, *args):
    env = dict(os.environ, OUT=str(out))
    return subprocess.run(["bash", str(BENCH / "gpu_check.sh"), *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=ROOT)


@no_gpu
def test_gpu_check_on_a_cpu_skips_the_gpu_parts(tmp_path):
    done = run_check(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["parts"]["env"]["status"] == "ok" and summary["ok"] and not summary["complete"]
    for part in ("pytest", "probe", "lm", "curve"):
        assert summary["parts"][part]["status"] == "skipped"
        assert summary["parts"][part]["reason"].startswith("skipped: no CuPy/GPU")
    printed = done.stdout[done.stdout.index("summary.json ("):]
    printed = json.loads(printed[printed.index("\n") + 1:])                  # printed last
    for entry in summary["parts"].values():
        assert entry.pop("note")                                            # the table shows the notes
    assert printed == summary


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0"
failures="1" skipped="1" tests="4" time="12.5"><testcase classname="tests.test_gpu" name="test_a"/>
<testcase classname="tests.test_gpu" name="test_b"><failure message="assert 0.1 &lt; 1e-4">x</failure>
</testcase><testcase classname="tests.test_gpu" name="test_c"/><testcase classname="t" name="d">
<skipped/></testcase></testsuite></testsuites>"""


def test_gpu_check_summary_merges_parts(tmp_path):
    out, prev = tmp_path / "rerun", tmp_path / "first.json"
    out.mkdir()
    status = {"rc": 1, "seconds": 20.0, "timeout_s": 140, "finished": "now"}
    (out / "pytest.status.json").write_text(json.dumps(dict(status, part="pytest", status="failed")))
    (out / "pytest.xml").write_text(JUNIT)
    (out / "lm.status.json").write_text(json.dumps(dict(status, part="lm", status="ok", rc=0)))
    rows = [{"run": "small", "precision": "fp16", "tokens_per_s": 5e4, "ratio_vs_torch": 0.8, "mfu": 0.05,
             "device": "NVIDIA H200", "steps": 10},
            {"summary": {"configs": 1, "measured": 1, "errors": [], "skipped": [], "by_precision": {}}}]
    (out / "lm.out").write_text("progress text\n" + "\n".join(json.dumps(r) for r in rows) + "\n")
    (out / "probe.status.json").write_text(json.dumps(dict(part="probe", status="skipped", rc=None,
                                                           seconds=0, reason="skipped: no CuPy/GPU")))
    first = {"parts": {"env": {"part": "env", "status": "ok", "result": {"python": "3.12"}},
                       "pytest": {"part": "pytest", "status": "ok"},
                       "probe": {"part": "probe", "status": "ok", "result": {"verdict": "float16 tensor cores"}},
                       "curve": {"part": "curve", "status": "timeout"}}}
    prev.write_text(json.dumps(first))
    done = run_check(out, "--merge", str(prev), "summary")
    assert done.returncode == 1, done.stdout + done.stderr                    # pytest failed, curve timed out
    s = json.loads((out / "summary.json").read_text())
    parts = s["parts"]
    assert list(parts) == ["env", "pytest", "probe", "lm", "curve"]
    assert parts["pytest"]["status"] == "failed" and "merged_from" not in parts["pytest"]   # this run wins
    r = parts["pytest"]["result"]
    assert (r["tests"], r["passed"], r["failures"], r["skipped"]) == (4, 2, 1, 1)
    assert r["failed_tests"] == ["tests.test_gpu::test_b [failure] assert 0.1 < 1e-4"]
    assert parts["probe"]["status"] == "ok" and parts["probe"]["merged_from"] == str(prev)   # skipped loses
    assert parts["env"]["merged_from"] == str(prev)
    assert parts["lm"]["result"]["rows"] == [{k: rows[0][k] for k in ("run", "precision", "tokens_per_s",
                                                                        "mfu", "ratio_vs_torch")}]
    assert s["failed_parts"] == ["pytest", "curve"] and not s["ok"] and "pytest curve" in s["rerun"]


def test_gpu_check_rejects_an_unknown_part(tmp_path):
    done = run_check(tmp_path, "nonsense")
    assert done.returncode == 2 and "unknown part" in done.stderr
