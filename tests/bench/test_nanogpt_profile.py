"""bench/nanogpt_profile.py: its grouping of torch.profiler's operators (stand-in events, no torch), the
message for a folder without nanoGPT, and a real run where torch and the nanoGPT anchor are present."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "nanogpt_profile.py"


@pytest.fixture(scope="module")
def prof():
    """The script as a module (loaded by path: bench/ on sys.path would shadow `profile`)."""
    spec = importlib.util.spec_from_file_location("nanogpt_profile", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event(key, self_us, total_us=None):
    return SimpleNamespace(key=key, self_cpu_time_total=self_us, cpu_time_total=total_us or self_us)


def test_groups_add_self_times_per_step_and_adamw_counts_its_ops(prof):
    events = [event("aten::mm", 6000), event("aten::addmm", 2000), event("aten::gelu", 1000),
              event("aten::gelu_backward", 3000), event("Optimizer.step#AdamW.step", 500, 4000),
              event("aten::native_layer_norm", 400), event("aten::mul_", 100)]
    groups = prof.group_times(events, steps=2)
    assert groups == {"matmul": 4.0, "gelu": 2.0, "attention": 0.0, "layer_norm": 0.2, "adamw": 2.0,
                      "total": 6.5}


def test_a_folder_without_nanogpt_is_one_message_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--nanogpt", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (f"nanogpt_profile.py: no model.py in {tmp_path}; pass nanoGPT's folder "
                                   "with --nanogpt")


def test_a_real_run_prints_one_json_line_with_the_matrix_products_inside_the_step():
    pytest.importorskip("torch")
    if not (ROOT.parent / "shared" / "anchors" / "nanoGPT" / "model.py").is_file():
        pytest.skip("the nanoGPT anchor is not beside the repository")
    done = subprocess.run([sys.executable, str(SCRIPT), "--steps", "3"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    record = json.loads(line)
    times = record["profiled_ms_per_step"]
    assert record["bias"] is False and 0 < times["matmul"] < times["total"]
    assert all(times[k] > 0 for k in ("gelu", "attention", "layer_norm", "adamw"))
