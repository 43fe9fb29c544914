"""The course's exercises: stubs a student fills in, solutions kept apart, and the checker that grades them.

Every check passes on lessons/solutions, fails on the untouched stubs in lessons/exercises, fails on
answers that return nothing useful, and, for the important exercises, fails on a plausible wrong answer.
"""
import ast
import inspect
import io
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from datapaths import DATA

from glassformer.cli.lessons import main
from glassformer.lessons.grading import CHECKS
from glassformer.lessons.runner import LESSONS, NOT_WRITTEN, grade_file, load_file, run_check

REPO = Path(__file__).resolve().parents[2]
EXERCISES, SOLUTIONS = REPO / "lessons" / "exercises", REPO / "lessons" / "solutions"
SPOILER = "# SPOILER"
DATA_CHECKS = {"20": ("train_step", "train")}               # they train on tinyshakespeare
HAVE_DATA = (DATA / "tinyshakespeare" / "input.txt").is_file()


@pytest.fixture(autouse=True)
def data_home(monkeypatch):
    """The checks' data folder is the tests' (the checks run in forked children: they see the env)."""
    monkeypatch.setenv("GLASSFORMER_DATA", str(DATA))


def solution(lesson):
    module, error = load_file(SOLUTIONS / f"{LESSONS[lesson]}.py")
    assert module is not None, error
    return module


def with_answer(lesson, name, fn):
    """The solutions of a lesson with one exercise replaced by fn."""
    ns = types.SimpleNamespace(**vars(solution(lesson)))
    setattr(ns, name, fn)
    return ns


def result(lesson, namespace, name):
    """(name, passed, reason) of one check (grade() would run the lesson's every check, each in a child)."""
    return run_check(lesson, name, lambda: namespace)


# ---- the files ---------------------------------------------------------------------------------------------

def test_there_are_enough_exercises_in_every_lesson():
    counts = {lesson: len(CHECKS[lesson]) for lesson in LESSONS}
    assert sum(counts.values()) >= 40, counts
    assert all(n >= 3 for n in counts.values()), counts


def test_the_files_follow_the_lessons_names():
    """lessons/NN-slug.md -> exercises/NN_slug.py and solutions/NN_slug.py, nothing else there.

    Lessons 15 to 19 have the short names fixed when they were planned (15_init_dropout.py, ...)."""
    for md in sorted((REPO / "lessons").glob("[0-9][0-9]-*.md")):
        assert md.name[:2] in LESSONS, f"{md.name} has no exercises"
        if int(md.name[:2]) <= 14:
            assert LESSONS[md.name[:2]] == md.stem.replace("-", "_"), md.name
    for folder in (EXERCISES, SOLUTIONS):
        assert sorted(p.stem for p in folder.glob("*.py")) == sorted(LESSONS.values()), folder


@pytest.mark.parametrize("lesson", list(LESSONS))
def test_stub_and_solution_define_the_same_exercises(lesson):
    """Same public functions, signatures and docstrings in both files; every one of them is checked."""
    stub_text = (EXERCISES / f"{LESSONS[lesson]}.py").read_text(encoding="utf-8")
    sol_text = (SOLUTIONS / f"{LESSONS[lesson]}.py").read_text(encoding="utf-8")
    assert sol_text.startswith("# ====") and SPOILER in sol_text.split('"""')[0], "no SPOILER banner"
    assert SPOILER not in stub_text

    def public(text):
        tree = ast.parse(text)
        return {n.name: (ast.dump(n.args), ast.get_docstring(n)) for n in tree.body
                if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}

    stubs, sols = public(stub_text), public(sol_text)
    assert stubs == sols
    assert list(stubs) == list(CHECKS[lesson]), "the order and names must match the checks"
    for name, (_, doc) in stubs.items():
        assert doc and f"lesson {int(lesson)}" in doc, f"{name}: the docstring names no lesson section"
    stub = load_file(EXERCISES / f"{LESSONS[lesson]}.py")[0]
    for name in stubs:                                      # a stub's body is one raise
        body = ast.parse(inspect.getsource(getattr(stub, name))).body[0].body
        assert isinstance(body[-1], ast.Raise) and len(body) == 2, name


