"""The hostile suite, root cause "degenerate": degenerate data and knobs never reach the math.

Generated degenerate texts (empty, one character, whitespace of each kind, one token repeated,
exactly context tokens, context + 1, a short split beside a fine one, binary junk, only <unk>, a
WikiText folder with an empty valid.txt, Q&A pairs longer than the context) go through every
tokenizer (char, bpe, a word and a char tokenizer file with <unk>, gpt2 when its files are here)
and every task that reads text (--task lm, --task qa, glassformer.evaluate); then interp's --head,
--layer and --text, tokenizers smaller and larger than the embedding, and the 4 GiB cap on GPT-2
folders. Each case is judged by hostile.judge: one `error:` line and exit 2, or a run that works.
"""
import contextlib
import io
import json
import os
import resource
import struct
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest

from hostile import judge

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("GLASSFORMER_DATA") or ROOT.parent / "shared" / "data")
GPT2_DIR = DATA / "gpt2-tokenizer"
HAS_GPT2 = (GPT2_DIR / "encoder.json").is_file() and (GPT2_DIR / "vocab.bpe").is_file()
CONTEXT = 8                                                 # --context of every run; the minimum is 9
CAUSE = "degenerate"
WORDS = "the cat sat on a mat and it was good".split()
TINY_LM = dict(d_model=16, n_heads=2, n_layers=1)           # evaluate's checkpoints: fast to load
RUN = ["--no-interactive", "--context", str(CONTEXT), "--steps", "1", "--batch-size", "2",
       "--eval-batches", "1", "--eval-interval", "1", "--preset", "tiny"]


# ---- running a command in-process ---------------------------------------------------------------

def call(main, argv):
    """(exit code, stderr, stdout) of main(argv); an escaping exception is a traceback, exit 1."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:                               # noqa: B036 - a crash is what we look for
            traceback.print_exc()
            rc = 1
    return rc, err.getvalue(), out.getvalue()


def check(main, argv, must_refuse, **how):
    """Run and judge one case; returns (rc, stderr, stdout)."""
    rc, err, out = call(main, argv)
    judge(CAUSE, rc, err, must_refuse=must_refuse, **how)
    return rc, err, out


# ---- the degenerate texts -----------------------------------------------------------------------

def exact(kind, n):
    """A text of exactly n tokens for tokenizer `kind`: single-character pre-tokens ("a.b.c.") are
    never merged by a BPE (each pre-token is one byte), words for the word tokenizer."""
    if kind == "word":
        return " ".join(WORDS[i % len(WORDS)] for i in range(n))
    return "".join("abcdefgh"[i // 2 % 8] if i % 2 == 0 else "." for i in range(n))


UNKNOWN = {"char": "\u0167\u0127\u00fe" * 50, "word": "\u0167\u0127 \u00fe\u00fe " * 50}   # no known unit
WHITESPACE = {"space": " ", "newline": "\n", "tab": "\t", "crlf": "\r\n" * 3, "vt-ff": "\x0b\x0c",
              "nbsp": "\u00a0" * 4, "em-space": "\u2003" * 3, "ideographic": "\u3000" * 2,
              "mixed": "  \n\t \r\n ", "many-newlines": "\n" * 500}


def texts():
    """{name: (bytes, refused by training, refused by scoring)}: None means either is right."""
    rng = np.random.default_rng(0)
    junk = bytes(rng.integers(0x80, 0x100, 400, dtype=np.uint8))           # not UTF-8
    decoded = "".join(chr(c) for c in rng.integers(0x21, 0x2FF, 400))    # junk that decodes
    out = {"empty": (b"", True, True), "one-char": (b"a", True, True),
           "repeated-short": (b"a" * 6, True, None), "repeated-long": (b"a" * 400, None, None),
           "binary-not-utf8": (junk, True, True),
           "binary-nul": (b"\x00\x01\x02" * 100, True, None), "junk-as-text": (decoded.encode(), None, None),
           "cut-leaves-short-val": (exact("char", 40).encode(), True, None)}
    for name, ws in WHITESPACE.items():
        out["whitespace-" + name] = (ws.encode(), True, True)
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A scratch folder (the token cache goes under it) and the tokenizers and checkpoints used."""
    from glassformer.checkpoint import save_checkpoint
    from glassformer.cli import lm
    from glassformer.models import build_model
    from glassformer.runner import lm as runner_lm
    from glassformer.models.config import lm_config
    from glassformer.tokenizers import ByteLevelBPE, CharTokenizer, WordTokenizer
    from glassformer.train import trainer
    base = tmp_path_factory.mktemp("degenerate")
    toks = {"char": CharTokenizer(sorted(set(exact("char", 40) + " \n")), unk="<unk>"),
            "word": WordTokenizer(WORDS, unk="<unk>"),
            "bpe": ByteLevelBPE.train(exact("char", 200) + " the cat sat", 262, progress=False)}
    if HAS_GPT2:
        toks["gpt2"] = ByteLevelBPE.from_gpt2(GPT2_DIR / "encoder.json", GPT2_DIR / "vocab.bpe")
    files, ckpts = {}, {}
    for kind, tok in toks.items():
        if kind in ("char", "word"):
            files[kind] = base / f"{kind}-tokenizer.json"
            tok.save(files[kind])
        model = build_model(lm_config("tiny", tok.vocab_size, max_len=CONTEXT, **TINY_LM),
                            np.random.default_rng(0))
        ckpts[kind] = base / f"{kind}.npz"
        save_checkpoint(ckpts[kind], model, tokenizer=tok.to_dict(), task={"name": "lm", "context": CONTEXT})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.setattr(lm, "matmul_rate", lambda: 1e9)          # the GEMM roof: 0.2 s a run, not under test
        mp.setattr(trainer, "plot_curves", lambda rows, path, **k: path)   # the loss plot: not under test
        if HAS_GPT2:
            mp.setattr(runner_lm, "gpt2_tokenizer", lambda: toks["gpt2"])   # read once, not per case
        yield {"dir": base, "toks": toks, "files": files, "ckpts": ckpts}


