"""The gradient checker: every registered case passes, and the checker itself can fail."""
import json

import numpy as np
import pytest

import glassformer  # noqa: F401  import the package first so every module's cases are registered
from glassformer import backend, gradcheck
from glassformer.errors import run_main
from glassformer.cli.gradcheck import main
from glassformer.gradcheck import CASES, check_layer, numerical_grad, rel_error, run_case
from glassformer.layers import Linear


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_registered_case_passes(name):
    records = run_case(name)
    assert records, f"{name}: no tensors were checked"
    bad = {r["tensor"]: r["max_rel_error"] for r in records if not r["passed"]}
    assert not bad, f"{name}: relative error above {gradcheck.TOLERANCE}: {bad}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_case_passes_on_the_plain_reference_and_matches_the_overlay(name):
    """With the CPU overlay off the reference layers pass too, and in float64 both give the same
    forward output and gradients to 1e-12."""
    with backend.use_overlay(False):
        records = run_case(name)
        plain = analytic(name)
    bad = {r["tensor"]: r["max_rel_error"] for r in records if not r["passed"]}
    assert records and not bad, f"{name} on the plain reference: {bad}"
    overlay = analytic(name)
    assert len(plain) == len(overlay)
    floor = case_floor(plain)
    for (tensor, a), (_, b) in zip(plain, overlay):
        assert agreement(a, b, floor) < 1e-12, (name, tensor, agreement(a, b, floor))


def case_floor(arrays):
    """1e-3 of the largest number among a case's [(name, array)]: what agreement() measures a tensor
    of smaller numbers against."""
    return 1e-3 * max(np.abs(a).max(initial=0.0) for _, a in arrays)