# ---- every check: passes on the solutions, fails on the stubs and on junk -----------------------------------

@pytest.mark.parametrize("lesson", list(LESSONS))
def test_every_check_passes_on_the_solutions(lesson):
    if lesson in DATA_CHECKS and not HAVE_DATA:
        pytest.skip(f"lesson {lesson}'s checks need tinyshakespeare/input.txt in {DATA}: "
                    "python -m glassformer.data fetch tinyshakespeare")
    results = grade_file(lesson, SOLUTIONS / f"{LESSONS[lesson]}.py")
    assert [(n, r) for n, ok, r in results if not ok] == []
    assert len(results) == len(CHECKS[lesson])


@pytest.mark.parametrize("lesson", list(LESSONS))
def test_every_check_fails_on_the_untouched_stubs(lesson):
    results = grade_file(lesson, EXERCISES / f"{LESSONS[lesson]}.py")
    assert [n for n, ok, _ in results if ok] == []
    assert all(reason == NOT_WRITTEN for _, _, reason in results), results


JUNK = {"returns None": lambda *a, **k: None,
        "returns its first argument": lambda *a, **k: a[0],
        "returns zeros": lambda *a, **k: 0.0 if callable(a[0]) else np.zeros(np.shape(a[0]))}


@pytest.mark.parametrize("junk", list(JUNK))
def test_no_check_passes_an_answer_that_does_nothing(junk):
    passed = [(lesson, name) for lesson in LESSONS for name in CHECKS[lesson]
              if result(lesson, types.SimpleNamespace(**{name: JUNK[junk]}), name)[1]]
    assert passed == []


# ---- plausible wrong answers are caught ---------------------------------------------------------------------

def attend_backward_no_subtraction(dy, q, k, v, att):
    """The softmax Jacobian's diagonal only: att * datt, forgetting - att * <datt, att>."""
    datt = dy @ v.swapaxes(-1, -2)
    dscores = att * datt / np.sqrt(q.shape[-1])
    return dscores @ k, dscores.swapaxes(-1, -2) @ q, att.swapaxes(-1, -2) @ dy


def dropout_without_rescaling(x, p, rng, training=True):
    if not training or p == 0:
        return x, None
    mask = (rng.random(x.shape) >= p).astype(float)
    return x * mask, mask