def lm_tokenizers(env):
    """(name, --tokenizer value) of --task lm: built from the text (char, bpe, gpt2) or a file."""
    out = [("char", "char"), ("bpe", "bpe"), ("word-file", str(env["files"]["word"])),
           ("char-file", str(env["files"]["char"]))]
    return out + ([("gpt2", "gpt2")] if HAS_GPT2 else [])


def write(env, name, data):
    path = env["dir"] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


# ---- --task lm ----------------------------------------------------------------------------------

def test_lm_refuses_each_degenerate_text_with_each_tokenizer(env):
    from glassformer.cli import train
    for name, (data, refused, _) in texts().items():
        path = write(env, f"lm/{name}.txt", data)
        for tname, flag in lm_tokenizers(env):
            out = env["dir"] / "runs" / f"lm-{name}-{tname}"
            check(train.main, ["--task", "lm", "--data", path, "--tokenizer", flag, "--bpe-vocab", "260",
                               "--out", out, *RUN], must_refuse=bool(refused))


def test_lm_only_unknown_text_is_refused_by_a_tokenizer_with_unk(env):
    from glassformer.cli import train
    for kind in ("char", "word"):
        path = write(env, f"lm/only-unk-{kind}.txt", UNKNOWN[kind])
        rc, err, _ = check(train.main, ["--task", "lm", "--data", path, "--tokenizer", env["files"][kind],
                                        "--out", env["dir"] / "runs" / f"unk-{kind}", *RUN], must_refuse=True)
        assert "unknown" in err


def test_lm_split_edges_context_and_context_plus_one(env):
    """--val-data: a split of exactly context tokens is refused, context + 1 trains (each tokenizer)."""
    from glassformer.cli import train
    for tname, flag in lm_tokenizers(env):
        kind = "word" if tname == "word-file" else "char"
        fine = write(env, f"split/{tname}-fine.txt", exact(kind, 60))
        for n, refused in ((1, True), (CONTEXT - 1, True), (CONTEXT, True), (CONTEXT + 1, False)):
            short = write(env, f"split/{tname}-{n}.txt", exact(kind, n))
            pairs = [(fine, short)] if not refused else [(fine, short), (short, fine)]
            if tname == "bpe":                              # trained on the train file: count unknown
                pairs = pairs[:1]                           # the val file's tokens are exact, though
            for train_file, val_file in pairs:
                rc, err, _ = check(train.main, ["--task", "lm", "--data", train_file, "--val-data", val_file,
                                                "--tokenizer", flag, "--bpe-vocab", "260", "--out",
                                                env["dir"] / "runs" / f"split-{tname}-{n}-{train_file.stem}",
                                                *RUN], must_refuse=refused)
                if refused:
                    assert f"holds {n} token" in err and f"minimum of {CONTEXT + 1}" in err, err
                else:
                    assert rc == 0, err


