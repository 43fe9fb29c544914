"""python -m glassformer.explain: the page's numbers are the model's own, for every kind of model.

The JSON island of the written page is read back and checked against the model's own forward,
backward and AdamW step run here in Python on the same example; bad input is one error line, exit 2,
and no file.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glassformer import backend
from glassformer.checkpoint import load_checkpoint, save_checkpoint
from glassformer.checkpoint.safetensors import save_safetensors
from glassformer.cli.explain import main
from glassformer.explain.island import decode, read_island
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.optim import AdamW, decay_mask
from glassformer.research.encoder_decoder import EncoderDecoder, EncoderDecoderConfig
from glassformer.tokenizers import tokenizer_from_dict

ROOT = Path(__file__).resolve().parents[2]
DIGITS, CHAR_LM = ROOT / "checkpoints" / "digits.npz", ROOT / "checkpoints" / "shakespeare_char.npz"
SCRIPT = ROOT / "train_step_by_step.py"
ROMEO = "ROMEO: But soft, what light through yonder window breaks? It is the east, and Juliet"


def explain(tmp_path, *args, name="step.html"):
    """Run the command in-process on ARGS --out tmp_path/name: (exit code, the page's path)."""
    out = tmp_path / name
    return main([*map(str, args), "--out", str(out)]), out


def island_of(path):
    """The JSON island of a written page."""
    return read_island(path.read_text(encoding="utf-8"))


def stage(island, sid):
    """The stage of that id."""
    return next(s for s in island["stages"] if s["id"] == sid)


def train(tmp_path, *args):
    """train_step_by_step.py ARGS --no-interactive in tmp_path: the CompletedProcess."""
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args), "--no-interactive"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def own_step(path, ids, targets, lr=1e-3):
    """The model's own forward, loss, backward and AdamW step in Python: (logits, loss, model, before),
    through the reference layers as the page runs them (backend.use_overlay(False))."""
    with backend.use_overlay(False):
        return _own_step(path, ids, targets, lr)


def _own_step(path, ids, targets, lr):
    model = load_checkpoint(path, optimizer=False).model
    model.eval()
    loss_fn = CrossEntropyLoss()
    logits = model.forward(np.array([ids]))
    loss = float(loss_fn.forward(logits, np.array([targets]) if len(targets) > 1 else np.array(targets)))
    model.backward(loss_fn.backward())
    grads = {n: g.copy() for n, (_, g) in model.named_parameters()}
    before = {n: p.copy() for n, (p, _) in model.named_parameters()}
    opt = AdamW(model.get_parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.1,
                decay=decay_mask(model.named_parameters()))
    opt.step()
    after = {n: p.copy() for n, (p, _) in model.named_parameters()}
    steps = {n: after[n] - before[n] for n in after}
    for k, n in enumerate(after):                           # and the moments the step left
        steps[n + " m"], steps[n + " v"] = opt.m[k].copy(), opt.v[k].copy()
    return logits[0], loss, grads, steps


def test_the_char_lm_s_logits_loss_gradient_and_update_are_the_model_s_own(tmp_path, capsys):
    code, out = explain(tmp_path, CHAR_LM, "--text", ROMEO[:33])
    assert code == 0, capsys.readouterr().err
    island = island_of(out)
    tok = tokenizer_from_dict(load_checkpoint(CHAR_LM, optimizer=False).tokenizer)
    seq = tok.encode(ROMEO[:33])
    assert island["ids"] == seq[:-1] and island["targets"] == seq[1:] and len(island["tokens"]) == 32
    logits, loss, grads, steps = own_step(CHAR_LM, seq[:-1], seq[1:])
    z = decode(stage(island, "logits")["tensors"]["logits z"])             # (T, V)
    np.testing.assert_allclose(z, logits, atol=1e-6, rtol=0)
    assert abs(island["loss"] - loss) < 1e-6
    g = stage(island, "update-tok_emb-W")["tensors"]["gradient g"]
    np.testing.assert_allclose(decode(g), grads["tok_emb.W"], atol=1e-6, rtol=0)
    w = stage(island, "update-blocks-0-attn-proj-W")["tensors"]["step (after - before)"]
    assert np.abs(steps["blocks.0.attn.proj.W"]).max() > 1e-5             # a step that moved the weight
    np.testing.assert_allclose(decode(w), steps["blocks.0.attn.proj.W"], atol=1e-6, rtol=0)
    fc1 = stage(island, "update-blocks-0-ffn-fc1-W")["tensors"]             # 65,536 numbers: whole too
    for name, own in (("step (after - before)", ""), ("m (first moment)", " m"), ("v (second moment)", " v")):
        np.testing.assert_allclose(decode(fc1[name], island), steps["blocks.0.ffn.fc1.W" + own], atol=1e-6,
                                   rtol=0, err_msg=name)
    assert fc1["m (first moment)"]["op"] == "scale" and fc1["v (second moment)"]["op"] == "scale_square"


