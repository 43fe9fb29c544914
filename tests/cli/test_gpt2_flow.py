"""GPT-2's tokenizer end to end, as a new user meets it: fetch, train, resume, ask, export, re-import.

The data comes through `python -m glassformer.data fetch` from a loopback mirror of the data folder
into an empty cache, as on a fresh machine; then the whole of tinyshakespeare (338,025 GPT-2 tokens)
trains a tiny model with the real 50,257-token vocabulary through the CLI. Each later step reads
what the one before it wrote: the resumed run, the REPL, the export, and the exported folder, whose
greedy continuation must be the checkpoint's, id for id.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datapaths import DATA, serve
from glassformer.checkpoint import load_checkpoint
from glassformer.tokenizers import tokenizer_from_dict

ROOT = Path(__file__).resolve().parents[2]
NEEDS = ["tinyshakespeare/input.txt", "gpt2-tokenizer/encoder.json", "gpt2-tokenizer/vocab.bpe"]
TRAIN = ["--task", "lm", "--data", "tinyshakespeare", "--tokenizer", "gpt2", "--preset", "tiny",
         "--context", "32", "--batch-size", "2", "--eval-batches", "1", "--eval-interval", "2",
         "--no-interactive"]
PROMPT = "ROMEO:"


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """run(*argv, stdin=""): python ARGV in a user's folder, with an empty data cache fed from loopback."""
    missing = [n for n in NEEDS if not (DATA / n).is_file()]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} in {DATA} (python -m glassformer.data fetch)")
    home = tmp_path_factory.mktemp("user")
    env = {**os.environ, "GLASSFORMER_DATA": str(home / "cache"), "GLASSFORMER_DATA_MIRROR": serve(DATA),
           "COLUMNS": "80", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}

    def run(*argv, stdin=""):
        done = subprocess.run([sys.executable, *map(str, argv)], cwd=home, env=env, input=stdin,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr
        return done
    run.home = home
    return run


def greedy(user, checkpoint):
    """The --json record of a greedy 16-token continuation of PROMPT."""
    out = user(ROOT / "test_model_manually.py", "--checkpoint", checkpoint, "--prompt", PROMPT, "--json",
               "--temperature", "0", "--max-new-tokens", "16").stdout
    return json.loads(out.strip().splitlines()[-1])


def test_gpt2_tokenizer_from_fetch_to_reimport(user):
    fetched = user("-m", "glassformer.data", "fetch", "tinyshakespeare", "gpt2-tokenizer")
    cache = user.home / "cache"
    for name in NEEDS:                                      # byte for byte what the mirror served
        assert (cache / name).read_bytes() == (DATA / name).read_bytes(), fetched.stderr

    user(ROOT / "train_step_by_step.py", *TRAIN, "--steps", "2", "--out", "run")
    run = user.home / "run"
    best = load_checkpoint(run / "best.npz")
    assert best.config.vocab_size == 50257 and tokenizer_from_dict(best.tokenizer).vocab_size == 50257
    assert json.loads((run / "summary.json").read_text())["step"] == 2

    user(ROOT / "train_step_by_step.py", "--resume", run, "--steps", "4")
    assert load_checkpoint(run / "last.npz").step == 4
    assert json.loads((run / "summary.json").read_text())["step"] == 4

    asked = user(ROOT / "test_model_manually.py", "--checkpoint", run / "best.npz",
                 stdin=f"{PROMPT}\nquit\n")                 # the REPL, as typed
    assert PROMPT in asked.stdout

    ours = greedy(user, run / "best.npz")
    user("-m", "glassformer.export", run / "best.npz", "gpt2-out")
    exported = load_checkpoint(user.home / "gpt2-out")
    assert tokenizer_from_dict(exported.tokenizer).vocab_size == 50257
    theirs = greedy(user, user.home / "gpt2-out")
    assert len(ours["new_ids"]) == 16 and theirs["new_ids"] == ours["new_ids"]
    assert theirs["prompt_ids"] == ours["prompt_ids"]