def test_lm_wikitext_folder_with_an_empty_valid_file(env):
    from glassformer.cli import train
    for tname, flag in lm_tokenizers(env):
        folder = env["dir"] / f"wikitext-{tname}"
        kind = "word" if tname == "word-file" else "char"
        write(env, f"wikitext-{tname}/train.txt", exact(kind, 80))
        write(env, f"wikitext-{tname}/valid.txt", b"")
        write(env, f"wikitext-{tname}/test.txt", exact(kind, 40))
        rc, err, _ = check(train.main, ["--task", "lm", "--data", folder, "--tokenizer", flag, "--out",
                                        env["dir"] / "runs" / f"wt-{tname}", *RUN], must_refuse=True)
        assert "valid.txt" in err


def test_lm_and_evaluate_a_jsonl_of_blank_documents(env):
    from glassformer.cli import evaluate
    from glassformer.cli import train
    blank = {"no-lines": "", "empty-texts": '{"text": ""}\n' * 5, "blank-texts": '{"text": " \\n\\t"}\n' * 5}
    for name, data in blank.items():
        path = write(env, f"jsonl/{name}.jsonl", data)
        for tname, flag in lm_tokenizers(env):
            check(train.main, ["--task", "lm", "--data", path, "--tokenizer", flag, "--out",
                               env["dir"] / "runs" / f"jsonl-{name}-{tname}", *RUN], must_refuse=True)
        for kind, ckpt in env["ckpts"].items():
            check(evaluate.main, [ckpt, "--data", path], must_refuse=True)


# ---- glassformer.evaluate -------------------------------------------------------------------------

def test_evaluate_each_degenerate_text_with_each_tokenizer(env):
    from glassformer.cli import evaluate
    for name, (data, _, refused) in texts().items():
        path = write(env, f"eval/{name}.txt", data)
        for kind, ckpt in env["ckpts"].items():
            check(evaluate.main, [ckpt, "--data", path], must_refuse=bool(refused))


def test_evaluate_edges_one_token_context_and_only_unknown(env):
    from glassformer.cli import evaluate
    for kind, ckpt in env["ckpts"].items():
        unit = "word" if kind == "word" else "char"
        for n in (1, 2, CONTEXT, CONTEXT + 1, 3 * CONTEXT):
            path = write(env, f"eval-edge/{kind}-{n}.txt", exact(unit, n))
            rc, err, out = check(evaluate.main, [ckpt, "--data", path, "--json"], must_refuse=n < 2)
            if n >= 2 and kind != "bpe":                    # the BPE merges some: fewer targets
                assert json.loads(out)["tokens"] == n - 1, out
        path = write(env, f"eval-edge/{kind}-unk.txt", UNKNOWN["word" if kind == "word" else "char"])
        check(evaluate.main, [ckpt, "--data", path], must_refuse=kind in ("char", "word"))
        folder = env["dir"] / f"eval-wt-{kind}"
        write(env, f"eval-wt-{kind}/train.txt", exact(unit, 40))
        write(env, f"eval-wt-{kind}/valid.txt", "\n \n")
        check(evaluate.main, [ckpt, "--data", folder, "--split", "val"], must_refuse=True)


# ---- --task qa ------------------------------------------------------------------------------------

def qa_line(q, a):
    return json.dumps({"question": q, "answer": a}) + "\n"


def test_qa_degenerate_pairs_and_mix_data(env):
    from glassformer.cli import train
    good = write(env, "qa/good.jsonl", "".join(qa_line(f"q{i}", f"a{i}") for i in range(10)))
    long = write(env, "qa/long.jsonl", "".join(qa_line("why " * 10, "because " * 10) for _ in range(4)))
    pairs = {"empty": (b"", True), "whitespace": (b" \n\t\n", True), "one-pair": (qa_line("q", "a"), True),
             "header-only-tsv": (b"question\tanswer\n", True), "blank-answer": (qa_line("q", " "), True)}
    qa_tokenizers = [("char", "char"), ("bpe", "bpe")] + ([("gpt2", "gpt2")] if HAS_GPT2 else [])
    base = ["--task", "qa", "--bpe-vocab", "260", *RUN]
    for tname, flag in qa_tokenizers:
        cases = [(long, True)] + [(write(env, f"qa/{n}" + (".tsv" if "tsv" in n else ".jsonl"), d), r)
                                  for n, (d, r) in pairs.items()]
        for path, refused in cases:
            check(train.main, [*base, "--data", path, "--tokenizer", flag, "--out",
                               env["dir"] / "runs" / f"qa-{tname}-{path.stem}"], must_refuse=refused)
        for name, (data, refused, _) in texts().items():
            if name in ("binary-nul", "junk-as-text"):      # fine texts would train: lm covers them
                continue
            mix = write(env, f"qa-mix/{name}.txt", data)
            check(train.main, [*base, "--data", good, "--mix-data", mix, "--tokenizer", flag, "--out",
                               env["dir"] / "runs" / f"qa-mix-{tname}-{name}"], must_refuse=bool(refused))


