"""The course states its facts right (issue 28, section 2): each fixed sentence is checked here, old
wording absent and new wording present, so that an edit cannot quietly bring the error back.

The facts that code can check are checked by the lessons' own blocks (tests/course/test_lessons.py runs them):
lesson 2's O(T^2) table, lesson 15's scaled residual init, lesson 17's summed dmemory."""
import re
from pathlib import Path

import pytest

LESSONS = Path(__file__).resolve().parents[2] / "lessons"


def text(name):
    """A lesson's markdown with runs of whitespace (line breaks too) made one space."""
    path = LESSONS / name if name.endswith(".md") else next(LESSONS.glob(f"{name}-*.md"))
    return " ".join(path.read_text(encoding="utf-8").split())


FACTS = [   # (lesson, wrong wording that must be gone, right wording that must be there)
    ("07", "`bias=False`, as nanoGPT's are", "its default is `bias=True`"),
    ("15", "GPT-2's choice, used by every language-model preset: every matrix is normal",
     "nanoGPT draws them with standard deviation `0.02 / sqrt(2 * n_layer)`"),
    ("19", "several hundred times", "about 125 times more than the q and v parts in float32"),
    ("19", "The float32 `3e-06`", "The float32 `5e-06`"),
    ("10", "that it happens at a constant rate does not", "with seed 4 the training loss falls at every epoch"),
    ("13", "The gradients of activations are often tiny (the median gradient",
     "the median *parameter* gradient measured below"),
    ("16", "drives its rows towards the normalised counts", "towards the *log* of the normalised counts, up to a "
     "constant per row: it is the row's softmax that approaches the counts"),
    ("01", "attention scores depend only on the offset", "position enters the scores only through the offset"),
    ("14", "The score depends on the *offset* `n - m` only.", "Position enters the score only through the *offset*"),
    ("09", "The usual practice, followed by `decay_mask`", "nanoGPT decays every tensor of 2 or more dimensions"),
    ("09", "each step moves a parameter by at most about `lr`", "about `3.2 * lr` with the default betas"),
    ("17", "two.decoder[1].cross_attn.proj.W[...] = 0.0", "np.allclose(arrived[0], dms[0] + dms[1])"),
    ("16", "mostly real English words", "Of its 30 words, 23 are English"),
    ("02", None, "### The cost: O(T²) time and memory"),
    ("README.md", "the slowest lessons (4, 14, 16, 9 and 17)", "the slowest lessons (14, 4, 18 and 16)"),
    ("16", "--data input.txt", "--data tinyshakespeare"),
    ("README.md", "text as `input.txt`", "`python -m glassformer.data fetch tinyshakespeare`"),
]


@pytest.mark.parametrize("lesson, wrong, right", FACTS, ids=[f"{f[0]}-{i}" for i, f in enumerate(FACTS)])
def test_a_fixed_fact_stays_fixed(lesson, wrong, right):
    body = text(lesson)
    if wrong:
        assert wrong not in body, f"lesson {lesson} still says {wrong!r}"
    assert right in body, f"lesson {lesson} should say {right!r}"


def test_the_adam_bound_is_kingma_and_bas():
    """(1 - b1) / sqrt(1 - b2) with the default betas is the 3.2 the lesson states."""
    assert round((1 - 0.9) / (1 - 0.999) ** 0.5, 1) == 3.2
    assert "(Kingma & Ba, §2.1)" in text("09")


def test_lessons_12_and_16_name_the_fetch_command_and_so_does_the_course_readme():
    for lesson, name in (("12", "gpt2-tokenizer"), ("16", "tinyshakespeare")):
        assert f"`python -m glassformer.data fetch {name}`" in text(lesson), lesson
        assert f"`python -m glassformer.data fetch {name}`" in text("README.md"), name


def test_lesson_19s_ratio_is_its_own_figures():
    """The 125 is the printed key-bias difference over the q and v one, in float32."""
    body = text("19")
    key, qv = re.search(r"key biases (\S+), q and v biases (\S+),", body).groups()
    said = re.search(r"the key part differs about (\d+) times more", body)
    assert said and int(said.group(1)) == round(float(key) / float(qv)), said


def test_lesson_16_without_its_data_says_what_to_run(tmp_path, monkeypatch):
    """The first block, run with an empty data cache: one clear UserError naming the lesson and the fetch
    command (a student pasting the blocks sees it first), never a bare StopIteration further down."""
    from glassformer.errors import UserError
    source = (LESSONS / "16-char-model.md").read_text(encoding="utf-8")
    first = re.search(r"```python\n(.*?)```", source, re.S).group(1)
    monkeypatch.setenv("GLASSFORMER_DATA", str(tmp_path))
    with pytest.raises(UserError) as e:
        exec(compile(first, "lesson 16, block 1", "exec"), {})
    said = str(e.value)
    assert said.startswith("lesson 16 needs tinyshakespeare"), said
    assert "python -m glassformer.data fetch tinyshakespeare" in said, said


# ---- section 5: the stubs give a derivation's starting point; the formulas wait in the lesson -----------------

FINAL_FORMULAS = {   # (lesson, exercise): the final formula's telltale, as the old docstrings wrote it
    ("07", "softmax_backward"): "probs * (dprobs - sum(dprobs * probs))",
    ("07", "layer_norm_backward"): "dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)",
    ("07", "rms_norm_backward"): "dx_hat - x_hat * mean(dx_hat * x_hat)",
    ("07", "attend_backward"): "dq = dscores k",
    ("09", "adamw_step"): "p - lr * m_hat / (sqrt(v_hat) + eps)",
}
STARTS = {("07", "softmax_backward"): "probs_i (delta_ij - probs_j)",
          ("07", "layer_norm_backward"): "d var / d x_j = 2 (x_j - mean) / C",
          ("07", "rms_norm_backward"): "d r / d x_j = -r^3 x_j / C",
          ("07", "attend_backward"): "scores = q k^T / sqrt(D)",
          ("09", "adamw_step"): "their weights add up to 1 - b^t"}


@pytest.mark.parametrize("lesson, name", list(FINAL_FORMULAS), ids=[n for _, n in FINAL_FORMULAS])
def test_a_stub_starts_the_derivation_and_the_lesson_ends_it_after_the_pointer(lesson, name):
    import ast
    stem = {"07": "07_backprop_by_hand", "09": "09_training_loop"}[lesson]
    for folder in ("exercises", "solutions"):
        tree = ast.parse((LESSONS / folder / f"{stem}.py").read_text(encoding="utf-8"))
        doc = " ".join(next(ast.get_docstring(f) for f in tree.body
                            if isinstance(f, ast.FunctionDef) and f.name == name).split())
        assert FINAL_FORMULAS[lesson, name] not in doc, f"{folder}/{stem}.py: {name} gives the formula away"
        assert STARTS[lesson, name] in doc, f"{folder}/{stem}.py: {name} should start the derivation"
    body = text(lesson)
    pointer = body.index(f"python -m glassformer.lessons check {lesson}")
    assert FINAL_FORMULAS[lesson, name] in body[pointer:], f"lesson {lesson} should give it after the pointer"


def test_lesson_3_derives_rmsnorms_backward():
    body = text("03")
    assert "**Its backward, derived.**" in body
    for step in ("d r / d x_j = -1/2 (mean(x^2) + eps)^(-3/2) * 2 x_j / C = -r^3 x_j / C",
                 "r^2 x_i x_j = x_hat_i x_hat_j", "= r (dx_hat_j - x_hat_j * mean_i(dx_hat_i x_hat_i))",
                 "# src/glassformer/layers/norm.py: RMSNorm.backward"):
        assert step in body, step
