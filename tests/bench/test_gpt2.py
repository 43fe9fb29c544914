"""bench/gpt2.py without torch: ours and the peer each in a process of its own, started together with
the same threads; the ratios and medians; a peer Python that cannot run is named, never a traceback."""
import json
import sys

import pytest
from tools import bench_module


@pytest.fixture(scope="module")
def bench():
    """bench/gpt2.py as a module."""
    return bench_module("gpt2")


def side(load, load_cpu, tps, decode_cpu, fb, fb_cpu):
    """One side's result as the child prints it."""
    return {"load_s": load, "load_cpu_s": load_cpu, "generate": {"tokens_per_s": tps, "cpu_s": decode_cpu},
            "forward_backward": {"wall_s": fb, "cpu_s": fb_cpu}}


def test_ratios_are_ours_over_theirs_wall_and_cpu(bench):
    got = bench.ratios(side(0.2, 0.1, 30.0, 2.0, 1.5, 1.4), side(0.1, 0.2, 20.0, 4.0, 2.0, 2.0))
    assert got == {"load": 2.0, "load_cpu": 0.5, "decode_tokens_per_s": 1.5, "decode_cpu": 0.5,
                   "forward_backward": 0.75, "forward_backward_cpu": 0.7}


def test_medians_of_runs(bench):
    rows = [{"a": 1.0, "b": 5.0}, {"a": 3.0, "b": 4.0}, {"a": 2.0, "b": 9.0}]
    assert bench.medians(rows) == {"a": 2.0, "b": 5.0}


def test_both_children_measure_the_same_folder_prompt_and_threads(bench):
    args = bench.parse_args(["--threads", "2", "--new-tokens", "8", "--peer-python", "pp"])
    mine = bench.child_argv(args, sys.executable, "ours", "/f", [5, 7])
    peer = bench.child_argv(args, args.peer_python, "theirs", "/f", [5, 7])
    assert peer[0] == "pp" and mine[0] == sys.executable
    assert mine[2:] == ["--role", "ours"] + peer[4:] and peer[2:4] == ["--role", "theirs"]
    for flag, value in (("--threads", "2"), ("--new-tokens", "8"), ("--prompt", "5,7"), ("--folder", "/f")):
        assert peer[peer.index(flag) + 1] == value


def test_a_peer_python_that_cannot_run_is_named_and_ours_still_counts(bench, monkeypatch, tmp_path):
    ours = {"load_s": 0.1}

    def child_argv(args, python, role, folder, prompt):
        if role == "ours":
            return [sys.executable, "-c", f"print({json.dumps(json.dumps(ours))})"]
        return [python, "-c", "pass"]
    monkeypatch.setattr(bench, "child_argv", child_argv)
    args = bench.parse_args(["--peer-python", str(tmp_path / "no-such-python")])
    mine, peer = bench.run_round(args, str(tmp_path), [1, 2])
    assert mine == ours
    assert "no-such-python" in peer["skipped"] and "torch and transformers" in peer["skipped"]


def test_a_peer_that_fails_is_named_with_its_last_lines(bench, monkeypatch, tmp_path):
    def child_argv(args, python, role, folder, prompt):
        code = 'print("{}")' if role == "ours" else 'import sys; sys.exit("no module named torch")'
        return [sys.executable, "-c", code]
    monkeypatch.setattr(bench, "child_argv", child_argv)
    _, peer = bench.run_round(bench.parse_args([]), str(tmp_path), [1])
    assert peer["skipped"].startswith("theirs exited with status 1")
    assert "no module named torch" in peer["skipped"]