def test_the_digits_classifier_page_has_its_class_logits_and_every_stage_in_the_walk_s_order(tmp_path):
    code, out = explain(tmp_path, DIGITS, "--text", "min(4,1,7)")
    assert code == 0
    island = island_of(out)
    assert island["target_labels"] == ["1"] and island["tokens"][:2] == ["Min", "("]
    logits, loss, _, _ = own_step(DIGITS, island["ids"], [1])
    np.testing.assert_allclose(decode(stage(island, "logits")["tensors"]["logits z"])[0], logits, atol=1e-6)
    ids = [s["id"] for s in island["stages"]]
    assert ids[:4] == ["tokens", "embedding", "positions", "block-0-qkv"]   # post-LN: no ln1 stage first
    assert whole_up_to_the_limit(island)["add"] == 2 * 2 + 1          # post-LN residuals: x + f(x) too
    assert ids.index("block-0-softmax") < ids.index("block-0-residual-1") < ids.index("block-0-fc1")
    assert ids.index("loss") < ids.index("backward-loss") < ids.index("backward-head") < \
        ids.index("backward-tok_emb") < ids.index("update-tok_emb-W")
    att = decode(stage(island, "block-0-softmax")["tensors"]["attention weights"])     # (H, T, T)
    np.testing.assert_allclose(att.sum(-1), 1, atol=1e-5)
    for s in island["stages"]:                              # every function named is in the code table
        assert all(r["name"] in island["code"] for r in s["code"])
    src = island["code"]["glassformer.layers.attention.attend"]
    assert src["file"] == "glassformer/layers/attention.py" and any("softmax(" in x for x in src["lines"])


def test_a_sentences_run_writes_its_page_with_html_and_explain_reads_its_folder(tmp_path):
    run = tmp_path / "run"
    done = train(tmp_path, "--task", "sentences", "--epochs", "1", "--out", run,
                 "--html", tmp_path / "walk.html")
    assert done.returncode == 0, done.stderr
    walk = island_of(tmp_path / "walk.html")
    assert walk["tokens"][0] == "<START>" and walk["optimizer"]["class"] == "Adam"
    assert (run / "best.npz").exists()                      # then it trained as usual
    code, out = explain(tmp_path, run, "--text", "the dog ran to the mat")
    assert code == 0
    island = island_of(out)
    assert island["tokens"] == ["<START>", "the", "dog", "ran", "to", "the", "mat"]
    assert island["target_labels"][-1] == "<END>" and island["optimizer"]["class"] == "AdamW"


