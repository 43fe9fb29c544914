"""The hints a mistake gets are right: the closest flag, the task a missing checkpoint needs, what a
resume really does, and what the REPL and experiments say instead of guessing."""
import pytest

from glassformer import evaluate, experiments, export, gradcheck, interp
from glassformer.cli import repl, train
from glassformer.errors import run_main
from glassformer.lessons.__main__ import main as lessons_main

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
