"""Language models: presets, the Trainer (schedule, clipping, accumulation, eval, checkpoints, exact
resume, Ctrl-C), the preallocated KV cache, and text generation."""
import io
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from glassformer.backend import to_numpy
from glassformer.checkpoint import load_checkpoint
from glassformer.errors import UserError
from glassformer.train import TrainConfig, Trainer, read_metrics
from glassformer.generate import eos_id, generate_text
from glassformer.data import lm_batches
from glassformer.models import lm_config
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.models import DecoderLM, build_model
from glassformer.optim.schedules import warmup_cosine
from glassformer.tokenizers import CharTokenizer, tokenizer_from_dict
from glassformer.generate import generate_tokens

TEXT = "the quick brown fox jumps over the lazy dog. " * 40


def lm_params(V, C, T, L):
    """Parameters of a tied, pre-LN, learned-position LM with d_ff = 4C (the presets' shape)."""
    block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    return V * C + T * C + L * block + 2 * C


def small_model(V, seed=0, **kw):
    settings = dict(d_model=16, n_heads=2, n_layers=2, max_len=16)
    settings.update(kw)
    return build_model(lm_config("tiny", V, **settings), np.random.default_rng(seed))


def make_trainer(model=None, seed=0, log=None, **kw):
    tok = CharTokenizer.from_text(TEXT)
    ids = np.array(tok.encode(TEXT), dtype=np.uint16)
    model = model or small_model(tok.vocab_size, seed)
    settings = dict(steps=6, lr=3e-3, min_lr=1e-4, warmup=2, eval_interval=0, eval_batches=3, log_interval=2)
    settings.update(kw)
    return Trainer(model, CrossEntropyLoss(), lm_batches(ids[:900], 4, 8), TrainConfig(**settings),
                   val_batches=lm_batches(ids[900:], 4, 8), tokenizer=tok,
                   task={"name": "lm", "context": 8}, log=log or io.StringIO())


def params_of(model):
    return {n: to_numpy(p).copy() for n, (p, _) in model.named_parameters()}


# ---- presets ----------------------------------------------------------------------------------

@pytest.mark.parametrize("preset,C,H,L,T", [("tiny", 128, 4, 4, 128), ("small", 256, 8, 6, 256),
                                             ("medium", 512, 8, 8, 512), ("large", 768, 12, 12, 1024),
                                             ("qa", 512, 8, 10, 1024)])
def test_presets_have_their_sizes(preset, C, H, L, T):
    c = lm_config(preset, 1000)
    assert (c.d_model, c.n_heads, c.n_layers, c.max_len, c.d_ff) == (C, H, L, T, 4 * C)
    assert (c.kind, c.norm_first, c.activation, c.positional, c.tie_weights, c.init) == \
        ("decoder_lm", True, "gelu", "learned", True, "normal")


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_preset_models_have_the_expected_parameter_count(preset):
    c = lm_config(preset, 65)
    model = build_model(c, np.random.default_rng(0))
    assert model.n_parameters() == lm_params(65, c.d_model, c.max_len, c.n_layers)


def test_preset_overrides_and_bad_names():
    c = lm_config("tiny", 65, max_len=64, d_model=64, dropout=0.1)
    assert (c.max_len, c.d_model, c.d_ff, c.dropout) == (64, 64, 256, 0.1)
    with pytest.raises(UserError, match="unknown preset"):
        lm_config("huge", 65)
    with pytest.raises(UserError, match="unknown model setting"):
        lm_config("tiny", 65, n_layer=3)


def test_lm_batches_are_shifted_windows():
    tokens = np.arange(100, dtype=np.uint16)
    x, y = lm_batches(tokens, 5, 7)(np.random.default_rng(0))
    assert x.shape == y.shape == (5, 7)
    np.testing.assert_array_equal(y, x + 1)
    with pytest.raises(UserError, match="shorter than context"):
        lm_batches(tokens[:5], 2, 7)


# ---- the Trainer ----------------------------------------------------------------------------

def test_optimizer_sees_warmup_then_cosine():
    tr = make_trainer(steps=10, warmup=3, lr=1e-2, min_lr=1e-3)
    seen = []
    for _ in range(10):
        tr.update()
        seen.append(tr.optimizer.lr)
    expected = [warmup_cosine(i, 1e-2, 3, 10, 1e-3) for i in range(10)]
    np.testing.assert_allclose(seen, expected)
    assert seen[0] < seen[1] < seen[2] == pytest.approx(1e-2) and seen[-1] < 2e-3