# ---- interp: --head, --layer, --text --------------------------------------------------------------

SHAKESPEARE = ROOT / "checkpoints" / "shakespeare_char.npz"     # 4 layers of 4 heads, 64 positions


@pytest.mark.parametrize("extra, refused", [
    (["--head", "-1"], True), (["--head", "4"], True), (["--head", "99"], True), (["--head", "-100"], True),
    (["--head", "0"], False), (["--head", "3"], False), (["--layer", "-1"], True), (["--layer", "4"], True),
    (["--layer", "99"], True), (["--layer", "0"], False), (["--layer", "3", "--head", "3"], False),
    (["--layer", "3", "--head", "4"], True),
    (["--text", ""], True), (["--text", " "], True), (["--text", "\n"], True), (["--text", "\t\t "], True),
    (["--text", "\u20ac\u20ac"], True), (["--text", "R" * 84], True), (["--text", "R" * 65], True),
    (["--text", "R" * 64], False), (["--text", "R"], False), (["--text", "R", "--html", "x.html"], True),
    (["--text", "RO", "--html", "x.html"], False),
])
def test_interp_heads_layers_and_texts(env, extra, refused):
    from glassformer.cli import interp
    args = ["--text", "ROMEO"] + extra if "--text" not in extra else extra
    check(interp.main, [SHAKESPEARE, *args], must_refuse=refused)


@pytest.mark.parametrize("name, extra, refused", [
    ("digits", ["--head", "-1"], True), ("digits", ["--layer", "9"], True), ("digits", ["--text", ""], True),
    ("sentences", ["--head", "99"], True), ("sentences", ["--text", "  "], True),
    ("sentences", ["--example", "-1"], True), ("sentences", ["--layer", "0"], False),
])
def test_interp_other_checkpoints(env, name, extra, refused):
    from glassformer.cli import interp
    check(interp.main, [ROOT / "checkpoints" / f"{name}.npz", *extra], must_refuse=refused)


# ---- a tokenizer smaller (or larger) than the embedding --------------------------------------------

def padded(env, rows, tok, name):
    """A decoder checkpoint of `rows` embedding rows with tokenizer `tok`."""
    from glassformer.checkpoint import save_checkpoint
    from glassformer.models import build_model
    from glassformer.models.config import lm_config
    path = env["dir"] / name
    model = build_model(lm_config("tiny", rows, max_len=16, **TINY_LM), np.random.default_rng(1))
    save_checkpoint(path, model, tokenizer=tok.to_dict(), task={"name": "lm", "context": 16})
    return path


def test_a_tokenizer_smaller_than_the_embedding_never_samples_beyond_it(env):
    from glassformer.cli import evaluate
    from glassformer.cli import repl
    from glassformer.tokenizers import CharTokenizer
    path = padded(env, 64, CharTokenizer(list("abcd")), "padded.npz")   # 60 rows no text decodes to
    for seed in range(4):
        rc, err, out = check(repl.main, ["--checkpoint", path, "--prompt", "ab", "--max-new-tokens", "60",
                                         "--seed", seed, "--temperature", "2"], must_refuse=False)
        assert rc == 0 and "(60 new tokens)" in out + err and err.count("note:") == 1, err + out
    rc, err, out = check(repl.main, ["--checkpoint", path, "--prompt", "abc", "--json", "--num-samples", "3",
                                     "--max-new-tokens", "30"], must_refuse=False)
    assert rc == 0 and all(i < 4 for line in out.splitlines() for i in json.loads(line)["new_ids"]), out
    check(evaluate.main, [path, "--data", write(env, "pad.txt", "abcd" * 10)], must_refuse=False)


def test_a_tokenizer_larger_than_the_embedding_stays_refused(env):
    from glassformer.cli import evaluate
    from glassformer.cli import repl
    from glassformer.tokenizers import CharTokenizer
    bad = padded(env, 4, CharTokenizer(list("abcdefgh")), "too-few-rows.npz")   # ids 4..7: no row
    for main, argv in ((repl.main, ["--checkpoint", bad, "--prompt", "ab"]),
                       (evaluate.main, [bad, "--data", write(env, "big.txt", "abcdefgh" * 4)])):
        rc, err, _ = check(main, argv, must_refuse=True)
        assert "tokenizer has 8 tokens" in err, err