def adamw_without_bias_correction(p, g, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    b1, b2 = betas
    p = p * (1 - lr * weight_decay)
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    return p - lr * m / (np.sqrt(v) + eps), m, v


def adam_with_l2(p, g, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """Coupled decay: the L2 term goes through the moments (Adam + L2, not AdamW)."""
    g = g + weight_decay * p
    b1, b2 = betas
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    return p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps), m, v


def cross_entropy_grad_over_all_rows(logits, targets, ignore_index=None):
    """Divides by every row, ignored ones included."""
    counted = np.ones(len(targets), bool) if ignore_index is None else targets != ignore_index
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p[np.arange(len(targets)), np.where(counted, targets, 0)] -= 1
    return p * counted[:, None] / len(targets)


def layer_norm_backward_no_mean(dout, x, gamma, eps=1e-5):
    """Treats the mean as a constant: drops the - mean(dx_hat) term."""
    mu = x.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    x_hat, dx_hat = (x - mu) * rstd, dout * gamma
    dx = rstd * (dx_hat - x_hat * (dx_hat * x_hat).mean(-1, keepdims=True))
    C = x.shape[-1]
    return dx, (dout * x_hat).reshape(-1, C).sum(0), dout.reshape(-1, C).sum(0)


def embedding_backward_fancy_index(ids, dout, vocab_size):
    """dW[ids] += dout: a repeated id keeps only one of its rows."""
    dW = np.zeros((vocab_size, dout.shape[-1]))
    dW[ids.reshape(-1)] += dout.reshape(-1, dout.shape[-1])
    return dW


def numerical_grad_forward_difference(f, x, h=1e-5):
    grad, f0 = np.zeros(x.shape), f()
    for idx in np.ndindex(*x.shape):
        old = x[idx]
        x[idx] = old + h
        grad[idx] = (f() - f0) / h
        x[idx] = old
    return grad


def gradient_check_with_ones(forward, backward, x, rng, h=1e-5):
    """Upstream of ones: misses a backward that ignores dout."""
    dout = np.ones(np.shape(forward(x)))
    forward(x)
    analytic = backward(dout)
    numeric = np.zeros(x.shape)
    for idx in np.ndindex(*x.shape):
        old = x[idx]
        x[idx] = old + h
        fp = float((forward(x) * dout).sum())
        x[idx] = old - h
        fm = float((forward(x) * dout).sum())
        x[idx] = old
        numeric[idx] = (fp - fm) / (2 * h)
    return float(np.abs(analytic - numeric).max() / max(np.abs(numeric).max(), 1e-3))


def kv_cache_step_without_the_new_key(q, k_new, v_new, cache_k, cache_v):
    """Attends over the cache before appending: the token cannot see itself (and step 0 has no keys)."""
    if cache_k.shape[2] == 0:
        y = v_new
    else:
        s = q @ cache_k.swapaxes(-1, -2) / np.sqrt(q.shape[-1])
        w = np.exp(s - s.max(-1, keepdims=True))
        y = (w / w.sum(-1, keepdims=True)) @ cache_v
    return y, np.concatenate([cache_k, k_new], 2), np.concatenate([cache_v, v_new], 2)


def bpe_merge_step_largest_tie(words, new_id):
    """Breaks ties towards the largest pair."""
    sol = solution("12")
    pairs = sol.count_pairs(words)
    best = max(pairs, key=lambda pair: (pairs[pair], pair))
    merged = {}
    for w, n in words.items():
        key = tuple(sol.merge_pair(list(w), *best, new_id))
        merged[key] = merged.get(key, 0) + n
    return best, merged


def xavier_with_he_scale(d_in, d_out, rng):
    a = np.sqrt(6.0 / d_in)
    return rng.uniform(-a, a, (d_in, d_out))


def split_heads_plain_reshape(x, n_heads):
    B, T, C = x.shape
    return x.reshape(B, n_heads, T, C // n_heads)


def all_reduce_sum(grads_per_rank):
    total = [np.sum(np.stack(parts), axis=0) for parts in zip(*grads_per_rank)]
    return [[g.copy() for g in total] for _ in grads_per_rank]


def combine_uneven_plain_mean(grads_per_rank, counts):
    return [np.mean(np.stack(parts), axis=0) for parts in zip(*grads_per_rank)]


def zero1_even_slices(p, g, m_shards, v_shards, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """Slices of n // n_ranks each: the last rank's remainder is never updated."""
    n, k = len(p), len(p) // len(m_shards)
    new = p.copy()
    for r, (m, v) in enumerate(zip(m_shards, v_shards)):
        lo, hi = r * k, (r + 1) * k
        got = solution("19").zero1_adam_step(p[lo:hi], g[lo:hi], [m[:hi - lo]], [v[:hi - lo]], t, lr,
                                             betas, eps)
        new[lo:hi] = got
    return new


def zero1_without_bias_correction(p, g, m_shards, v_shards, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """The moments right, the update with m / (sqrt(v) + eps): too small in the first steps."""
    n, n_ranks = len(p), len(m_shards)
    b1, b2 = betas
    new = p.copy()
    for r, (m, v) in enumerate(zip(m_shards, v_shards)):
        lo, hi = r * n // n_ranks, (r + 1) * n // n_ranks
        m[...] = b1 * m + (1 - b1) * g[lo:hi]
        v[...] = b2 * v + (1 - b2) * g[lo:hi] ** 2
        new[lo:hi] = p[lo:hi] - lr * m / (np.sqrt(v) + eps)
    return new


def answer_targets_with_question(ids, answer_start, lengths, ignore_index=-100):
    """Grades the question too (ignores only the padding)."""
    targets = ids[:, 1:].copy()
    targets[np.arange(1, ids.shape[1])[None, :] >= np.asarray(lengths)[:, None]] = ignore_index
    return ids[:, :-1], targets


def post_ln_instead(x, attn, ffn, ln1, ln2):
    h = ln1(x + attn(x))
    return ln2(h + ffn(h))


def cross_attention_backward_key_path_only(dout, x, memory, Wq, Wk, Wv, Wo, n_heads, memory_mask=None):
    """dmemory through k only, forgetting the value path."""
    dx, _ = solution("17").cross_attention_backward(dout, x, memory, Wq, Wk, Wv, Wo, n_heads, memory_mask)
    _, dmem_v_zero = solution("17").cross_attention_backward(dout, x, memory, Wq, Wk, np.zeros_like(Wv),
                                                              Wo, n_heads, memory_mask)
    return dx, dmem_v_zero


WRONG = [
    ("07", "attend_backward", attend_backward_no_subtraction, "dq"),
    ("15", "dropout_forward", dropout_without_rescaling, "1 / (1 - p)"),
    ("09", "adamw_step", adamw_without_bias_correction, "after step 1"),
    ("09", "adamw_step", adam_with_l2, "weight_decay=0.1"),
    ("06", "cross_entropy_grad", cross_entropy_grad_over_all_rows, "ignore_index=-100"),
    ("07", "layer_norm_backward", layer_norm_backward_no_mean, "dx"),
    ("01", "embedding_backward", embedding_backward_fancy_index, "repeated"),
    ("08", "numerical_grad", numerical_grad_forward_difference, "finite differences"),
    ("08", "gradient_check", gradient_check_with_ones, "ignores dout"),
    ("11", "kv_cache_step", kv_cache_step_without_the_new_key, "y at step 1"),   # at step 0 v_new is the answer
    ("12", "bpe_merge_step", bpe_merge_step_largest_tie, "tie"),
    ("15", "xavier_uniform", xavier_with_he_scale, "outside"),
    ("02", "split_heads", split_heads_plain_reshape, "split_heads"),
    ("19", "all_reduce_mean", all_reduce_sum, "gradient"),
    ("19", "combine_uneven", combine_uneven_plain_mean, "big batch"),
    ("19", "zero1_adam_step", zero1_even_slices, "parameters after step 1"),
    ("19", "zero1_adam_step", zero1_without_bias_correction, "after step 1"),
    ("18", "answer_only_targets", answer_targets_with_question, "targets"),
    ("04", "pre_ln_block", post_ln_instead, "pre-LN"),
    ("17", "cross_attention_backward", cross_attention_backward_key_path_only, "dmemory"),
]


@pytest.mark.parametrize("lesson, name, wrong, says", WRONG, ids=[w[2].__name__ for w in WRONG])
def test_a_plausible_wrong_answer_fails_and_says_where(lesson, name, wrong, says):
    _, passed, reason = result(lesson, with_answer(lesson, name, wrong), name)
    assert not passed
    assert says in reason and "not written" not in reason, reason


# ---- the command line ---------------------------------------------------------------------------------------

def run_cli(argv, cwd, monkeypatch):
    monkeypatch.chdir(cwd)
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)                 # main's boundary (run_main) writes there
    code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def course(tmp_path):
    """A copy of lessons/exercises and lessons/solutions under tmp_path/lessons."""
    for name in ("exercises", "solutions"):
        shutil.copytree(REPO / "lessons" / name, tmp_path / "lessons" / name)
    return tmp_path


def test_check_one_lesson_on_the_stubs_and_on_the_solutions(course, monkeypatch):
    code, out, _ = run_cli(["check", "7"], course, monkeypatch)
    lines = out.splitlines()
    assert code == 1
    assert lines[0] == f"lesson 07: {Path('lessons/exercises/07_backprop_by_hand.py')}"
    assert lines[1:-1] == [f"  FAIL  {n}: {NOT_WRITTEN}" for n in CHECKS["07"]]
    assert lines[-1] == f"0 passed, {len(CHECKS['07'])} failed"
    code, out, _ = run_cli(["check", "07", "--solutions"], course, monkeypatch)
    assert code == 0 and out.splitlines()[-1] == f"{len(CHECKS['07'])} passed, 0 failed"
    assert all(line.startswith("  pass  ") for line in out.splitlines()[1:-1])


def test_check_all(course, monkeypatch):
    total = sum(len(c) for c in CHECKS.values())
    missing = 0 if HAVE_DATA else sum(len(names) for names in DATA_CHECKS.values())   # no data: they fail
    code, out, _ = run_cli(["check", "--all", "--solutions"], course, monkeypatch)
    assert code == (1 if missing else 0) and out.splitlines()[-1] == f"{total - missing} passed, {missing} failed"
    assert [line[7:9] for line in out.splitlines() if line.startswith("lesson ")] == list(LESSONS)
    code, out, _ = run_cli(["check", "--all"], course, monkeypatch)
    assert code == 1 and out.splitlines()[-1] == f"0 passed, {total} failed"


def test_a_students_partly_done_file(course, monkeypatch):
    """Written answers pass, a bug is reported with its line, a stub is 'not written yet', no traceback."""
    path = course / "lessons" / "exercises" / "06_softmax_cross_entropy.py"
    text = path.read_text(encoding="utf-8")
    sol = (SOLUTIONS / "06_softmax_cross_entropy.py").read_text(encoding="utf-8")
    logsumexp = sol[sol.index("def logsumexp"):sol.index("def log_softmax")]
    text = text.replace(text[text.index("def logsumexp"):text.index("def log_softmax")], logsumexp)
    text = text.replace("    raise NotImplementedError\n\n\ndef cross_entropy(",
                        "    return z[0, 0, 0]\n\n\ndef cross_entropy(", 1)
    path.write_text(text, encoding="utf-8")
    code, out, err = run_cli(["check", "06"], course, monkeypatch)
    lines = out.splitlines()
    assert code == 1 and err == ""
    assert lines[1] == "  pass  logsumexp"
    assert lines[2].startswith("  FAIL  log_softmax: IndexError: ")
    assert "06_softmax_cross_entropy.py, line " in lines[2] and "return z[0, 0, 0])" in lines[2]
    assert lines[3] == f"  FAIL  cross_entropy: {NOT_WRITTEN}"
    assert lines[-1] == "1 passed, 3 failed"
    assert "Traceback" not in out


def test_a_file_that_does_not_load(course, monkeypatch):
    path = course / "lessons" / "exercises" / "13_gpu.py"
    path.write_text(path.read_text(encoding="utf-8") + "\ndef broken(:\n", encoding="utf-8")
    code, out, _ = run_cli(["check", "13"], course, monkeypatch)
    assert code == 1 and "FAIL  fp16_spacing: the file does not load: SyntaxError" in out
    (course / "lessons" / "exercises" / "14_looking_inside.py").write_text(
        "import numpy as np\n\ndef rope_rotate(x, offset=0, base=10000.0):\n    return x\n")
    code, out, _ = run_cli(["check", "14"], course, monkeypatch)
    assert code == 1 and "FAIL  copy_fraction: no function named copy_fraction in 14_looking_inside.py" in out


def test_grading_one_folder_never_imports_the_other(course, monkeypatch):
    """A solution file that cannot even load does not disturb grading the stubs, and vice versa."""
    for name in ("solutions", "exercises"):
        for path in (course / "lessons" / name).glob("*.py"):
            path.write_text("raise RuntimeError('this folder was imported')\n")
        flag = ["--solutions"] if name == "exercises" else []
        code, out, _ = run_cli(["check", "--all", *flag], course, monkeypatch)
        assert "this folder was imported" not in out
        shutil.rmtree(course / "lessons" / name)
        shutil.copytree(REPO / "lessons" / name, course / "lessons" / name)


@pytest.mark.parametrize("argv, says", [
    (["check", "42"], "no exercises for lesson '42'"),
    (["check", "abc"], "no exercises for lesson 'abc'"),
    (["check", "03", "--dir", "nowhere"], "no such folder"),
    (["check", "03", "--dir", "."], "not found"),
])
def test_bad_usage_is_one_line_and_exit_2(course, monkeypatch, argv, says):
    code, out, err = run_cli(argv, course, monkeypatch)
    assert code == 2 and err.startswith("error: ") and says in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["check"], ["check", "03", "--all"], ["check", "03", "--solutions", "--dir", "x"],
                                  []])
def test_bad_flags_exit_2(course, monkeypatch, argv):
    code, _, err = run_cli(argv, course, monkeypatch)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1   # one line, no usage


def test_dir_grades_any_folder(course, monkeypatch):
    folder = course / "mine"
    folder.mkdir()
    shutil.copy(SOLUTIONS / "19_data_parallel.py", folder)
    code, out, _ = run_cli(["check", "19", "--dir", str(folder)], course, monkeypatch)
    assert code == 0 and out.splitlines()[-1] == f"{len(CHECKS['19'])} passed, 0 failed"


def test_list_names_every_exercise(course, monkeypatch):
    code, out, _ = run_cli(["list"], course, monkeypatch)
    assert code == 0 and "07_backprop_by_hand.py: linear_backward, " in out
    assert len(out.splitlines()) == len(LESSONS)


def test_python_dash_m_from_elsewhere_finds_the_repository(tmp_path):
    """Outside the repository (no ./lessons/exercises), the checker finds the repo's lessons/."""
    proc = subprocess.run([sys.executable, "-m", "glassformer.lessons", "check", "16", "--solutions"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert str(SOLUTIONS / "16_char_model.py") in proc.stdout
    assert proc.stdout.splitlines()[-1] == f"{len(CHECKS['16'])} passed, 0 failed"


def test_an_endless_loop_fails_its_exercise_and_grading_goes_on(course, monkeypatch):
    """A student's `while True` (even inside `except Exception`) is stopped and reported; the rest is graded."""
    from glassformer.lessons import runner
    monkeypatch.setattr(runner, "CHECK_SECONDS", 0.5)
    path = course / "lessons" / "exercises" / "06_softmax_cross_entropy.py"
    text = path.read_text(encoding="utf-8")
    text = text.replace("    raise NotImplementedError\n\n\ndef log_softmax(",
                        "    while True:\n        try:\n            pass\n        except Exception:\n"
                        "            pass\n\n\ndef log_softmax(", 1)
    path.write_text(text, encoding="utf-8")
    code, out, err = run_cli(["check", "06"], course, monkeypatch)
    lines = out.splitlines()
    assert code == 1 and err == "" and "Traceback" not in out
    assert lines[1] == "  FAIL  logsumexp: no answer within 0.5 s: an endless loop?"
    assert lines[2] == f"  FAIL  log_softmax: {NOT_WRITTEN}" and lines[-1] == "0 passed, 4 failed"
    path.write_text("while True:\n    pass\n", encoding="utf-8")      # a file that never finishes loading
    code, out, _ = run_cli(["check", "06"], course, monkeypatch)
    assert code == 1 and "FAIL  logsumexp: the file does not load: no answer within 0.5 s" in out
