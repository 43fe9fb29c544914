"""The README as an acceptance suite: every row of its command table runs, as a user types it.

Each row of the README's "What you can do with it" table (and the train command of its first
lines) has a recipe here: the same command at reduced steps, run as a subprocess from an empty
folder, on the real public data where this machine has it (tests/datapaths.py; skipped with a
reason where it does not). A recipe checks the exit status, the files the row promises, and that
every file the command wrote loads back. A README row without a recipe fails the suite, and so
does a recipe whose row left the README.
"""
import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from datapaths import DATA, serve
from glassformer.checkpoint import load_checkpoint
from tools import tool

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TIMEOUT_S = 300
SMALL_LM = ["--steps", "2", "--batch-size", "2", "--context", "16", "--eval-batches", "1",
            "--no-interactive"]
QA_PAIRS = [("What is the capital of France?", "Paris"), ("What colour is the sky?", "Blue"),
            ("How many legs has a spider?", "Eight"), ("Who wrote Hamlet?", "Shakespeare")] * 6


def readme_commands():
    """The first code span of every command-table row, plus the train command of the first lines."""
    text = README.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)`", text, re.M)
    first = re.search(r"```bash\n(.*?)```", text, re.S).group(1).splitlines()[0]
    train = first.split("&&")[1].split("#")[0].strip()
    return [train] + [r for r in rows if r != "command"]


@dataclass
class Recipe:
    """How a row runs at reduced size: argv (words; {data:NAME} is a file in the data folder, {X} a
    fixture made first), what it needs, the files it must write (globs under the folder it ran in)."""
    argv: list
    needs: list = field(default_factory=list)      # data files, relative to DATA
    makes: list = field(default_factory=list)      # fixtures: lm_run, digits_run, gpt2_folder, qa_file
    files: list = field(default_factory=list)
    stdin: str = ""
    stdout: str = ""                               # a regex the output must match
    mpi: bool = False
    from_repo: bool = False                        # runs in the clone's root, as the README's reader does
    env: dict = field(default_factory=dict)        # more environment ({tmp}: the folder it runs in)


TRAIN = "train_step_by_step.py"
REPL = "test_model_manually.py"
RECIPES = {
    "python -m glassformer.data fetch tinyshakespeare": Recipe(
        ["-m", "glassformer.data", "fetch", "tinyshakespeare"], makes=["mirror"],
        needs=["tinyshakespeare/input.txt"], files=["cache/tinyshakespeare/input.txt"],
        env={"GLASSFORMER_DATA": "{tmp}/cache", "GLASSFORMER_DATA_MIRROR": "{mirror}"}),
    "python train_step_by_step.py": Recipe(
        [TRAIN, "--size", "small", "--epochs", "1", "--out", "run"],
        files=["run/best.npz", "run/last.npz", "run/metrics.csv", "run/summary.json", "run/config.json",
               "run/curves.png", "run/attention_layer*.png"]),
    "python train_step_by_step.py --task sentences": Recipe(
        [TRAIN, "--task", "sentences", "--epochs", "3", "--out", "run"],
        files=["run/best.npz", "run/metrics.csv", "run/summary.json"]),
    "python train_step_by_step.py --task lm --data tinyshakespeare --tokenizer char --preset tiny": Recipe(
        [TRAIN, "--task", "lm", "--data", "tinyshakespeare", "--tokenizer", "char",
         "--preset", "tiny", *SMALL_LM, "--out", "run"],
        needs=["tinyshakespeare/input.txt"],
        files=["run/best.npz", "run/last.npz", "run/metrics.csv", "run/summary.json", "run/config.json"]),
    "python train_step_by_step.py --config configs/shakespeare_char.json": Recipe(
        [TRAIN, "--config", str(ROOT / "configs" / "shakespeare_char.json"), "--steps", "2",
         "--eval-batches", "1", "--no-interactive", "--out", "run"],
        needs=["tinyshakespeare/input.txt"],
        files=["run/best.npz", "run/summary.json", "run/config.json"]),
    "python train_step_by_step.py --task lm --data wikitext-2 --tokenizer bpe": Recipe(
        [TRAIN, "--task", "lm", "--data", "wikitext-2", "--tokenizer", "bpe", "--bpe-vocab", "300",
         *SMALL_LM, "--out", "run"],
        needs=["wikitext-2/train.txt", "wikitext-2/valid.txt", "wikitext-2/test.txt"],
        files=["run/best.npz", "run/summary.json"], stdout=r"(?i)perplexity"),
    "mpiexec -n 2 python train_step_by_step.py --task lm --data tinyshakespeare --batch-size 16": Recipe(
        [TRAIN, "--task", "lm", "--data", "tinyshakespeare", "--steps", "2",
         "--batch-size", "4", "--context", "16", "--eval-batches", "1", "--no-interactive", "--out", "run"],
        needs=["tinyshakespeare/input.txt"], mpi=True, files=["run/best.npz", "run/summary.json"]),
    "python test_model_manually.py": Recipe(
        [REPL], stdin="max(5,3,9)\nquit\n", stdout=r"\b9\b", from_repo=True),
    'python test_model_manually.py --checkpoint checkpoints/shakespeare_char.npz --prompt "ROMEO:"': Recipe(
        [REPL, "--checkpoint", str(ROOT / "checkpoints" / "shakespeare_char.npz"), "--prompt", "ROMEO:",
         "--max-new-tokens", "20", "--seed", "0"], stdout=r"ROMEO:"),
    "python test_model_manually.py --checkpoint gpt2/": Recipe(
        [REPL, "--checkpoint", "{gpt2_folder}", "--prompt", "Hello world", "--max-new-tokens", "5"],
        makes=["gpt2_folder"], needs=["gpt2-tokenizer/encoder.json", "gpt2-tokenizer/vocab.bpe"],
        stdout=r"Hello world"),
    "python train_step_by_step.py --task lm --init-from gpt2/ --data tinyshakespeare": Recipe(
        [TRAIN, "--task", "lm", "--init-from", "{gpt2_folder}", "--data", "tinyshakespeare",
         *SMALL_LM, "--out", "run"],
        makes=["gpt2_folder"],
        needs=["tinyshakespeare/input.txt", "gpt2-tokenizer/encoder.json", "gpt2-tokenizer/vocab.bpe"],
        files=["run/best.npz", "run/last.npz", "run/summary.json"]),
    "python train_step_by_step.py --task qa --data qa.jsonl --init-from runs/wiki/best.npz "
    "--mix-data wikipedia-sample": Recipe(
        [TRAIN, "--task", "qa", "--data", "{qa_file}", "--init-from", "{lm_run}/best.npz", "--mix-data",
         "wikipedia-sample",
         "--steps", "2", "--batch-size", "2", "--eval-batches", "1", "--eval-pairs", "2",
         "--no-interactive", "--out", "run"],
        makes=["lm_run", "qa_file"],
        needs=["wikipedia-sample/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"],
        files=["run/best.npz", "run/summary.json"]),
    "python -m glassformer.evaluate checkpoints/shakespeare_char.npz --data tinyshakespeare --split val": Recipe(
        ["-m", "glassformer.evaluate", str(ROOT / "checkpoints" / "shakespeare_char.npz"), "--data",
         "tinyshakespeare", "--split", "val", "--json"],
        needs=["tinyshakespeare/input.txt"], stdout=r'"loss": 1\.8622[67]'),   # the README's figure, 1.8623
    "python -m glassformer.export runs/lm/best.npz gpt2-out/": Recipe(
        ["-m", "glassformer.export", "{lm_run}/best.npz", "gpt2-out"], makes=["lm_run"],
        files=["gpt2-out/config.json", "gpt2-out/model.safetensors"]),
    "python -m glassformer.gradcheck": Recipe(
        ["-m", "glassformer.gradcheck", "--layer", "LayerNorm"], stdout=r"LayerNorm"),
    "python -m glassformer.experiments": Recipe(["-m", "glassformer.experiments"], stdout=r"induction"),
    "python -m glassformer.interp RUN": Recipe(
        ["-m", "glassformer.interp", "{digits_run}"], makes=["digits_run"]),
    'python -m glassformer.explain checkpoints/shakespeare_char.npz --text "ROMEO: But soft"': Recipe(
        ["-m", "glassformer.explain", str(ROOT / "checkpoints" / "shakespeare_char.npz"), "--text",
         "ROMEO: But soft"], files=["step.html"], stdout=r"wrote step\.html: \d+ stages"),
    "python bench/digits.py": Recipe(
        [str(ROOT / "bench" / "digits.py"), "--epochs", "1"], stdout=r"^\{.*\}$"),
}


def test_every_readme_row_has_a_recipe_and_every_recipe_a_row():
    rows = readme_commands()
    assert sorted(set(rows) - set(RECIPES)) == [], "README rows with no acceptance test"
    assert sorted(set(RECIPES) - set(rows)) == [], "acceptance tests whose README row is gone"


# ---- fixtures a row builds on, each made through the real commands ---------------------------------

def run(argv, cwd, stdin="", mpi=False, env=None):
    """python ARGV (from the repo's scripts) in cwd: the CompletedProcess, never over TIMEOUT_S.
    --data NAME finds the fetched sets in DATA unless `env` says otherwise."""
    words = [a if a.startswith(("-", "/")) or not a.endswith(".py") else str(ROOT / a) for a in argv]
    cmd = [sys.executable, *words]
    if mpi:
        cmd = [tool("mpiexec"), "-n", "2", *cmd]
    environ = {**os.environ, "COLUMNS": "80", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg",
               "GLASSFORMER_DATA": str(DATA), **(env or {})}
    return subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S,
                          env=environ)


def must(done):
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Fixtures made once, on demand: a small char LM run, a GPT-2 folder with the real vocabulary,
    a user's qa.jsonl."""
    cache, base = {}, tmp_path_factory.mktemp("made")

    def make(name):
        if name in cache:
            return cache[name]
        if name == "lm_run":
            text = base / "text.txt"
            text.write_text((DATA / "tinyshakespeare" / "input.txt").read_text()[:20_000]
                            if (DATA / "tinyshakespeare" / "input.txt").is_file()
                            else "the cat sat on the mat. " * 400, encoding="utf-8")
            must(run([TRAIN, "--task", "lm", "--data", str(text), "--tokenizer", "bpe", "--bpe-vocab", "300",
                      *SMALL_LM, "--context", "64", "--out", "lm"], base))   # byte-level: any text fits
            cache[name] = base / "lm"
        elif name == "digits_run":
            must(run([TRAIN, "--size", "small", "--epochs", "1", "--out", "digits"], base))
            cache[name] = base / "digits"
        elif name == "gpt2_folder":
            text = base / "gpt2-text.txt"
            text.write_text("Hello world. The quick brown fox jumps over the lazy dog. " * 60, encoding="utf-8")
            tok = base / "gpt2-tokenizer"
            tok.mkdir(exist_ok=True)
            for f in ("encoder.json", "vocab.bpe"):
                shutil.copy(DATA / "gpt2-tokenizer" / f, tok / f)
            must(run([TRAIN, "--task", "lm", "--data", str(text), "--tokenizer", "gpt2", *SMALL_LM,
                      "--out", "gpt2-run"], base))
            must(run(["-m", "glassformer.export", str(base / "gpt2-run" / "best.npz"), "gpt2"], base))
            cache[name] = base / "gpt2"
        elif name == "mirror":                          # the data sets' addresses, served on loopback
            cache[name] = serve(DATA)
        elif name == "qa_file":
            path = base / "qa.jsonl"
            path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QA_PAIRS),
                            encoding="utf-8")
            cache[name] = path
        return cache[name]

    return make


# ---- what every file a command wrote must do: load back ------------------------------------------

def loads_back(path):
    """Open a written file the way glassformer (or its user) reads it; an AssertionError if it cannot."""
    if path.suffix == ".npz":
        load_checkpoint(path)
    elif path.suffix == ".json":
        json.loads(path.read_text(encoding="utf-8"))
    elif path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            assert list(csv.DictReader(f)), f"{path} has no rows"
    elif path.suffix == ".png":
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    elif path.suffix == ".html":
        assert "<html" in path.read_text(encoding="utf-8").lower()
    elif path.name == "model.safetensors":
        load_checkpoint(path.parent)


def written_files(folder):
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.mark.parametrize("row", list(RECIPES))
def test_readme_row(row, tmp_path, made):
    recipe = RECIPES[row]
    missing = [n for n in recipe.needs if not (DATA / n).exists()]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} in {DATA} (python -m glassformer.data fetch)")
    if recipe.mpi and (tool("mpiexec") is None or importlib.util.find_spec("mpi4py") is None):
        pytest.skip("needs mpiexec: pip install -e '.[mpi]'")
    fixtures = {name: made(name) for name in recipe.makes}
    argv = [re.sub(r"\{data:([^}]+)\}", lambda m: str(DATA / m.group(1)), a).format(**fixtures)
            for a in recipe.argv]
    env = {k: v.format(tmp=tmp_path, **fixtures) for k, v in recipe.env.items()}
    done = must(run(argv, ROOT if recipe.from_repo else tmp_path, stdin=recipe.stdin, mpi=recipe.mpi, env=env))
    assert "Traceback" not in done.stderr
    if recipe.stdout:
        assert re.search(recipe.stdout, done.stdout, re.M), done.stdout[-2000:]
    for pattern in recipe.files:
        assert list(tmp_path.glob(pattern)), f"{row}: no {pattern} written"
    for path in written_files(tmp_path):
        loads_back(path)
