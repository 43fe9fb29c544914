"""bench/side_by_side.py without torch: nanoGPT's log parsed from a real run, the median and ratio
arithmetic, the target verdict, the commands it starts, the message when the peer's Python is missing,
and a round run with two stand-in Pythons (a chatty peer is not stalled; a failing side is named)."""
import os
import sys
from pathlib import Path

import pytest
from tools import bench_module

ROOT = Path(__file__).resolve().parents[2]

# nanoGPT's run_cpu.sh --log_interval=1 --max_iters=6 --lr_decay_iters=6 --eval_interval=3 --eval_iters=2
# (one thread, torch 2.13 CPU), its stdout from "tokens per iteration" on.
NANOGPT_LOG = """\
tokens per iteration will be: 768
found vocab_size = 65 (inside data/shakespeare_char/meta.pkl)
Initializing a new model from scratch
number of parameters: 0.80M
num decayed parameter tensors: 18, with 802,944 parameters
num non-decayed parameter tensors: 9, with 1,152 parameters
using fused AdamW: False
step 0: train loss 4.1667, val loss 4.1817
iter 0: loss 4.1828, time 418.33ms, mfu -100.00%
iter 1: loss 4.1656, time 167.48ms, mfu -100.00%
iter 2: loss 4.1197, time 166.36ms, mfu -100.00%
step 3: train loss 4.0666, val loss 4.0925
saving checkpoint to out-shakespeare-char
iter 3: loss 4.0581, time 433.78ms, mfu -100.00%
iter 4: loss 4.0312, time 164.55ms, mfu -100.00%
iter 5: loss 3.9713, time 160.56ms, mfu 0.01%
step 6: train loss 3.8982, val loss 3.9072
saving checkpoint to out-shakespeare-char
iter 6: loss 3.9089, time 418.27ms, mfu 0.01%
"""


@pytest.fixture(scope="module")
def sbs():
    """bench/side_by_side.py as a module."""
    return bench_module("side_by_side")


def test_nanogpt_ms_per_iter_leaves_out_iter_0_and_the_iterations_that_evaluated(sbs):
    got = sbs.parse_nanogpt_log(NANOGPT_LOG)
    assert got["iters_left_out"] == [0, 3, 6]               # start-up; step 3 and 6 evaluated + saved
    assert got["iters_timed"] == 4
    assert got["ms_per_iter"] == pytest.approx((167.48 + 166.36 + 164.55 + 160.56) / 4, abs=0.006)
    assert (got["val_loss"], got["train_loss_eval"]) == (3.9072, 3.8982)   # the last step line


def test_nanogpt_log_without_per_iteration_lines_says_to_log_every_iteration(sbs):
    only_logged_every_100 = "step 0: train loss 4.1667, val loss 4.1817\niter 0: loss 4.1828, time 418.33ms"
    with pytest.raises(ValueError, match="--log_interval=1"):
        sbs.parse_nanogpt_log(only_logged_every_100)


def test_medians_and_both_ratios(sbs):
    runs = [{"ours": {"t": 100.0, "q": 1.90}, "peer": {"t": 200.0, "q": 1.88}},
            {"ours": {"t": 90.0, "q": 1.87}, "peer": {"t": 100.0, "q": 1.89}},
            {"ours": {"t": 120.0, "q": 1.88}, "peer": {"t": 150.0, "q": 1.87}}]
    got = sbs.median_summary(runs, "t", "q")
    assert (got["ours"], got["peer"]) == (100.0, 150.0)
    assert got["ratio_of_medians"] == pytest.approx(100 / 150, abs=1e-4)
    assert got["ratio_median_of_runs"] == pytest.approx(0.8)   # per-run 0.5, 0.9, 0.8
    assert got["q"] == {"ours": 1.88, "peer": 1.88}


def test_verdict_reads_the_medians_against_the_targets_and_skips_shortened_runs(sbs):
    summary = {"ratio_of_medians": 0.75, "val_loss": {"ours": 1.885, "peer": 1.88}}
    assert sbs.verdict("shakespeare", summary, full_length=True) == {"ratio": True, "val_loss": True}
    summary["val_loss"]["ours"] = 1.95
    assert sbs.verdict("shakespeare", summary, full_length=True) == {"ratio": True, "val_loss": False}
    digits = {"ratio_of_medians": 0.61, "test_accuracy": {"ours": 1.0, "peer": 1.0}}
    assert sbs.verdict("digits", digits, full_length=True) == {"ratio": False, "test_accuracy": True}
    assert sbs.verdict("digits", digits, full_length=False) is None


def test_last_json_takes_the_last_json_line(sbs):
    assert sbs.last_json('progress\n{"a": 1}\nnoise {\n{"a": 2}\n', "ours") == {"a": 2}
    with pytest.raises(ValueError, match="ours printed no JSON"):
        sbs.last_json("only progress\n", "ours")


def test_both_sides_get_one_thread_and_the_peer_logs_every_iteration(sbs, tmp_path):
    args = sbs.parse_args(["shakespeare", "--iters", "200", "--eval-iters", "20", "--torch-python", "tp"])
    (ours, ours_env, _), (peer, peer_env, cwd) = sbs.commands(args, str(tmp_path))
    assert ours[ours.index("--iters") + 1] == "200" and ours[ours.index("--threads") + 1] == "1"
    assert {"--log_interval=1", "--max_iters=200", "--lr_decay_iters=200", "--eval_interval=200",
            "--eval_iters=20"} <= set(peer)
    for env in (ours_env, peer_env):
        assert env["OPENBLAS_NUM_THREADS"] == env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert peer_env["PY"] == "tp" and Path(peer_env["NANOGPT_WORK"]).parent == tmp_path
    args = sbs.parse_args(["digits", "--epochs", "2", "--torch-python", "tp"])
    _, (peer, peer_env, _) = sbs.commands(args, str(tmp_path))
    assert peer[0] == "tp" and peer[1].endswith("digits_torch.py")
    assert str(ROOT / "src") in peer_env["PYTHONPATH"].split(os.pathsep)   # glassformer for the init


