"""Interpretability: circuits against direct computation, head scores on hand-made heads, maps, CLI."""
import re

import numpy as np
import pytest

from glassformer import interp
from glassformer.cli import interp as interp_cli
from glassformer.models import ModelConfig, build_model
from glassformer.research import EncoderDecoder, EncoderDecoderConfig, ToyConfig, build_toy_model


def toy(rng, **kw):
    model = build_toy_model(ToyConfig(**{"vocab_size": 7, "d_model": 8, "n_heads": 2, "n_ctx": 6,
                                         "model_type": "attention_only_2L", **kw}), rng)
    for _, (p, _) in model.named_parameters():              # trained-looking weights, not zeros
        p[...] = rng.normal(0.0, 0.5, p.shape)
    return model


@pytest.mark.parametrize("tie", [False, True])
def test_qk_and_ov_circuits_match_a_direct_computation(rng, tie):
    model = toy(rng, tie_weights=tie)
    C, H, D = 8, 2, 4
    for layer in (0, 1):
        W = model.blocks[layer].attn.qkv.W                  # (C, 3C): [q | k | v]
        Wo = model.blocks[layer].attn.proj.W                # (C, C)
        E = model.tok_emb.W
        U = E.T if tie else model.head.W
        qk, ov = interp.qk_circuit(model, layer), interp.ov_circuit(model, layer)
        assert qk.shape == ov.shape == (H, 7, 7)
        for h in range(H):
            cols = slice(h * D, (h + 1) * D)
            Wq, Wk, Wv = W[:, cols], W[:, C:][:, cols], W[:, 2 * C:][:, cols]
            np.testing.assert_allclose(qk[h], E @ Wq @ Wk.T @ E.T, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(ov[h], E @ Wv @ Wo[cols] @ U, rtol=1e-4, atol=1e-5)


def test_qk_circuit_scores_are_the_attention_scores_of_a_norm_free_model(rng):
    model = toy(rng, norm="none", model_type="attention_only_1L")
    model.pos.P[...] = 0.0                                  # no positions: only tokens matter
    model.blocks[0].attn.qkv.b[...] = 0.0
    ids = np.array([[3, 1, 4, 1, 5, 2]])
    att = interp.attention_maps(model, ids)["blocks.0.attn"][0]    # (H, T, T)
    qk = interp.qk_circuit(model) / np.sqrt(4)              # scores are divided by sqrt(D)
    scores = qk[:, ids[0][:, None], ids[0][None, :]]        # (H, T, T)
    scores = np.where(np.tril(np.ones((6, 6), bool)), scores, -np.inf)
    want = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(att, want / want.sum(-1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_head_weights_of_core_attention_match_the_toy_layout(rng):
    model = build_model(ModelConfig(vocab_size=9, kind="decoder_lm", d_model=8, n_heads=2,
                                    n_layers=1, max_len=5, fused_qkv=False), rng)
    w = interp.head_weights(model.blocks[0].attn)
    np.testing.assert_array_equal(w["W_Q"][1], model.blocks[0].attn.q_proj.W[:, 4:])
    np.testing.assert_array_equal(w["W_O"][1], model.blocks[0].attn.proj.W[4:])
    assert interp.qk_circuit(model).shape == (2, 9, 9)


def test_top_pairs_finds_the_largest_entries():
    c = np.zeros((2, 3, 3))
    c[0, 2, 1], c[1, 0, 0], c[1, 1, 2] = 5.0, 3.0, 4.0
    top = interp.top_pairs(c, ["a", "b", "c"], k=1)
    assert top == [{"head": 0, "row": "c", "col": "b", "value": 5.0},
                   {"head": 1, "row": "b", "col": "c", "value": 4.0}]


def causal_uniform(T):
    return np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]


def hand_patterns(L=4):
    """(1, 4, T, T) heads: previous-token, first-token, induction (period L after <bos>), uniform."""
    T = 2 * L + 1
    prev = np.eye(T, k=-1)
    prev[0, 0] = 1.0
    first = np.zeros((T, T))
    first[:, 0] = 1.0
    ind = causal_uniform(T)
    for t in range(L + 1, T):                               # second repeat: t - L + 1
        ind[t] = 0.0
        ind[t, t - L + 1] = 1.0
    return np.stack([prev, first, ind, causal_uniform(T)])[None]


def test_classifier_labels_hand_made_heads():
    L = 4
    rng = np.random.default_rng(0)
    r = rng.permutation(10)[:L] + 3
    ids = np.concatenate([[1], r, r])[None]                 # <bos> r r
    rows = interp.classify_heads({"layer0": hand_patterns(L)}, ids, period=L, prefix=1)
    assert [r["label"] for r in rows] == ["previous-token", "first-token", "induction", "diffuse"]
    assert rows[0]["previous_token"] == 1.0 and rows[1]["first_token"] == 1.0
    assert rows[2]["induction"] == 1.0 and rows[3]["entropy"] == pytest.approx(1.0)
    by_tokens = interp.classify_heads({"layer0": hand_patterns(L)}, ids)   # no period given
    assert by_tokens[2]["label"] == "induction" and by_tokens[2]["induction"] == 1.0


def test_sharp_unrecognised_head_is_other():
    att = np.zeros((1, 1, 6, 6))
    att[0, 0, np.arange(6), np.arange(6)] = 1.0             # attends to itself
    assert interp.classify_heads({"x": att})[0]["label"] == "other"


def test_induction_targets_by_period_and_by_tokens_agree():
    ids = np.array([[1, 5, 6, 7, 5, 6, 7, 0]])              # <bos> r r <pad>, L = 3, prefix 1
    by_period = interp.induction_targets(ids, period=3, prefix=1)
    by_tokens = interp.induction_targets(ids)
    np.testing.assert_array_equal(by_period[0, 4:7], by_tokens[0, 4:7])
    assert by_period[0, 4, 2] and by_period[0, 6, 4] and by_period.sum() == 3


def test_attention_entropy():
    att = causal_uniform(5)[None, None]
    assert interp.attention_entropy(att)[0] == pytest.approx(np.mean(np.log(np.arange(1, 6))))
    assert interp.attention_entropy(att, normalized=True)[0] == pytest.approx(1.0)
    sharp = np.eye(5)[None, None]
    assert interp.attention_entropy(sharp)[0] == 0.0


def test_attention_maps_for_every_model_family(rng):
    m = toy(rng)
    maps = interp.attention_maps(m, np.array([[1, 2, 3]]))
    assert list(maps) == ["blocks.0.attn", "blocks.1.attn"] and maps["blocks.0.attn"].shape == (1, 2, 3, 3)
    lm = build_model(ModelConfig(vocab_size=9, kind="decoder_lm", d_model=8, n_heads=2, n_layers=1,
                                 max_len=5), rng)
    assert list(interp.attention_maps(lm, np.array([[1, 2]]))) == ["blocks.0.attn"]
    ed = EncoderDecoder(EncoderDecoderConfig(vocab_size=9, d_model=8, n_heads=2, n_layers=1,
                                             d_ff=8, max_len=6), rng)
    maps = interp.attention_maps(ed, np.array([[3, 4, 5, 6]]), np.array([[1, 3]]))
    assert maps["encoder.0.attn"].shape == (1, 2, 4, 4)
    assert maps["decoder.0.self_attn"].shape == (1, 2, 2, 2)
    assert maps["decoder.0.cross_attn"].shape == (1, 2, 2, 4)
    assert ed.training and m.training                       # train mode restored


def test_per_token_loss_is_the_cross_entropy(rng):
    m = toy(rng)
    ids = [1, 4, 2, 6, 3]
    losses = interp.per_token_loss(m, ids)
    m.eval()
    logits = m.forward(np.array([ids]))[0].astype(np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(losses, -logp[np.arange(4), ids[1:]], rtol=1e-5)


def test_cli_prints_ascii_maps_and_writes_the_loss_page(tmp_path, capsys, monkeypatch):
    from dataclasses import replace
    from glassformer import experiments as ex
    monkeypatch.setenv("GLASSFORMER_CACHE", str(tmp_path / "cache"))
    exp = ex.EXPERIMENTS["induction"]
    exp = replace(exp, steps=1, eval_every=1, plots=False,
                  task_params={"n_symbols": 8, "length": 3, "min_length": 2, "max_prefix": 1,
                               "n_train": 16, "n_test": 4},
                  model_params={**exp.model_params, "d_model": 8, "n_heads": 2})
    run_dir, _ = ex.run(exp, tmp_path / "runs", log=lambda s: None)
    html = tmp_path / "loss.html"
    text = "<bos> t1 t2 t3 t1 t2 t3"
    assert interp_cli.main([str(run_dir), "--text", text, "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert "blocks.1.attn (average over heads)" in out and re.search(r"^blocks\.0\.attn +1 ", out, re.M)
    assert len(re.findall(r"<span ", html.read_text(encoding="utf-8"))) == 7
    assert interp_cli.main([str(run_dir), "--text", "t1 nope"]) == 2
    assert "unknown tokens ['nope']" in capsys.readouterr().err
    assert interp_cli.main([str(tmp_path)]) == 2                # not a run directory


# ---- train_step_by_step.py runs, legible pictures ------------------------------------------------

def step_run(tmp_path, name):
    """A run folder as train_step_by_step.py leaves one (best.npz), untrained: digits, sentences, lm."""
    from glassformer.checkpoint import save_checkpoint
    from glassformer.models import lm_config
    from glassformer.tasks import digits, sentences
    from glassformer.tokenizers import CharTokenizer, WordTokenizer
    rng = np.random.default_rng(0)
    if name == "digits":
        config = digits.DigitsConfig(size="small")
        model = build_model(ModelConfig(vocab_size=len(digits.VOCAB), d_model=16, n_heads=2, n_layers=1,
                                        d_ff=16, max_len=16, n_classes=10), rng)
        tok, task = WordTokenizer(digits.VOCAB[2:], specials=digits.VOCAB[:2]), \
            {"name": "digits", **config.to_dict(), "operations": digits.OPERATIONS}
    elif name == "sentences":
        vocab = sentences.vocabulary()
        model = build_model(ModelConfig(vocab_size=len(vocab), kind="decoder_lm", d_model=16, n_heads=2,
                                        n_layers=1, d_ff=16, max_len=16), rng)
        tok, task = WordTokenizer(vocab[3:], specials=sentences.SPECIALS), {"name": "sentences"}
    else:
        tok = CharTokenizer.from_text("hello world\n")
        model = build_model(lm_config("tiny", tok.vocab_size, d_model=16, n_heads=2, n_layers=1,
                                      max_len=32), rng)
        task = {"name": "lm", "context": 32}
    folder = tmp_path / name
    save_checkpoint(folder / "best.npz", model, tokenizer=tok.to_dict(), task=task)
    return folder


def test_cli_reads_train_step_by_step_run_folders(tmp_path, capsys):
    assert interp_cli.main([str(step_run(tmp_path, "digits")), "--example", "1"]) == 0
    assert "blocks.0.attn (average over heads)" in capsys.readouterr().out
    assert interp_cli.main([str(step_run(tmp_path, "digits")), "--text", "First(7)"]) == 0
    out = capsys.readouterr().out
    assert "First" in out and "[PAD]" in out                # the model's whole (padded) input
    html = tmp_path / "loss.html"
    assert interp_cli.main([str(step_run(tmp_path, "sentences")), "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert "<START>" in out and "<PAD>" not in out and "wrote" in out       # padding cropped
    assert "log 16 = 2.77" in html.read_text(encoding="utf-8")
    lm = step_run(tmp_path, "lm")
    assert interp_cli.main([str(lm / "best.npz"), "--text", "hello world"]) == 0
    assert "\u2423" in capsys.readouterr().out                              # the space, visible
    assert interp_cli.main([str(lm)]) == 2
    assert "pass --text" in capsys.readouterr().err
    assert interp_cli.main([str(step_run(tmp_path, "digits")), "--html", str(html)]) == 2
    assert "no per-token loss" in capsys.readouterr().err


def figures(monkeypatch):
    """Capture the figures visualization saves (their axes), instead of writing PNGs."""
    from glassformer import visualization
    saved = []
    monkeypatch.setattr(visualization, "_savefig", lambda fig, path: saved.append(fig) or path)
    return saved


def test_circuit_pngs_name_their_axes_tokens_and_colours(monkeypatch, rng):
    from glassformer.visualization import OV_AXES, plot_circuit
    saved = figures(monkeypatch)
    vocab = [f"t{i}" for i in range(200)]                   # too many to name each: every k-th
    plot_circuit(rng.normal(size=(2, 200, 200)), vocab, "ov.png", "OV", axes=OV_AXES)
    fig = saved[0]
    heads = [ax for ax in fig.axes if ax.get_title().startswith("head")]
    bars = [ax for ax in fig.axes if ax not in heads]
    assert len(heads) == 2 and len(bars) == 2               # a colour bar per head
    assert heads[0].get_xlabel() == "output token" and heads[0].get_ylabel() == "attended token"
    assert [bar.get_ylabel() for bar in bars] == ["", "logit contribution"]   # once per row
    names = [t.get_text() for t in heads[0].get_xticklabels()]
    assert names[0] == "t0" and 20 <= len(names) < 200 and set(names) <= set(vocab)
    assert max(fig.get_size_inches()) <= 14 + 1


def test_attention_pngs_crop_padding_and_stay_legible(monkeypatch, rng):
    from glassformer.visualization import save_attention_heatmaps
    saved = figures(monkeypatch)
    tokens = ["<bos>"] + [f"t{i}" for i in range(40)] + ["<pad>"] * 24      # 65 positions
    att = rng.random((1, 4, 65, 65))
    save_attention_heatmaps({"blocks.0.attn": att}, tokens, ".")
    fig = saved[0]
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()] + [t.get_text() for t in ax.get_xticklabels()]
    assert "<pad>" not in labels and ax.get_images()[0].get_array().shape == (41, 41)
    width, height = fig.get_size_inches() * 110             # the dpi PNGs are saved at
    assert width <= 1700 and height <= 1700                 # was 3766 x 3065 pixels