def test_a_one_process_fp32_trainer_runs_the_plain_step_with_no_wrappers():
    """The reference step itself, nothing around it; fp16 composes the scaler's update instead."""
    from glassformer import precision
    from glassformer.train.step import WrappedStep, train_step
    tr = make_trainer()
    assert tr.step_fn is train_step and tr.wrappers == []
    with precision.policy("fp16"):
        tr16 = make_trainer()
    assert isinstance(tr16.step_fn, WrappedStep) and tr16.step_fn.update == tr16.scaler.step
    assert tr16.step_fn.reduce is None and tr16.wrappers == []


class Recorder:
    """A model, loss and optimizer in one that writes down the calls a step makes."""

    def __init__(self):
        self.calls, self.pairs = [], []

    def __getattr__(self, name):
        return lambda *args: self.calls.append(name) or 1.0


def test_train_step_is_zero_grad_forward_loss_backward_clip_step_and_nothing_else(monkeypatch):
    """The four calls in order, and no rank: the step never asks who its ranks are."""
    from glassformer.train import parallel, step
    monkeypatch.setattr(parallel.Communicator, "allreduce_mean",
                        lambda *a: pytest.fail("train_step all-reduced"))
    r = Recorder()
    loss, _, norm = step.train_step(r, r, r, [((1,), 2), ((3,), 4)], grad_accum=2)
    assert r.calls == ["zero_grad"] + ["forward", "forward", "backward", "backward"] * 2 + ["step"]
    assert loss == 1.0 and norm is None


def test_a_wrapped_step_reduces_between_backward_and_the_update():
    """WrappedStep: reduce(pairs, loss_sum) after the last backward, then update in place of clip
    and step; the reduced loss is the one returned."""
    from glassformer.train.step import WrappedStep
    r = Recorder()
    reduce = lambda pairs, loss: r.calls.append("reduce") or 10 * loss    # noqa: E731
    update = lambda opt, clip: r.calls.append(f"update {clip}") or "norm"  # noqa: E731
    loss, _, norm = WrappedStep(reduce, update)(r, r, r, [((1,), 2)], 1, 0.5)
    assert r.calls == ["zero_grad", "forward", "forward", "backward", "backward", "reduce",
                       "update 0.5"]
    assert (loss, norm) == (10.0, "norm")


def test_clipping_bounds_the_global_norm():
    tr = make_trainer(grad_clip=1e-3)
    tr.update()
    norm = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for _, g in tr.params))
    assert float(tr.grad_norm) > 1e-2                       # the raw norm was well above the bound
    assert norm <= 1e-3 * (1 + 1e-4)


def test_weight_decay_skips_biases_norms_and_embeddings():
    tr = make_trainer()
    names = [n for n, _ in tr.model.named_parameters()]
    decayed = {n for n, d in zip(names, tr.optimizer.decay) if d}
    assert "blocks.0.ffn.fc1.W" in decayed and "blocks.0.attn.qkv.W" in decayed
    assert not any(n.endswith((".b", ".gamma", ".beta")) or "emb" in n or n == "pos.P"
                   for n in decayed)


def test_two_micro_batches_equal_one_double_batch():
    V = 11
    rng = np.random.default_rng(3)
    x = rng.integers(0, V, (4, 6))
    y = rng.integers(0, V, (4, 6))
    halves = iter([(x[:2], y[:2]), (x[2:], y[2:])])
    cfg = dict(steps=1, warmup=0, grad_clip=0.0, weight_decay=0.0)
    a = Trainer(small_model(V, 5, dtype="float64"), CrossEntropyLoss(), lambda r: next(halves),
                TrainConfig(grad_accum=2, **cfg), log=io.StringIO())
    b = Trainer(small_model(V, 5, dtype="float64"), CrossEntropyLoss(), lambda r: (x, y),
                TrainConfig(grad_accum=1, **cfg), log=io.StringIO())
    loss_a, loss_b = a.update(), b.update()
    assert float(loss_a) == pytest.approx(float(loss_b), rel=1e-12)
    for (name, (_, ga)), (_, (_, gb)) in zip(a.model.named_parameters(), b.model.named_parameters()):
        np.testing.assert_allclose(ga, gb, rtol=1e-10, atol=1e-13, err_msg=name)
    assert a.tokens_seen == b.tokens_seen == 24