def test_all_cores_gives_each_side_every_core_and_runs_them_one_after_the_other(sbs, tmp_path, monkeypatch):
    n = str(len(os.sched_getaffinity(0)))
    args = sbs.parse_args(["shakespeare", "--all-cores", "--iters", "20", "--torch-python", "tp"])
    (ours, ours_env, _), (_, peer_env, _) = sbs.commands(args, str(tmp_path))
    assert ours[ours.index("--threads") + 1] == n
    for env in (ours_env, peer_env):                        # run_cpu.sh reads THREADS (default 1)
        assert env["THREADS"] == env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == n
    code = 'import json, time; time.sleep(1.0); print(json.dumps({"ms_per_iter": 80.0, "val_loss": 1.88}))'
    peer = 'print("step 0: train loss 4.1, val loss 4.2")\nprint("iter 1: loss 2.0, time 90.00ms, mfu 1%")'
    monkeypatch.setattr(sbs, "commands", lambda a, work: (([sys.executable, "-c", code], ours_env, work),
                                                          ([sys.executable, "-c", peer], peer_env, work)))
    run = sbs.run_pair(args, 1)
    assert run["wall_s"]["peer"] >= run["wall_s"]["ours"] >= 1.0   # the peer started when ours ended


def test_mpi_runs_ours_as_a_one_thread_rank_per_core_and_the_peer_on_every_core(sbs, tmp_path):
    n = str(len(os.sched_getaffinity(0)))
    args = sbs.parse_args(["shakespeare", "--all-cores", "--mpi", "--iters", "20", "--torch-python", "tp"])
    (ours, ours_env, _), (_, peer_env, _) = sbs.commands(args, str(tmp_path))
    assert ours[:3] == ["mpiexec", "-n", n] and ours[ours.index("--threads") + 1] == "1"
    assert ours_env["OPENBLAS_NUM_THREADS"] == "1" and peer_env["THREADS"] == n
    for argv in (["shakespeare", "--mpi"], ["digits", "--all-cores", "--mpi"]):
        with pytest.raises(SystemExit):                     # --mpi is for shakespeare --all-cores only
            sbs.parse_args(argv)


def test_a_missing_peer_python_is_one_message_and_exit_2(sbs, tmp_path, capsys):
    assert sbs.main(["digits", "--torch-python", str(tmp_path / "no-such-python")]) == 2
    err = capsys.readouterr().err
    assert "no Python at" in err and "--torch-python" in err and "Traceback" not in err


def test_a_python_without_torch_is_named_with_its_import_error(sbs, tmp_path):
    fake = tmp_path / "python"                              # a "Python" whose import of torch fails
    fake.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(sbs.PeerMissing, match=r"cannot import torch and numpy \(ModuleNotFoundError"):
        sbs.check_torch_python(str(fake))
    good = tmp_path / "good-python"                         # one that imports both: no complaint
    good.write_text("#!/bin/sh\nexit 0\n")
    good.chmod(0o755)
    sbs.check_torch_python(str(good))


def fake_pair(monkeypatch, sbs, ours_code, peer_code):
    """Make run_pair start two small Pythons instead of the real pair."""
    def commands(args, work):
        env = sbs.thread_env()
        return ([sys.executable, "-c", ours_code], env, work), ([sys.executable, "-c", peer_code], env, work)
    monkeypatch.setattr(sbs, "commands", commands)


def test_a_chatty_peer_is_not_stalled_while_ours_still_runs(sbs, monkeypatch):
    ours = 'import json, time; time.sleep(1.5); print(json.dumps({"ms_per_iter": 80.0, "val_loss": 1.88}))'
    peer = ('print("step 0: train loss 4.1, val loss 4.2")\n'       # ~200 KB: more than a pipe holds
            'for k in range(4001): print(f"iter {k}: loss 2.0000, time {100 + k % 2}.00ms, mfu 1.00%")\n'
            'print("step 4000: train loss 1.80, val loss 1.87")')
    fake_pair(monkeypatch, sbs, ours, peer)
    run = sbs.run_pair(sbs.parse_args(["shakespeare", "--torch-python", sys.executable]), 1)
    assert run["peer"]["ms_per_iter"] == pytest.approx(100.5, abs=0.01)   # iters 1..3999 timed
    assert run["peer"]["iters_left_out"] == [0, 4000] and run["peer"]["val_loss"] == 1.87
    assert run["ratio"] == pytest.approx(80.0 / 100.5, abs=1e-4)
    assert run["wall_s"]["peer"] < run["wall_s"]["ours"]     # it ended while ours slept


def test_a_side_that_fails_is_named_with_its_last_lines(sbs, monkeypatch):
    fake_pair(monkeypatch, sbs, 'import sys; sys.exit("ours broke: no data")', 'print("{}")')
    with pytest.raises(RuntimeError, match="ours exited with status 1:\nours broke: no data"):
        sbs.run_pair(sbs.parse_args(["digits", "--torch-python", sys.executable]), 1)


def test_the_peer_python_comes_from_the_flag_or_peer_python_as_in_bench_gpt2(sbs, monkeypatch):
    assert sbs.parse_args(["digits", "--peer-python", "pp"]).torch_python == "pp"
    monkeypatch.setenv("PEER_PYTHON", "/venv/bin/python")
    monkeypatch.setenv("TORCH_PYTHON", "/tmp/tv/bin/python")
    assert sbs.parse_args(["digits"]).torch_python == "/venv/bin/python"