def agreement(a, b, floor):
    """max |a - b| relative to the larger tensor's largest number, or to floor where both are smaller.
    A gradient that is zero in theory (the key bias) is a sum of terms that cancel, so its rounding
    noise scales with those terms, which are as large as the case's gradients, not with its own
    size: with OpenBLAS's Haswell kernels on an AVX-512 CPU the overlay's and the reference's
    differed by 3e-15 on a key bias of 1.6e-15, in a case whose largest gradient is 15."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), floor)
    return float(np.abs(a - b).max(initial=0.0) / scale)


def test_the_overlay_comparison_fails_on_a_wrong_gradient_even_of_a_true_zero():
    plain = analytic("DecoderBlock[pre-LN,gelu]")
    floor = case_floor(plain)
    grads = dict(plain)
    key_bias, weight = grads["cross_attn.k_proj.b"], grads["cross_attn.k_proj.W"]
    assert np.abs(key_bias).max() < 1e-12 < floor                  # zero in theory: rounding noise
    assert agreement(key_bias, key_bias + 1e-9, floor) > 1e-8       # a mistake on a true zero
    assert agreement(weight, weight * (1 + 1e-9), floor) > 1e-10    # a relative mistake of 1e-9
    assert agreement(weight, weight, floor) == 0.0


def analytic(name, seed=0):
    """[(name, array)]: the float64 output, input gradients and parameter gradients of one case."""
    rng = np.random.default_rng(seed)
    layer, forward, inputs = CASES[name](rng)
    layer.astype(np.float64)
    layer.zero_grad()
    out = forward(**inputs)
    dout = rng.standard_normal(np.shape(out))
    dinputs = layer.backward(dout if np.ndim(out) else float(dout))
    dinputs = dinputs if isinstance(dinputs, tuple) else (dinputs,)
    return ([("out", np.asarray(out))] + [(f"d{i}", d) for i, d in enumerate(dinputs) if d is not None]
            + [(n, g.copy()) for n, (_, g) in layer.named_parameters()])


def test_cases_cover_the_core():
    names = {n.split("[")[0] for n in CASES}
    for required in ("Linear", "Embedding", "LayerNorm", "MultiHeadAttention", "TransformerBlock",
                     "TiedLMHead", "Pooling", "CrossEntropyLoss", "EncoderClassifier", "DecoderLM"):
        assert required in names


def test_numerical_grad_of_a_known_function(rng):
    x = rng.standard_normal((3, 4))
    before = x.copy()
    g = numerical_grad(lambda: float((x ** 3).sum() + 2 * x[0, 1]), x)
    expected = 3 * before ** 2
    expected[0, 1] += 2
    np.testing.assert_allclose(g, expected, rtol=1e-7, atol=1e-8)
    np.testing.assert_array_equal(x, before)               # every entry restored


def test_rel_error_behaviour(rng):
    a = rng.standard_normal(10)
    assert rel_error(a, a) == 0.0
    assert rel_error(a, 1.01 * a) == pytest.approx(0.01 / 1.01)
    assert rel_error(1e3 * a, 1.01e3 * a) == pytest.approx(0.01 / 1.01)   # scale-free
    assert rel_error(np.zeros(3), np.full(3, 1e-11)) < 1e-7    # FD noise on a true zero passes
    assert rel_error(np.zeros(3), np.full(3, 1e-4)) > 1e-2     # a real mistake fails
    assert rel_error(np.zeros(0), np.zeros(0)) == 0.0


def test_cli_json_records(capsys):
    assert main(["--layer", "Linear", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert {r["tensor"] for r in records} == {"x", "W", "b"}
    for r in records:
        assert set(r) >= {"name", "tensor", "max_rel_error", "passed"}
        assert r["name"] == "Linear" and r["passed"] is True and r["max_rel_error"] < 1e-6


def test_cli_table_and_list(capsys):
    assert main(["--layer", "layernorm"]) == 0             # case-insensitive, by base name
    out = capsys.readouterr().out
    assert "gamma" in out and "0 failed" in out
    assert main(["--list"]) == 0
    assert capsys.readouterr().out.split("\n")[: len(CASES)] == list(CASES)


def test_cli_unknown_layer_returns_2(capsys):
    assert main(["--layer", "NoSuchLayer"]) == 2
    captured = capsys.readouterr()
    assert "error:" in captured.err and "NoSuchLayer" in captured.err
    assert captured.out == ""


def _broken_linear_backward(monkeypatch):
    original = Linear.backward

    def broken(self, dout):
        return 1.01 * original(self, dout)                 # dx off by 1%
    monkeypatch.setattr(Linear, "backward", broken)


def test_check_layer_detects_a_wrong_backward(monkeypatch, rng):
    _broken_linear_backward(monkeypatch)
    layer = Linear(5, 4, rng)
    records = check_layer(layer, layer.forward, {"x": rng.standard_normal((2, 3, 5))}, rng)
    by_tensor = {r["tensor"]: r for r in records}
    assert not by_tensor["x"]["passed"]
    assert by_tensor["x"]["max_rel_error"] == pytest.approx(0.01 / 1.01, rel=1e-3)
    assert by_tensor["W"]["passed"] and by_tensor["b"]["passed"]


def test_check_layer_detects_a_wrong_parameter_grad(monkeypatch, rng):
    original = Linear.backward

    def broken(self, dout):
        dx = original(self, dout)
        self.db *= 0.5                                     # bias gradient off by half
        return dx
    monkeypatch.setattr(Linear, "backward", broken)
    layer = Linear(5, 4, rng)
    records = check_layer(layer, layer.forward, {"x": rng.standard_normal((2, 3, 5))}, rng)
    assert [r["tensor"] for r in records if not r["passed"]] == ["b"]


def test_cli_reports_failure_with_exit_1(monkeypatch, capsys):
    _broken_linear_backward(monkeypatch)
    assert main(["--layer", "Linear", "--json"]) == 1
    records = json.loads(capsys.readouterr().out)
    assert any(not r["passed"] for r in records)


def test_the_tied_head_case_checks_the_embedding_it_writes_to():
    """TiedLMHead owns no parameters: its case lends it the embedding, so dE is checked too."""
    assert {r["tensor"] for r in run_case("TiedLMHead")} == {"h", "tok_emb.W"}
    assert {r["tensor"] for r in run_case("Pooling[mean,padding]")} == {"x"}


@pytest.mark.parametrize("tol", ["0", "-1e-6", "nan", "inf", "tiny"])
def test_cli_rejects_a_tolerance_that_is_not_positive(capsys, tol):
    code = run_main(main, ["--layer", "Linear", f"--tol={tol}"])
    err = capsys.readouterr().err                           # one `error:` line, as every command's
    assert code == 2 and err.startswith("error: argument --tol") and len(err.splitlines()) == 1
    assert "Traceback" not in err and "a number in [1e-15, 1]" in err


def test_cli_help_shows_the_default_tolerance(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "(default: 1e-06)" in capsys.readouterr().out


def test_lender_checks_the_parameters_a_tied_head_borrows():
    """gradcheck.Lender lists the embedding a TiedLMHead writes into, so its dW is checked too."""
    from glassformer import gradcheck, layers
    rng = np.random.default_rng(0)
    emb = layers.Embedding(6, 4, rng).astype(np.float64)
    lender = gradcheck.Lender(layers.TiedLMHead(emb), tok_emb=emb)
    assert [name for name, _ in lender.named_parameters()] == ["tok_emb.W"]
    h = rng.standard_normal((2, 3, 4))
    dout = rng.standard_normal((2, 3, 6))
    lender.zero_grad()
    lender.forward(h)
    lender.backward(dout)
    assert np.allclose(emb.dW, dout.reshape(-1, 6).T @ h.reshape(-1, 4))   # dE = dlogits^T h