def test_resume_is_exact(tmp_path):
    model = lambda seed: small_model(CharTokenizer.from_text(TEXT).vocab_size, seed, dropout=0.1)
    straight = make_trainer(model(0), steps=6)
    for _ in range(6):
        straight.update()
    first = make_trainer(model(0), steps=6)
    for _ in range(3):
        first.update()
    first.save(tmp_path / "mid.npz")
    second = make_trainer(model(99), steps=6)               # other init: everything must be loaded
    second.resume(tmp_path / "mid.npz")
    assert second.step == 3
    for _ in range(3):
        second.update()
    want, got = params_of(straight.model), params_of(second.model)
    assert all(np.array_equal(want[n], got[n]) for n in want)
    assert np.array_equal(straight.optimizer.v[0], second.optimizer.v[0])


def test_resume_rejects_another_model(tmp_path):
    tr = make_trainer()
    tr.save(tmp_path / "a.npz")
    other = make_trainer(small_model(CharTokenizer.from_text(TEXT).vocab_size, d_model=32))
    with pytest.raises(UserError, match="config differs"):
        other.resume(tmp_path / "a.npz")


def test_validation_loss_and_perplexity():
    tr = make_trainer()
    m = tr.evaluate()
    assert m["val_ppl"] == pytest.approx(math.exp(m["val_loss"]))
    V = CharTokenizer.from_text(TEXT).vocab_size
    assert abs(m["val_loss"] - math.log(V)) < 0.1           # std-0.02 init: nearly uniform
    assert tr.evaluate() == m                               # the same batches every time


def test_fit_writes_checkpoints_metrics_and_plot(tmp_path):
    log = io.StringIO()
    tr = make_trainer(log=log, steps=6, eval_interval=3, out_dir=str(tmp_path))
    summary = tr.fit()
    assert summary["step"] == 6 and not summary["interrupted"]
    for name in ("best.npz", "last.npz", "metrics.csv", "loss.png"):
        assert (tmp_path / name).stat().st_size > 0
    ckpt = load_checkpoint(tmp_path / "best.npz")
    assert ckpt.task == {"name": "lm", "context": 8}
    tok = tokenizer_from_dict(ckpt.tokenizer)
    assert tok.decode(tok.encode("lazy dog")) == "lazy dog"
    assert ckpt.optimizer_state["arrays"] and ckpt.meta["rng_state"]
    assert ckpt.metrics["val_loss"] == pytest.approx(summary["best_val_loss"])
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows if r["val_loss"] is not None] == [3, 6]
    text = log.getvalue()
    assert "tok/s" in text and "ETA" in text and "val loss" in text