def test_an_lm_run_s_html_is_the_first_window_s_step_and_qa_refuses_the_flag(tmp_path):
    (tmp_path / "t.txt").write_text(ROMEO * 40, encoding="utf-8")
    done = train(tmp_path, "--task", "lm", "--data", "t.txt", "--tokenizer", "char", "--preset", "tiny",
                 "--steps", "1", "--batch-size", "2", "--context", "16", "--eval-batches", "1",
                 "--out", "run", "--html", "lm.html")
    assert done.returncode == 0, done.stderr
    island = island_of(tmp_path / "lm.html")
    assert len(island["tokens"]) == 16 and island["optimizer"]["class"] == "AdamW"
    assert "".join(island["tokens"]).replace("\u2423", " ") in ROMEO * 2
    assert (tmp_path / "run" / "best.npz").exists()
    (tmp_path / "qa.jsonl").write_text('{"question": "Who?", "answer": "Me"}\n' * 20, encoding="utf-8")
    done = train(tmp_path, "--task", "qa", "--data", "qa.jsonl", "--html", "qa.html")
    assert done.returncode == 2 and done.stderr.startswith("error: --html is for") and "Traceback" not in \
        done.stderr and not (tmp_path / "qa.html").exists()


def gpt2_folder(folder, L, C, H, T, V, seed=0):
    """A random GPT-2-shaped Hugging Face folder (config.json + model.safetensors), no tokenizer files
    beyond a byte-level one of 256 tokens + <|endoftext|> when V allows it."""
    rng = np.random.default_rng(seed)
    shapes = {"wte.weight": (V, C), "wpe.weight": (T, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    for i in range(L):
        for name, shape in {"ln_1.weight": (C,), "ln_1.bias": (C,), "attn.c_attn.weight": (C, 3 * C),
                            "attn.c_attn.bias": (3 * C,), "attn.c_proj.weight": (C, C),
                            "attn.c_proj.bias": (C,),
                            "ln_2.weight": (C,), "ln_2.bias": (C,), "mlp.c_fc.weight": (C, 4 * C),
                            "mlp.c_fc.bias": (4 * C,), "mlp.c_proj.weight": (4 * C, C),
                            "mlp.c_proj.bias": (C,)}.items():
            shapes[f"h.{i}.{name}"] = shape
    tensors = {}
    for k, s in shapes.items():                             # in place: one float32 array per tensor
        tensors[k] = rng.standard_normal(s, dtype=np.float32)
        tensors[k] *= 0.02
        tensors[k] += k.endswith(("_1.weight", "_2.weight", "ln_f.weight"))
    folder.mkdir()
    save_safetensors(folder / "model.safetensors", tensors, metadata={"format": "pt"})
    config = {"model_type": "gpt2", "n_embd": C, "n_head": H, "n_layer": L, "n_positions": T,
              "vocab_size": V, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"}
    (folder / "config.json").write_text(json.dumps(config))
    from glassformer.tokenizers.bpe import bytes_to_unicode
    u = bytes_to_unicode()
    vocab = {u[b]: b for b in range(256)}
    vocab["<|endoftext|>"] = 256
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def test_a_gpt2_folder_s_page_has_its_byte_tokens_and_the_model_s_own_loss(tmp_path):
    folder = gpt2_folder(tmp_path / "gpt2", L=2, C=32, H=4, T=32, V=300)
    code, out = explain(tmp_path, folder, "--text", "hello world, again")
    assert code == 0
    island = island_of(out)
    assert island["tokens"][:6] == list("hello\u2423")
    _, loss, grads, _ = own_step(folder, island["ids"], island["targets"])
    assert abs(island["loss"] - loss) < 1e-6
    np.testing.assert_allclose(decode(stage(island, "update-tok_emb-W")["tensors"]["gradient g"]),
                               grads["tok_emb.W"], atol=1e-6, rtol=0)
    assert whole_up_to_the_limit(island)["add"] == 2 * 2 + 1           # GPT-2's residuals and x + PE


@pytest.fixture(scope="module")
def page64(tmp_path_factory):
    """The char LM's page of a 64-token example (its context): (path, island)."""
    code, out = explain(tmp_path_factory.mktemp("page64"), CHAR_LM, "--text", (ROMEO * 2)[:65])
    assert code == 0
    return out, island_of(out)


def test_the_char_lm_page_of_a_64_token_example_is_at_most_16_mb(page64):
    out, island = page64
    assert len(island["tokens"]) == 64
    assert out.stat().st_size <= 16e6, out.stat().st_size


def whole_up_to_the_limit(island):
    """Assert every tensor of at most 262,144 numbers is whole (decodes to its shape) and every larger
    one summarised; returns {form: count} of the tensors' forms."""
    forms = {}
    for s in island["stages"]:
        for name, t in s["tensors"].items():
            where = f"{s['id']}: {name} {t['shape']}"
            if int(np.prod(t["shape"])) > 262_144:
                assert "summary" in t and t["limit"] == 262_144, where
                form = "summary"
            else:
                assert "summary" not in t and decode(t, island).shape == tuple(t["shape"]), where
                form = t.get("op") or ("ref" if "ref" in t else "b64")
            forms[form] = forms.get(form, 0) + 1
    return forms


def test_no_tensor_of_at_most_262144_numbers_is_summarised_m_v_and_step_included(page64):
    _, island = page64
    forms = whole_up_to_the_limit(island)
    assert "summary" not in forms                            # the char LM's biggest tensor: 65,536
    updates = [s for s in island["stages"] if s["phase"] == "update"]
    assert max(int(np.prod(s["tensors"]["v (second moment)"]["shape"])) for s in updates) == 65_536
    assert forms["scale"] == forms["scale_square"] == len(updates)       # the first m, v: from g
    assert forms["ref"] >= 9 and forms["add"] == 2 * 4 + 1 and forms["mask"] == 4
    first = {}                                              # a reference names a tensor stored before it
    for k, s in enumerate(island["stages"]):
        for name, t in s["tensors"].items():
            first[(s["id"], name)] = k
            for sid, other in [t["ref"]] if "ref" in t else t.get("args", []):
                assert first[(sid, other)] <= k, (s["id"], name)


LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))       # 3 GiB of address space at most
sys.path.insert(0, sys.argv[1])
from pathlib import Path
"""
MAKE_124M = LIMITED + """
from test_explain import gpt2_folder
gpt2_folder(Path(sys.argv[2]), L=12, C=768, H=12, T=1024, V=50257)
"""
EXPLAIN_124M = LIMITED + """
from glassformer.cli.explain import main
sys.exit(main([sys.argv[2], "--text", "Hello, world! Hi.", "--out", sys.argv[3]]))
"""


@pytest.mark.slow
def test_a_gpt2_124m_shaped_page_of_16_tokens_is_at_most_48_mb_in_under_3_gb(tmp_path):
    folder, out = tmp_path / "gpt2", tmp_path / "gpt2.html"
    for script, args in ((MAKE_124M, [folder]), (EXPLAIN_124M, [folder, out])):
        done = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent), *map(str, args)],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    island = island_of(out)
    assert len(island["tokens"]) == 16 and out.stat().st_size <= 48e6, out.stat().st_size
    whole_up_to_the_limit(island)
    logits = stage(island, "logits")["tensors"]["logits z"]
    assert logits["shape"] == [16, 50257] and logits["summary"]["block"]["shape"] == [16, 64]


def encoder_decoder(path):
    """A research encoder-decoder checkpoint, which the page refuses."""
    model = EncoderDecoder(EncoderDecoderConfig(vocab_size=9, d_model=8, n_heads=2, n_layers=1, d_ff=8,
                                                max_len=6), np.random.default_rng(0))
    save_checkpoint(path, model, extra={"family": "encoder_decoder"})
    return path


@pytest.mark.parametrize("make, args, message", [
    (lambda p: p / "missing.npz", [], "no such file or folder"),
    (lambda p: CHAR_LM, ["--text", "a" * 70], "longer than this model's context of 64"),
    (encoder_decoder, [], "cannot show"),
    (lambda p: DIGITS, ["--text", "Max ( 5 3 x )"], "single digits"),
])
def test_bad_input_is_one_error_line_exit_2_and_no_file(tmp_path, capsys, make, args, message):
    source = make(tmp_path / "model.npz")
    out = tmp_path / "step.html"
    code = main([str(source), *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("error: ")
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))
