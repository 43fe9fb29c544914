"""bench/data_parallel.py: an unknown preset is one message (exit 2); a real one-step run of the tiny
preset with N = 1, N = 2 and N = 2 under ZeRO-1 (the last two need the mpi extra) gives one JSON line
whose ZeRO run keeps half the moments per rank."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "data_parallel.py"


def bench(*args, timeout=240):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout)


def test_an_unknown_preset_is_one_message_and_exit_2():
    done = bench("--presets", "tiny,huge")
    assert done.returncode == 2 and "no shape for huge" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow                                           # three short runs: ~3 s on 2 cores
def test_one_json_line_and_zero1_halves_the_moments_per_rank():
    done = bench("--presets", "tiny", "--steps", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])
    runs = {(r["ranks"], r["zero_stage"]): r for r in line["runs"]}
    assert sorted(runs) == [(1, 0), (2, 0), (2, 1)]
    one = runs[1, 0]
    assert one["tokens_per_s"] > 0 and len(one["moment_bytes_per_rank"]) == 1
    if importlib.util.find_spec("mpi4py") is None:
        assert "error" in runs[2, 1]                        # said, not a traceback of the bench
        return
    plain, zero = runs[2, 0], runs[2, 1]
    assert plain["moment_bytes_per_rank"] == one["moment_bytes_per_rank"] * 2   # [b, b]: each all
    assert [2 * b for b in zero["moment_bytes_per_rank"]] == plain["moment_bytes_per_rank"]
    assert all(mb > 0 for mb in zero["peak_rss_mb_per_rank"]) and "tiny" in line["speedup_2_over_1"]
    assert zero["allgather_ms_per_step"] > 0 and plain["allgather_ms_per_step"] == 0
