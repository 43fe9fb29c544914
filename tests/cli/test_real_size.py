"""Checkpoints at real size, through the real commands: for each tokenizer (char, bpe, GPT-2's 50,257
tokens) and each LM task (lm, qa), and for --init-from a GPT-2 folder with the real vocabulary, a run
trains, its best.npz and last.npz load back, --resume goes on, the model answers, and its export
reloads with the same greedy ids.

GPT-2's tokenizer is 1.7 MB of JSON; the small tokenizers of the other tests never reached the bound
on the checkpoint header, so every GPT-2 run used to end with "the __meta__ entry is not a JSON
header" and no summary.json. Needs the real data where tests/datapaths.py finds it ($GLASSFORMER_DATA,
else shared/data beside the repository): gpt2-tokenizer/ and tinyshakespeare/; skipped where absent.
"""
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from datapaths import DATA

from glassformer.cli import export
from glassformer.checkpoint import MAX_HEADER_BYTES, load_checkpoint
from glassformer.checkpoint.hf_gpt2 import config_from_hf, save_hf_gpt2
from glassformer.cli import repl
from glassformer.models import build_model
from glassformer.tokenizers import ByteLevelBPE, tokenizer_from_dict

ROOT = Path(__file__).resolve().parents[2]
GPT2, SHAKESPEARE = DATA / "gpt2-tokenizer", DATA / "tinyshakespeare" / "input.txt"
pytestmark = pytest.mark.skipif(
    not ((GPT2 / "encoder.json").is_file() and (GPT2 / "vocab.bpe").is_file() and SHAKESPEARE.is_file()),
    reason=f"needs the real data: {GPT2}/encoder.json + vocab.bpe and {SHAKESPEARE}: fetch them with "
           "python -m glassformer.data fetch, or set GLASSFORMER_DATA")

TEXT_BYTES = 4000                                           # a few KB of tinyshakespeare
PROMPT = "the"
# each run: 2 steps of 2 windows of 16 tokens, one validation batch, then --resume to step 3
SMALL = ["--context", "16", "--batch-size", "2", "--steps", "2", "--eval-interval", "2",
         "--eval-batches", "1", "--warmup", "1", "--no-interactive"]
TOKENIZER_FLAGS = {"char": ["--tokenizer", "char", "--preset", "tiny"],
                   "bpe": ["--tokenizer", "bpe", "--bpe-vocab", "300", "--preset", "tiny"],
                   "gpt2": ["--tokenizer", "gpt2", "--preset", "tiny"]}
GPT2_VOCAB = 50_257


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The folder the commands run in: text.txt, qa.jsonl, ./gpt2-tokenizer (where --tokenizer gpt2
    looks first) and hf/, a tiny GPT-2 folder with the real vocabulary."""
    work = tmp_path_factory.mktemp("real_size")
    text = SHAKESPEARE.read_bytes()[:TEXT_BYTES].decode("utf-8", "ignore")
    (work / "text.txt").write_text(text, encoding="utf-8")
    words = [w for w in text.split() if w.isalpha() and len(w) <= 5]
    pairs = [{"question": a, "answer": b} for a, b in zip(words, words[1:])][:40]   # fit --context 32
    (work / "qa.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    (work / "gpt2-tokenizer").symlink_to(GPT2, target_is_directory=True)
    tiny_gpt2_folder(work / "hf")
    return work


def tiny_gpt2_folder(folder):
    """A GPT-2-shaped Hugging Face folder of the real 50,257 tokens (vocab.json and merges.txt written
    from encoder.json and vocab.bpe) and a small model, by the project's own writer."""
    tok = ByteLevelBPE.from_gpt2(GPT2 / "encoder.json", GPT2 / "vocab.bpe")
    config = config_from_hf(folder, {"model_type": "gpt2", "n_embd": 16, "n_head": 2, "n_layer": 1,
                                     "n_positions": 32, "vocab_size": GPT2_VOCAB})
    written = save_hf_gpt2(folder, build_model(config, np.random.default_rng(0)), tok)
    assert {"vocab.json", "merges.txt", "model.safetensors"} <= set(written)
    return folder


def command(work, *args):
    """Run a command of this repository in `work`; its CompletedProcess (rc 0 asserted)."""
    done = subprocess.run([sys.executable, *args], cwd=work, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


def train(work, *args):
    return command(work, str(ROOT / "train_step_by_step.py"), *args)


def summary(run):
    """summary.json of a run, which must have been written."""
    assert (run / "summary.json").is_file(), f"no summary.json in {run}"
    return json.loads((run / "summary.json").read_text(encoding="utf-8"))


def greedy_ids(checkpoint):
    """test_model_manually.py --json's greedy continuation of PROMPT: (prompt ids, new ids)."""
    out, err = io.StringIO(), io.StringIO()
    rc = repl.main(["--checkpoint", str(checkpoint), "--prompt", PROMPT, "--json", "--temperature", "0",
                    "--max-new-tokens", "5"], stdout=out, stderr=err)
    assert rc == 0, err.getvalue()
    reply = json.loads(out.getvalue().splitlines()[-1])
    return reply["prompt_ids"], reply["new_ids"]


def check_saved(path, vocab):
    """A checkpoint the run wrote loads back: version 2, its tokenizer in its own entry, the header small."""
    with zipfile.ZipFile(path) as z:
        assert "__tokenizer__.npy" in z.namelist()
        assert z.getinfo("__meta__.npy").file_size < MAX_HEADER_BYTES // 8
    ckpt = load_checkpoint(path)
    tok = tokenizer_from_dict(ckpt.tokenizer)
    assert ckpt.meta["version"] == 2 and ckpt.optimizer_state["arrays"]
    assert tok.vocab_size <= ckpt.config.vocab_size and (vocab is None or tok.vocab_size == vocab)
    return ckpt


CASES = [("char", "lm"), ("char", "qa"), ("bpe", "lm"), ("bpe", "qa"), ("gpt2", "lm"), ("gpt2", "qa"),
         ("init-from", "lm"), ("init-from", "qa")]


@pytest.mark.slow
@pytest.mark.parametrize("kind,task", CASES, ids=[f"{k}-{t}" for k, t in CASES])
def test_train_load_resume_generate_export_at_real_size(work, kind, task):
    run, hf = work / f"run-{kind}-{task}", work / f"export-{kind}-{task}"
    data = "qa.jsonl" if task == "qa" else "text.txt"
    source = ["--init-from", "hf"] if kind == "init-from" else TOKENIZER_FLAGS[kind]
    extra = ["--eval-pairs", "2", "--context", "32"] if task == "qa" else []   # after SMALL: it wins
    train(work, "--task", task, "--data", data, *source, *SMALL, *extra, "--out", run.name)
    assert summary(run)["step"] == 2
    vocab = None if kind in ("char", "bpe") else GPT2_VOCAB
    best, last = check_saved(run / "best.npz", vocab), check_saved(run / "last.npz", vocab)
    assert best.tokenizer == last.tokenizer and last.step == 2
    if kind == "init-from":
        assert best.tokenizer == load_checkpoint(work / "hf").tokenizer
    train(work, "--resume", run.name, "--steps", "3")
    assert summary(run)["step"] == 3 and check_saved(run / "last.npz", vocab).step == 3
    ids = greedy_ids(run / "best.npz")
    assert len(ids[1]) >= 1
    assert export.main([str(run / "best.npz"), str(hf)]) == 0
    assert load_checkpoint(hf).tokenizer == best.tokenizer   # vocab.json + merges.txt, or ours (char)
    assert greedy_ids(hf) == ids