# ---- GPT-2 folders: the 4 GiB cap ------------------------------------------------------------------

def sparse_safetensors(path, tensors):
    """A safetensors file of {name: (dtype, shape)} whose data are holes: any size, no disk used."""
    sizes = {"F32": 4, "U8": 1, "F16": 2}
    header, at = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = int(np.prod(shape)) * sizes[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + n]}
        at += n
    raw = json.dumps(header).encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + at)
    return path


def gpt2_folder(folder, C, L, V=64, T=16):
    """A GPT-2 folder whose config and (sparse) tensors describe n_embd C, n_layer L."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": C, "n_head": 1,
                                                    "n_layer": L, "vocab_size": V, "n_positions": T}))
    shapes = {"wte.weight": (V, C), "wpe.weight": (T, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    per = {"ln_1": [(C,), (C,)], "attn.c_attn": [(C, 3 * C), (3 * C,)], "attn.c_proj": [(C, C), (C,)],
           "ln_2": [(C,), (C,)], "mlp.c_fc": [(C, 4 * C), (4 * C,)], "mlp.c_proj": [(4 * C, C), (C,)]}
    for i in range(L):
        for name, (w, b) in per.items():
            shapes[f"h.{i}.{name}.weight"], shapes[f"h.{i}.{name}.bias"] = w, b
    sparse_safetensors(folder / "model.safetensors", {k: ("F32", s) for k, s in shapes.items()})
    return folder


def bounded(argv, limit=3 << 30):
    """(rc, stderr) of `python -m glassformer.evaluate argv` in a process allowed `limit` bytes of address
    space: a loader that allocates what a file claims dies of MemoryError instead of taking the machine."""
    def cap():
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        bound = limit if hard == resource.RLIM_INFINITY else min(limit, hard)   # never above a caller's
        resource.setrlimit(resource.RLIMIT_AS, (bound, bound))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.run([sys.executable, "-m", "glassformer.evaluate", *map(str, argv)], capture_output=True,
                       text=True, timeout=120, preexec_fn=cap, env=env)
    return p.returncode, p.stderr


def test_gpt2_folders_get_the_npz_loaders_4_gib_cap(env):
    from glassformer.checkpoint.safetensors import SafeTensors
    from glassformer.tokenizers import CharTokenizer
    text = write(env, "cap.txt", "abcdefgh" * 4)
    big = gpt2_folder(env["dir"] / "gpt2-big", C=8192, L=2)          # ~6.5 GB of float32 described
    rc, err = bounded([big, "--data", text])
    judge(CAUSE, rc, err, must_refuse=True, unbounded="out of memory" in err or "MemoryError" in err)
    assert "4 GiB" in err or "4,294,967,296" in err, err
    huge = sparse_safetensors(env["dir"] / "huge.safetensors", {"w": ("U8", (5 << 30,))})
    rc, err = 0, ""
    try:
        SafeTensors(huge)
    except Exception as e:                                  # noqa: BLE001 - UserError or a crash
        rc, err = (2, f"error: {e}\n") if type(e).__name__ == "UserError" else (1, traceback.format_exc())
    judge(CAUSE, rc, err, must_refuse=True)
    small = gpt2_folder(env["dir"] / "gpt2-small-sparse", C=8, L=1)  # under the cap: loads (zeros)
    CharTokenizer(list("abcdefgh")).save(small / "tokenizer.glassformer.json")
    rc, err = bounded([small, "--data", text, "--json"])
    judge(CAUSE, rc, err, must_refuse=False, unbounded="out of memory" in err or "MemoryError" in err)
    assert rc == 0 and err.count("note:") == 1, err          # 64 rows, 8 tokens: said once


@pytest.mark.parametrize("text", ["", " ", "\n\n", "\t \r\n", "\u3000", [], ["", " "]])
def test_bpe_training_refuses_text_with_nothing_to_learn(text):
    from glassformer.errors import UserError
    from glassformer.tokenizers import ByteLevelBPE
    try:
        ByteLevelBPE.train(text, 260, progress=False)
        rc, err = 0, ""
    except UserError as e:
        rc, err = 2, f"error: {e}\n"
    except Exception:                                       # noqa: BLE001 - a crash is what we look for
        rc, err = 1, traceback.format_exc()
    judge(CAUSE, rc, err, must_refuse=True)
