"""Every command's main() lives in cli/ and runs inside errors.run_main, the one error boundary; each
`python -m glassformer.X` and each script in the repo root still starts it, through a two-line launcher."""
import ast
import importlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "glassformer"
# cli module -> argv with a misspelt flag: a user's mistake, one `error:` line, exit status 2
COMMANDS = {"train": ["--stpes", "3"], "repl": ["--promt", "x"], "evaluate": ["x.npz", "--data", "x", "--strdie", "3"],
            "export": ["x.npz", "out", "--dytpe", "float16"], "gradcheck": ["--lyaer", "Linear"],
            "experiments": ["induction", "--sweeep", "lr=1,2"], "interp": ["run", "--exmaple", "1"],
            "lessons": ["check", "01", "--soultions"], "explain": ["x.npz", "--otu", "x.html"],
            "fetch": ["fetch", "--lsit"]}
# how a user starts each command (README.md, lessons/*.md): python -m MODULE, or a script in the repo root
STARTS = {"glassformer.evaluate": "evaluate", "glassformer.export": "export", "glassformer.gradcheck": "gradcheck",
          "glassformer.experiments": "experiments", "glassformer.interp": "interp", "glassformer.lessons": "lessons",
          "glassformer.explain": "explain", "glassformer.data": "fetch",
          "train_step_by_step.py": "train", "test_model_manually.py": "repl"}


def main_definitions(package):
    """(file, line) of each `def main(` in the package outside its cli/ folder."""
    return [(str(path.relative_to(package)), n) for path in sorted(package.rglob("*.py"))
            if "cli" not in path.relative_to(package).parts[:1]
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if re.match(r"\s*def main\(", line)]


def launchers(package):
    """{file: source} of every __main__.py and every `if __name__ == "__main__":` block's body."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        if path.name == "__main__.py":
            body = tree.body[1:] if ast.get_docstring(tree) else tree.body
            found[str(path.relative_to(package))] = "\n".join(ast.unparse(node) for node in body)
        for node in tree.body:
            if isinstance(node, ast.If) and ast.unparse(node.test) in ("__name__ == '__main__'",):
                found[str(path.relative_to(package))] = "\n".join(ast.unparse(n) for n in node.body)
    return found


def is_handover(source):
    """True when a launcher only imports cli's main and exits with its status."""
    return re.fullmatch(r"from \.+cli\.\w+ import main\nraise SystemExit\(main\(\)\)", source) is not None


def test_the_checkers_see_a_main_outside_cli_and_a_launcher_that_does_more(tmp_path):
    for name, text in {"cli/train.py": "def main(argv=None):\n    pass\n",
                       "gradcheck.py": "def helper():\n    pass\n\n\nif __name__ == '__main__':\n"
                                       "    from .cli.gradcheck import main\n    raise SystemExit(main())\n",
                       "interp.py": "def f():\n    def main(argv=None):\n        pass\n",
                       "data/__main__.py": '"""doc."""\nfrom ..cli.fetch import main\nprint("hi")\n'
                                           "raise SystemExit(main())\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert main_definitions(tmp_path) == [("interp.py", 2)]
    found = launchers(tmp_path)
    assert sorted(found) == ["data/__main__.py", "gradcheck.py"]
    assert is_handover(found["gradcheck.py"]) and not is_handover(found["data/__main__.py"])


def test_no_module_outside_cli_defines_main():
    assert not main_definitions(PACKAGE), "a command's main() belongs in cli/"


def test_every_launcher_only_hands_over_to_cli():
    found = launchers(PACKAGE)
    assert {"gradcheck.py", "evaluate.py", "data/__main__.py", "lessons/__main__.py"} <= set(found)
    bad = {name: source for name, source in found.items() if not is_handover(source)}
    assert not bad, f"a launcher does more than call cli's main: {bad}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_main_runs_inside_run_main(name, monkeypatch, capsys):
    """main() hands its command to errors.run_main (the spy), which turns the misspelt flag into one line."""
    from glassformer import errors
    module = importlib.import_module(f"glassformer.cli.{name}")
    calls = []

    def spy(*args, **kwargs):
        calls.append(args[0])
        return errors.run_main(*args, **kwargs)
    monkeypatch.setattr(module, "run_main", spy)
    argv = COMMANDS[name]
    code = module.main(argv, io.StringIO(""), sys.stdout, sys.stderr) if name == "repl" else module.main(argv)
    err = capsys.readouterr().err
    assert calls and code == 2, (calls, code, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "did you mean" in err, err


def test_every_way_to_start_a_command_reaches_it():
    """python -m glassformer.X and the root scripts: the misspelt flag's one `error:` line, exit 2."""
    runs = {start: subprocess.Popen([sys.executable, *(["-m"] if not start.endswith(".py") else []), start,
                                     *COMMANDS[name]], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            for start, name in STARTS.items()}
    for start, run in runs.items():
        out, err = run.communicate(timeout=300)
        assert run.returncode == 2 and err.startswith("error: ") and err.count("\n") == 1, (start, err)
        assert "did you mean" in err and not out, (start, err)
