"""Lesson 20, "Your own GPT": its check fails on each of five planted bugs (in the assembly and in the
lesson 2, 7 and 9 answers it is built from) and says clearly when tinyshakespeare is not there.
(test_exercises.py grades the kept solution, which must pass, and the stubs, which must fail, as it
does for every lesson.)

A bug is planted by replacing one exact line of a copy of lessons/solutions/, so a change to the
solutions that moves the line makes the test fail loudly instead of passing for nothing.
"""
import re
import shutil
from pathlib import Path

import pytest
from datapaths import DATA

from glassformer.lessons.checks import lesson20
from glassformer.lessons.grading import CHECKS
from glassformer.lessons.runner import LESSONS, exec_file, run_check

REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "lessons" / "solutions"
LESSON = REPO / "lessons" / "20-your-own-gpt.md"
SHAKESPEARE = DATA / "tinyshakespeare" / "input.txt"
CAPSTONE = f"{LESSONS['20']}.py"

# (name, file, the solution's line, the bug, the checks that must fail, what the first one says)
BUGS = [
    ("missing causal mask", CAPSTONE,
     "y, att = L2.attention_forward(q, k, v, L2.causal_mask(T, T))",
     "y, att = L2.attention_forward(q, k, v)",
     ["block_forward", "gpt_forward", "train_step"], "is the causal mask missing?"),
    ("no 1/sqrt(d_head)", "02_attention.py",
     "scores = q @ k.swapaxes(-1, -2) / np.sqrt(D)",
     "scores = q @ k.swapaxes(-1, -2)",
     ["block_forward", "block_backward", "gpt_forward", "gpt_backward", "train_step"], "the block's output"),
    ("LayerNorm backward missing a term", "07_backprop_by_hand.py",
     "dx = rstd * (dx_hat - dx_hat.mean(axis=-1, keepdims=True)",
     "dx = rstd * (dx_hat - 0.0",
     ["block_backward", "gpt_backward", "train_step"], "disagrees with finite differences"),
    ("AdamW without bias correction", "09_training_loop.py",
     "m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)",
     "m_hat, v_hat = m, v",
     ["train_step"], "after step 1 (glassformer's AdamW gives the expected)"),
    ("residual dropped", CAPSTONE,
     'x1 = x + m @ p["attn.proj.W"] + p["attn.proj.b"]',
     'x1 = m @ p["attn.proj.W"] + p["attn.proj.b"]',
     ["block_forward", "block_backward", "gpt_forward", "gpt_backward", "train_step"], "the block's output"),
]


@pytest.fixture
def data(monkeypatch):
    """The checks' data folder is the tests' (the checks run in forked children: they see the env)."""
    if not SHAKESPEARE.is_file():
        pytest.skip(f"needs tinyshakespeare/input.txt in {DATA}: python -m glassformer.data fetch tinyshakespeare")
    monkeypatch.setenv("GLASSFORMER_DATA", str(DATA))


def planted(tmp_path, file, line, bug):
    """A copy of the solutions with one line of one file replaced; the capstone's path in it."""
    folder = tmp_path / "solutions"
    shutil.copytree(SOLUTIONS, folder)
    path = folder / file
    text = path.read_text(encoding="utf-8")
    assert text.count(line) == 1, f"{file} no longer holds the line the bug replaces: {line}"
    path.write_text(text.replace(line, bug), encoding="utf-8")
    return folder / CAPSTONE


def grade(path, names):
    """{name: (passed, reason)} of the named checks of lesson 20 on the file at path."""
    return {name: run_check("20", name, lambda: exec_file(path), path)[1:] for name in names}


@pytest.mark.parametrize("name, file, line, bug, failing, says", BUGS, ids=[b[0] for b in BUGS])
def test_a_planted_bug_fails_the_check(tmp_path, data, name, file, line, bug, failing, says):
    """Each bug fails the checks it should (the slow loss-target check aside); the first says why."""
    results = grade(planted(tmp_path, file, line, bug), [n for n in CHECKS["20"] if n != "train"])
    assert [n for n, (ok, _) in results.items() if not ok] == failing, results
    reason = results[failing[0]][1]
    assert says in reason and "not written" not in reason, reason


def test_without_the_data_the_training_checks_say_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSFORMER_DATA", str(tmp_path / "empty"))
    results = grade(SOLUTIONS / CAPSTONE, ["train_step", "train"])
    for passed, reason in results.values():
        assert not passed and "python -m glassformer.data fetch tinyshakespeare" in reason, reason
        assert "Traceback" not in reason


def test_the_lesson_states_the_target_the_check_requires():
    """The loss, the steps and the tolerance the lesson promises are the check's own numbers."""
    text = LESSON.read_text(encoding="utf-8")
    assert f"{lesson20.TARGET_STEPS} steps" in text
    assert re.search(rf"below {lesson20.TARGET_LOSS}\b", text)
    assert f"{lesson20.AGREE_STEPS} training steps" in text
    assert lesson20.AGREE_TOL == 1e-4 and "to 1e-4" in text
    assert f"the check allows {lesson20.TRAIN_SECONDS:g}" in text