def test_ctrl_c_stops_after_the_step_and_keeps_the_best(tmp_path):
    def interrupt(trainer, row):
        if trainer.step == 4:
            os.kill(os.getpid(), signal.SIGINT)             # what Ctrl-C sends
    tr = make_trainer(steps=50, eval_interval=2, log_interval=2, out_dir=str(tmp_path))
    tr.on_log = interrupt
    summary = tr.fit()
    assert summary["interrupted"] and summary["step"] in (4, 5)
    assert load_checkpoint(tmp_path / "last.npz").step == summary["step"]
    assert load_checkpoint(tmp_path / "best.npz").step <= summary["step"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_train_config_validation():
    with pytest.raises(UserError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(UserError, match="lr"):
        TrainConfig(lr=0)


def test_tiny_lm_learns_repeated_text():
    text = "hello world! " * 40
    tok = CharTokenizer.from_text(text)
    ids = np.array(tok.encode(text), dtype=np.uint16)
    model = build_model(lm_config("tiny", tok.vocab_size, d_model=32, n_heads=2, n_layers=2,
                                  max_len=16), np.random.default_rng(0))
    cfg = TrainConfig(steps=60, lr=1e-2, min_lr=1e-3, warmup=10, eval_interval=0,
                      eval_batches=2, log_interval=1000)
    tr = Trainer(model, CrossEntropyLoss(), lm_batches(ids, 8, 16), cfg,
                 val_batches=lm_batches(ids, 8, 16), log=io.StringIO())
    summary = tr.fit()
    assert summary["val_loss"] < 0.3                        # log V = 2.2 at the start
    assert generate_text(model, tok, "hello", 7, temperature=0) == " world!"


# ---- KV cache and generation --------------------------------------------------------------------

@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_cached_decoding_equals_the_full_forward(dtype, tol):
    model = small_model(13, 1, dtype=dtype).eval()
    ids = np.random.default_rng(0).integers(0, 13, (2, 12))
    full = to_numpy(model.forward(ids))                     # (B, T, V)
    caches = model.new_caches()
    steps = [model.forward(ids[:, :5], caches, 0)]          # a prompt, then one token at a time
    buffers = [c["k_buf"] for c in caches]
    steps += [model.forward(ids[:, t:t + 1], caches, t) for t in range(5, 12)]
    np.testing.assert_allclose(np.concatenate([to_numpy(s) for s in steps], axis=1), full,
                               rtol=tol, atol=tol)
    D = model.config.d_model // model.config.n_heads
    assert caches[0]["k_buf"].shape == (2, model.config.n_heads, model.config.max_len, D)
    assert all(c["k_buf"] is b for c, b in zip(caches, buffers))   # written in place, never grown
    assert caches[0]["k"].shape[2] == 12


def test_greedy_generation_is_the_same_with_and_without_the_cache():
    model = small_model(13, 2)
    prompt = [1, 2, 3]
    a = generate_tokens(model, prompt, 30, temperature=0)           # 33 tokens > max_len 16: window slides
    b = generate_tokens(model, prompt, 30, temperature=0, use_cache=False)
    assert a == b and len(a) == 30


def force_eos_model(tok):
    """An untied model whose final LayerNorm always outputs ones and whose head favours <eos>."""
    model = build_model(lm_config("tiny", tok.vocab_size, d_model=16, n_heads=2, n_layers=1,
                                  max_len=16, tie_weights=False), np.random.default_rng(0))
    model.ln_f.gamma[...] = 0
    model.ln_f.beta[...] = 1
    model.head.W[:, eos_id(tok)] = 10.0
    return model


def test_generation_stops_at_eos():
    tok = CharTokenizer.from_text("abc ", specials=["<|endoftext|>"])
    model = force_eos_model(tok)
    assert eos_id(tok) == 0
    assert generate_tokens(model, [1, 2], 8, temperature=0, eos_id=0) == [0]
    assert generate_tokens(model, [1, 2], 3, temperature=0) == [0, 0, 0]   # no eos_id: runs to the limit
    assert generate_text(model, tok, "ab", 8, temperature=0) == ""
    assert generate_text(model, tok, "", 8, temperature=0) == ""   # empty prompt starts from eos


def test_generate_text_needs_a_prompt_without_eos():
    tok = CharTokenizer.from_text("abc")
    model = small_model(tok.vocab_size)
    with pytest.raises(UserError, match="prompt is empty"):
        generate_text(model, tok, "")
    out = generate_text(model, tok, "ab", 5, temperature=1.0, seed=0)
    assert len(out) == 5 and set(out) <= set("abc")
    assert out == generate_text(model, tok, "ab", 5, temperature=1.0, seed=0)


# ---- train_step_by_step.py --task lm and test_model_manually.py ---------------------------------

def lm_argv(data, out, *extra):
    return ["--task", "lm", "--data", str(data), "--context", "8", "--batch-size", "2",
            "--eval-interval", "2", "--out", str(out), "--no-interactive", *extra]


@pytest.fixture
def text_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                             # the token cache goes under ./.cache
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_cli_walks_trains_resumes_exactly_and_the_repl_continues_text(text_file, tmp_path, capsys):
    from glassformer.cli import repl, train
    from glassformer.cli.lm import run_lm
    log_progress = Trainer._log_progress

    def stop_at_4(self, window):                            # as if Ctrl-C came during step 4
        log_progress(self, window)
        self.stop_requested = self.step == 4
    Trainer._log_progress = stop_at_4
    try:
        assert train.main(lm_argv(text_file, tmp_path / "a", "--steps", "6")) == 130
    finally:
        Trainer._log_progress = log_progress
    last = str(tmp_path / "a" / "last.npz")
    assert load_checkpoint(last).step == 4
    assert "continue with: python train_step_by_step.py --resume" in capsys.readouterr().out
    assert train.main(["--resume", last]) == 0       # on to the run's 6 steps
    # the same run straight through, walking the first batch stage by stage first
    walk_log, prompts = io.StringIO(), []
    argv = lm_argv(text_file, tmp_path / "b", "--steps", "6")
    ask = lambda prompt: prompts.append(prompt) or ""       # Enter at every pause
    assert run_lm(train.build_parser().parse_args(argv), argv, walk_log, True, ask) == 0
    text = walk_log.getvalue()
    assert "=== stage 1/" in text and "causal" in text and "'·' exactly 0" in text
    assert len(prompts) >= 20                               # every stage paused for Enter
    resumed, straight = (load_checkpoint(tmp_path / d / "last.npz") for d in "ab")
    assert resumed.step == straight.step == 6               # resume exact, the walk left no trace:
    a, b = resumed.model.state_dict(), straight.model.state_dict()
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert resumed.task["name"] == "lm" and resumed.tokenizer["type"] == "char"
    assert "best validation loss" in text and "sample from best.npz" in text
    capsys.readouterr()
    assert train.main(["--resume", last, "--steps", "8", "--context", "16"]) == 2
    assert train.main(["--resume", last]) == 2
    err = capsys.readouterr().err
    assert "--context 16 differs" in err and "already at step 6" in err
    assert repl.main(["--checkpoint", str(tmp_path / "b" / "best.npz"), "--expr", "the lazy",
                      "--max-new-tokens", "5", "--temperature", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("the lazy") and len(lines[0]) == len("the lazy") + 5
    assert lines[1] == "(5 new tokens)"


@pytest.mark.parametrize("extra,message", [
    ([], "needs --data"), (["--data", "x.txt", "--epochs", "3"], "--epochs is for digits"),
    (["--data", "missing.txt"], "no such file"),
    (["--data", "text.txt", "--tokenizer", "wordy"], "use char")])
def test_cli_lm_mistakes_are_one_line_errors(text_file, capsys, extra, message):
    from glassformer.cli import train
    assert train.main(["--task", "lm", "--no-interactive", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


@pytest.mark.parametrize("name,data", [("zeros.bin", bytes(3000)),            # valid UTF-8, but NULs
                                       ("weights.npy", b"\x93NUMPY\x01\x00" + bytes(range(256)))])
def test_cli_lm_binary_data_is_one_error_and_makes_no_run_directory(text_file, tmp_path, capsys,
                                                                    name, data):
    from glassformer.cli import train
    (tmp_path / name).write_bytes(data)
    out = tmp_path / "run"
    assert train.main(lm_argv(tmp_path / name, out, "--steps", "1")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / name}: ") and len(err.splitlines()) == 1
    assert ("binary file" if name == "zeros.bin" else "not UTF-8 text at byte 0") in err
    assert not out.exists()


def test_cli_bpe_tokenizer(text_file, tmp_path, capsys):
    from glassformer.cli import train
    argv = lm_argv(text_file, tmp_path / "bpe", "--steps", "1", "--tokenizer", "bpe", "--bpe-vocab", "280")
    assert train.main(argv) == 0
    assert "bpe: 23 merges in" in capsys.readouterr().err    # the training's progress line
    ckpt = load_checkpoint(tmp_path / "bpe" / "best.npz")
    assert ckpt.tokenizer["type"] == "bpe" and ckpt.config.vocab_size == 280


def test_gpt2_tokenizer_is_found(monkeypatch):
    """--tokenizer gpt2 reads GPT-2's files from the data cache ($GLASSFORMER_DATA; shared/data here)."""
    from glassformer.runner.lm import GPT2_FILES, build_tokenizer, gpt2_dirs
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if shared.is_dir():
        monkeypatch.setenv("GLASSFORMER_DATA", str(shared))
    if not any(all((d / f).exists() for f in GPT2_FILES) for d in gpt2_dirs()):
        pytest.skip("GPT-2's encoder.json / vocab.bpe are not in the data cache ($GLASSFORMER_DATA)")
    tok = build_tokenizer("gpt2", None, None, io.StringIO())
    assert tok.vocab_size == 50257 and eos_id(tok) == 50256
    assert tok.encode("Hello world") == [15496, 995]


@pytest.mark.parametrize("bias", [True, False])
def test_lm_parameters_counts_the_model_with_and_without_biases(bias):
    """cli.lm.lm_parameters (the benches' FLOP count) is the built model's count, nanoGPT's bias=False too."""
    from glassformer.cli.lm import lm_parameters
    c = lm_config("tiny", 65, max_len=64, bias=bias)
    model = build_model(c, np.random.default_rng(0))
    assert lm_parameters(c) == model.n_parameters()
    assert (lm_parameters(c) < lm_parameters(lm_config("tiny", 65, max_len=64))) == (not bias)
    with pytest.raises(UserError, match="bias='no' must be true or false"):
        lm_config("tiny", 65, bias="no")
