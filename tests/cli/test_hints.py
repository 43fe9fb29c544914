"""The hints a mistake gets are right: the closest flag, the task a missing checkpoint needs, what a
resume really does, and what the REPL and experiments say instead of guessing."""
import io
from pathlib import Path

import pytest

from glassformer.cli import evaluate, experiments, export, gradcheck, interp, repl, train
from glassformer.cli.lessons import main as lessons_main
from glassformer.errors import run_main

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "checkpoints" / "digits.npz"

# (a command's main, argv with a misspelt flag, the flag it should suggest)
TYPOS = [(train.main, ["--stpes", "5"], "--steps"),
         (evaluate.main, ["x.npz", "--data", "x.txt", "--strdie", "3"], "--stride"),
         (export.main, ["x.npz", "out", "--dytpe", "float16"], "--dtype"),
         (gradcheck.main, ["--lyaer", "Linear"], "--layer"),
         (interp.main, ["run", "--exmaple", "1"], "--example"),
         (experiments.main, ["induction", "--sweeep", "lr=1,2"], "--sweep"),
         (lessons_main, ["check", "01", "--soultions"], "--solutions"),
         (repl.main, ["--promt", "Max ( 1 2 )"], "--prompt")]


@pytest.mark.parametrize("main, argv, flag", TYPOS, ids=[t[2] for t in TYPOS])
def test_a_misspelt_flag_names_the_closest_one(capsys, main, argv, flag):
    code = run_main(main, argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert f"did you mean {flag}?" in err and "Traceback" not in err


def test_a_flag_like_nothing_known_gets_no_guess(capsys):
    assert run_main(train.main, ["--zzzzzz"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --zzzzzz" in err and "did you mean" not in err


# ---- a missing checkpoint's hint names the task the command needs --------------------------------

@pytest.fixture
def lm_file(tmp_path):
    """A tiny --task lm checkpoint (as a run of --task lm saves it) and a text file."""
    import numpy as np
    from glassformer.checkpoint import save_checkpoint
    from glassformer.models import build_model, lm_config
    from glassformer.tokenizers import CharTokenizer
    tok = CharTokenizer.from_text("the cat sat on the mat\n")
    model = build_model(lm_config("tiny", tok.vocab_size, d_model=16, n_heads=2, n_layers=1, max_len=8),
                        np.random.default_rng(0))
    save_checkpoint(tmp_path / "lm.npz", model, tokenizer=tok.to_dict(), task={"name": "lm"})
    (tmp_path / "text.txt").write_text("the cat sat on the mat\n" * 4, encoding="utf-8")
    return tmp_path / "lm.npz", tmp_path / "text.txt"


LM_HINT = "train one with: python train_step_by_step.py --task lm --data FILE"
MISSING = [(evaluate.main, ["{gone}", "--data", "{text}"], LM_HINT),
           (export.main, ["{gone}", "{tmp}/out"], LM_HINT),
           (repl.main, ["--checkpoint", "{gone}", "--chat"], LM_HINT),
           (train.main, ["--task", "lm", "--data", "{text}", "--init-from", "{gone}", "--no-interactive"],
            LM_HINT),
           (train.main, ["--task", "lm", "--resume", "{gone}"], LM_HINT),
           (repl.main, ["--checkpoint", "{gone}"], "train one with: python train_step_by_step.py --task digits")]


@pytest.mark.parametrize("main, argv, hint", MISSING, ids=["evaluate", "export", "chat", "init-from",
                                                           "resume-lm", "repl"])
def test_a_missing_checkpoint_says_how_to_train_the_model_the_command_needs(
        capsys, lm_file, main, argv, hint):
    text, tmp = lm_file[1], lm_file[1].parent
    argv = [a.format(gone=tmp / "gone.npz", text=text, tmp=tmp) for a in argv]
    assert run_main(main, argv) == 2
    err = capsys.readouterr().err
    assert "gone.npz: no such checkpoint file" in err and err.rstrip().endswith(hint), err
    assert "--task digits" not in err or "--task digits" in hint


# ---- resuming: another task, a shorter run --------------------------------------------------------

def test_resuming_a_digits_run_as_lm_says_it_is_a_digits_run(capsys):
    digits = ROOT / "checkpoints" / "digits.npz"
    assert run_main(train.main, ["--resume", str(digits), "--task", "lm"]) == 2
    err = capsys.readouterr().err
    assert f"{digits} is a --task digits run" in err and "no run settings" not in err
    assert f"python train_step_by_step.py --resume {digits} (drop --task lm)" in err


def test_resuming_an_lm_run_as_digits_says_it_is_an_lm_run(capsys, lm_file):
    assert run_main(train.main, ["--resume", str(lm_file[0]), "--task", "digits"]) == 2
    assert "--task digits differs from the resumed run's lm: " in capsys.readouterr().err


@pytest.mark.parametrize("steps, says", [(200, "extending the run: its cosine now ends at step 200 "
                                                "instead of 100"),
                                         (60, "shortening the run: its cosine now ends at step 60 "
                                              "instead of 100"),
                                         (100, None)])
def test_extending_is_said_only_when_the_run_extends(steps, says):
    from glassformer.train.resume import keep_schedule
    from glassformer.train.trainer import TrainConfig
    saved = {"steps": 100, "warmup_steps": 10, "lr": 1e-3, "min_lr": 1e-4}
    config, note = keep_schedule(TrainConfig(steps=steps, warmup=10, lr=1e-3, min_lr=1e-4), saved,
                                 extend=True)
    assert config.steps == steps and (note is None if says is None else note.startswith(says)), note
    assert steps >= 100 or "extending" not in note


# ---- the REPL says what it does -------------------------------------------------------------------

def run_repl(argv, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    code = repl.main(argv, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("expr, number", [("Max ( 12 3 )", "12"), ("min(4,10,7)", "10"),
                                          ("First ( 5 123 )", "123")])
def test_a_number_the_digits_model_has_no_token_for_is_refused(expr, number):
    code, out, err = run_repl(["--checkpoint", str(DIGITS), "--prompt", expr])
    assert code == 2 and out == ""
    assert err == (f"error: {number} is not a digit this model knows: it was trained on "
                   "0 1 2 3 4 5 6 7 8 9 (one digit per argument, e.g. Max ( 5 3 9 ))\n")


def test_the_repl_help_says_heads_count_from_0_and_the_maps_do():
    code, out, _ = run_repl(["--checkpoint", str(DIGITS)], "help\nattention all\nMax ( 1 2 3 )\n")
    assert code == 0 and "blocks and heads count from 0" in out
    assert "block 0, head 0" in out and "head 4" not in out and "layer " not in out


# ---- experiments: how to run one, typed settings -------------------------------------------------

def test_experiments_without_a_name_says_how_to_run_one(capsys):
    assert experiments.main([]) == 0
    out = capsys.readouterr().out
    assert "induction" in out and "python -m glassformer.experiments induction steps=600 lr=3e-3" in out


@pytest.mark.parametrize("argv, says", [
    (["reversal", "steps=abc"], "steps=abc: steps must be a whole number from 1 to 1,000,000,000, not 'abc'"),
    (["reversal", "lr=fast"], "lr=fast: lr must be a number in [1e-12, 10], not 'fast'"),
    (["reversal", "plots=yes"], "plots=yes: plots must be true or false, not 'yes'"),
    (["reversal", "model.d_model=1.5"], "model.d_model=1.5: model.d_model must be a whole number"),
    (["reversal", "task.length=x"], "task.length=x: task.length must be a whole number"),
    (["induction", "n_layers=two"], "n_layers=two: n_layers must be a whole number"),
    (["renaming", "curriculum.depth=x"], "curriculum.depth=x: curriculum.depth must be a whole number"),
    (["reversal", "--sweep", "steps=10,abc"], "steps=abc: steps must be a whole number"),
    (["reversal", "seed=-1"], "seed=-1: seed must be a whole number from 0 to 4,294,967,295, not '-1'"),
])
def test_a_setting_of_the_wrong_type_is_one_error_naming_key_value_and_type(capsys, tmp_path, argv, says):
    code = run_main(experiments.main, argv + ["--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {says}") and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())                       # refused before any run folder
