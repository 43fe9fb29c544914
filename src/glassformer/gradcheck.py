"""Numerical gradient checks: central differences in float64 against every hand-written backward.

Run `python -m glassformer.gradcheck` for a table over every layer, loss and model,
`--layer NAME` for one, `--json` for machine-readable records; exit status 1 if any check fails.
"""
import argparse
import json
import sys

import numpy as np

TOLERANCE = 1e-6


def numerical_grad(f, x, h=1e-5):
    """df/dx by central differences, perturbing one entry of x in place (then restoring it)."""
    grad = np.zeros(x.shape, dtype=np.float64)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)        # views: writes reach x itself
    for i in range(flat_x.size):
        old = flat_x[i]
        flat_x[i] = old + h
        f_plus = f()
        flat_x[i] = old - h
        f_minus = f()
        flat_x[i] = old
        flat_g[i] = (f_plus - f_minus) / (2 * h)
    return grad


SCALE_FLOOR = 1e-3


def rel_error(analytic, numeric):
    """max |analytic - numeric| relative to the tensor's largest gradient.

    Below SCALE_FLOOR the error is taken relative to the floor: a gradient that is exactly zero
    in theory (the key bias: softmax ignores a constant added to every score) then passes on
    the finite-difference noise (~1e-11) but fails on any real mistake.
    """
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(n).max(initial=0.0), SCALE_FLOOR)
    return float(np.abs(a - n).max(initial=0.0) / scale)


def check_layer(layer, forward, inputs, rng, tol=TOLERANCE):
    """Check backward() of `layer` against central differences.

    forward(**inputs) runs the layer; the scalar checked is sum(forward() * dout) with a random dout.
    `inputs` holds float64 arrays (checked, gradients returned by backward in this order) and
    anything else (ids, masks) passed as is. Returns [{"tensor", "max_rel_error", "passed"}].
    """
    layer.astype(np.float64)
    out = forward(**inputs)
    dout = rng.standard_normal(np.shape(out))               # random upstream, never ones
    loss = lambda: float((forward(**inputs) * dout).sum())  # noqa: E731
    layer.zero_grad()
    forward(**inputs)
    dinputs = layer.backward(dout if np.ndim(out) else float(dout))
    if not isinstance(dinputs, tuple):
        dinputs = (dinputs,)
    results = []
    float_inputs = [(k, v) for k, v in inputs.items()
                    if isinstance(v, np.ndarray) and v.dtype == np.float64]
    for (name, x), dx in zip(float_inputs, dinputs):
        results.append((name, rel_error(dx, numerical_grad(loss, x))))
    for name, (p, g) in layer.named_parameters():
        analytic = g.copy()
        results.append((name, rel_error(analytic, numerical_grad(loss, p))))
    return [{"tensor": t, "max_rel_error": e, "passed": bool(e <= tol)} for t, e in results]


# ---- the cases: one small float64 instance of every layer, loss and model -------------------------

CASES = {}


def case(name):
    """Register a gradient-check case: a function rng -> (layer, forward, inputs)."""
    def register(fn):
        CASES[name] = fn
        return fn
    return register


def _x(rng, *shape):
    return rng.standard_normal(shape)


@case("Linear")
def _linear(rng):
    from .layers import Linear
    layer = Linear(5, 4, rng)
    return layer, layer.forward, {"x": _x(rng, 2, 3, 5)}


@case("Embedding")
def _embedding(rng):
    from .layers import Embedding
    layer = Embedding(7, 4, rng)
    return layer, layer.forward, {"ids": np.array([[1, 2, 2], [6, 0, 1]])}   # repeated ids sum


@case("SinusoidalPositionalEncoding")
def _sinusoidal(rng):
    from .layers import SinusoidalPositionalEncoding
    layer = SinusoidalPositionalEncoding(8, 4)
    return layer, layer.forward, {"x": _x(rng, 2, 3, 4)}


@case("LearnedPositionalEmbedding")
def _learned(rng):
    from .layers import LearnedPositionalEmbedding
    layer = LearnedPositionalEmbedding(8, 4, rng)
    return layer, layer.forward, {"x": _x(rng, 2, 3, 4)}


@case("LayerNorm")
def _layernorm(rng):
    from .layers import LayerNorm
    layer = LayerNorm(6)
    layer.gamma[...] = rng.standard_normal(6)               # non-trivial gain and shift
    layer.beta[...] = rng.standard_normal(6)
    return layer, layer.forward, {"x": _x(rng, 2, 3, 6)}


@case("ReLU")
def _relu(rng):
    from .layers import ReLU
    layer = ReLU()
    return layer, layer.forward, {"x": _x(rng, 3, 5)}


@case("GELU")
def _gelu(rng):
    from .layers import GELU
    layer = GELU()
    return layer, layer.forward, {"x": 2 * _x(rng, 3, 5)}


@case("Softmax")
def _softmax(rng):
    from .layers import Softmax
    layer = Softmax()
    return layer, layer.forward, {"z": _x(rng, 2, 3, 5)}


@case("Dropout")
def _dropout(rng):
    from .layers import Dropout
    layer = Dropout(0.3, None)

    def forward(x):
        layer.rng = np.random.default_rng(0)                # the same mask on every call
        return layer.forward(x)
    return layer, forward, {"x": _x(rng, 3, 6)}


@case("FeedForward")
def _ffn(rng):
    from .layers import FeedForward
    layer = FeedForward(4, 8, rng, activation="gelu")
    return layer, layer.forward, {"x": _x(rng, 2, 3, 4)}


@case("MultiHeadAttention")
def _mha(rng):
    from .layers.attention import MultiHeadAttention
    layer = MultiHeadAttention(8, 2, rng)
    return layer, layer.forward, {"x": _x(rng, 2, 4, 8)}


@case("MultiHeadAttention[separate-qkv,causal,padding]")
def _mha_masked(rng):
    from .layers.attention import MultiHeadAttention
    layer = MultiHeadAttention(8, 2, rng, causal=True, fused_qkv=False)
    mask = np.array([[True, True, True, False], [True, True, True, True]])
    return layer, layer.forward, {"x": _x(rng, 2, 4, 8), "key_padding_mask": mask}


@case("TransformerBlock[post-LN]")
def _block_post(rng):
    from .layers import TransformerBlock
    layer = TransformerBlock(8, 2, 16, rng, norm_first=False)
    return layer, layer.forward, {"x": _x(rng, 2, 4, 8)}


@case("TransformerBlock[pre-LN,causal,gelu]")
def _block_pre(rng):
    from .layers import TransformerBlock
    layer = TransformerBlock(8, 2, 16, rng, norm_first=True, causal=True, activation="gelu")
    return layer, layer.forward, {"x": _x(rng, 2, 4, 8)}


@case("CrossEntropyLoss[ignore_index]")
def _cross_entropy(rng):
    from .layers.loss import CrossEntropyLoss
    layer = CrossEntropyLoss(ignore_index=0)
    targets = np.array([[1, 0, 3], [2, 4, 0]])              # two ignored positions
    return layer, layer.forward, {"logits": _x(rng, 2, 3, 5), "targets": targets}


def _small_config(**kw):
    from .models import ModelConfig
    base = dict(vocab_size=9, d_model=8, n_heads=2, n_layers=2, d_ff=16, max_len=8, n_classes=3,
                dtype="float64")
    base.update(kw)
    return ModelConfig(**base)


@case("EncoderClassifier[first,post-LN]")
def _encoder_first(rng):
    from .models import EncoderClassifier
    model = EncoderClassifier(_small_config(), rng)
    return model, model.forward, {"ids": rng.integers(0, 9, (2, 5))}


@case("EncoderClassifier[mean,pre-LN,learned,padding]")
def _encoder_mean(rng):
    from .models import EncoderClassifier
    model = EncoderClassifier(_small_config(pooling="mean", norm_first=True, positional="learned"),
                              rng)
    mask = np.array([[True, True, True, False, False], [True] * 5])
    return model, model.forward, {"ids": rng.integers(0, 9, (2, 5)), "padding_mask": mask}


@case("DecoderLM[tied]")
def _decoder_tied(rng):
    from .models import DecoderLM
    model = DecoderLM(_small_config(kind="decoder_lm", norm_first=True, activation="gelu",
                                    positional="learned"), rng)
    return model, model.forward, {"ids": rng.integers(0, 9, (2, 5))}


@case("DecoderLM[untied,post-LN]")
def _decoder_untied(rng):
    from .models import DecoderLM
    model = DecoderLM(_small_config(kind="decoder_lm", tie_weights=False), rng)
    return model, model.forward, {"ids": rng.integers(0, 9, (2, 5))}


# ---- research toys (glassformer.research) ------------------------------------------------------

def _randomize(layer, rng, std=0.5):
    """Non-trivial values everywhere: zero output projections would hide the upstream gradients."""
    for _, (p, _) in layer.named_parameters():
        p[...] = rng.normal(0.0, std, p.shape)
    return layer


@case("RMSNorm")
def _rmsnorm(rng):
    from .layers import RMSNorm
    layer = _randomize(RMSNorm(6), rng)
    return layer, layer.forward, {"x": _x(rng, 2, 3, 6)}


@case("NoNorm")
def _nonorm(rng):
    from .research import NoNorm
    layer = NoNorm()
    return layer, layer.forward, {"x": _x(rng, 2, 3, 6)}


@case("RotaryEmbedding[offset]")
def _rope(rng):
    from .research import RotaryEmbedding
    layer = RotaryEmbedding(4, 8)
    return layer, lambda x: layer.forward(x, offset=3), {"x": _x(rng, 2, 2, 3, 4)}


@case("RotaryAttention[causal]")
def _rotary_attention(rng):
    from .research import RotaryAttention
    layer = _randomize(RotaryAttention(8, 2, rng, causal=True, max_len=8), rng)
    return layer, layer.forward, {"x": _x(rng, 2, 4, 8)}


@case("RotaryAttention[separate-qkv,padding]")
def _rotary_attention_masked(rng):
    from .research import RotaryAttention
    layer = _randomize(RotaryAttention(8, 2, rng, max_len=8, fused_qkv=False), rng)
    mask = np.array([[True, True, True, False], [True, True, True, True]])
    return layer, layer.forward, {"x": _x(rng, 2, 4, 8), "key_padding_mask": mask}


@case("QuadraticAttention[causal]")
def _quadratic_attention(rng):
    from .research import QuadraticAttention
    layer = _randomize(QuadraticAttention(8, 2, rng, causal=True), rng)
    return layer, layer.forward, {"x": _x(rng, 2, 4, 8)}


@case("QuadraticAttention[rope,padding]")
def _quadratic_attention_rope(rng):
    from .research import QuadraticAttention
    layer = _randomize(QuadraticAttention(8, 2, rng, rope=True, max_len=8), rng)
    mask = np.array([[True, True, False, False], [True, True, True, True]])
    return layer, layer.forward, {"x": _x(rng, 2, 4, 8), "key_padding_mask": mask}


@case("Bilinear")
def _bilinear(rng):
    from .research import Bilinear
    layer = _randomize(Bilinear(4, 6, rng, bias=False), rng)
    return layer, layer.forward, {"x": _x(rng, 2, 3, 4)}


@case("Bilinear[bias]")
def _bilinear_bias(rng):
    from .research import Bilinear
    layer = _randomize(Bilinear(4, 6, rng, bias=True), rng)
    return layer, layer.forward, {"x": _x(rng, 2, 3, 4)}


@case("CrossAttention[padding]")
def _cross_attention(rng):
    from .research import CrossAttention
    layer = _randomize(CrossAttention(8, 2, rng, d_context=6), rng)
    mask = np.array([[True, True, True, True, False], [True, True, False, False, False]])
    return layer, layer.forward, {"x": _x(rng, 2, 3, 8), "context": _x(rng, 2, 5, 6),
                                  "context_mask": mask}


@case("DecoderBlock[post-LN]")
def _decoder_block_post(rng):
    from .research import DecoderBlock
    layer = DecoderBlock(8, 2, 12, rng)
    mask = np.array([[True, True, True, False], [True] * 4])
    return layer, layer.forward, {"x": _x(rng, 2, 3, 8), "memory": _x(rng, 2, 4, 8),
                                  "memory_mask": mask}


@case("DecoderBlock[pre-LN,gelu]")
def _decoder_block_pre(rng):
    from .research import DecoderBlock
    layer = _randomize(DecoderBlock(8, 2, 12, rng, norm_first=True, activation="gelu"), rng)
    return layer, layer.forward, {"x": _x(rng, 2, 3, 8), "memory": _x(rng, 2, 4, 8)}


def _toy_case(model_type, **kw):
    def build(rng):
        from .research import ToyConfig, build_toy_model
        config = ToyConfig(vocab_size=7, d_model=8, n_heads=2, n_ctx=6, model_type=model_type,
                           d_mlp=12, dtype="float64", **kw)
        model = _randomize(build_toy_model(config, rng), rng)
        return model, model.forward, {"ids": rng.integers(0, 7, (2, 4))}
    return build


for _name, _type, _kw in [
        ("attention_only_1L", "attention_only_1L", {}),
        ("attention_only_2L", "attention_only_2L", {}),
        ("transformer_1L", "transformer_1L", {}),
        ("transformer_2L", "transformer_2L", {}),
        ("attention_only_1L,rope,tied", "attention_only_1L",
         dict(positional="rope", tie_weights=True)),
        ("transformer_1L,quadratic,bilinear", "transformer_1L",
         dict(attention="quadratic", mlp="bilinear")),
        ("transformer_2L,rmsnorm,rope", "transformer_2L", dict(norm="rmsnorm", positional="rope")),
        ("attention_only_2L,quadratic,no-norm", "attention_only_2L",
         dict(attention="quadratic", norm="none")),
        ("transformer_2L,bilinear,tied", "transformer_2L", dict(mlp="bilinear", tie_weights=True))]:
    case(f"ToyModel[{_name}]")(_toy_case(_type, **_kw))


@case("KernelAttention[causal,no-rope]")
def _kernel_attention(rng):
    from .research import KernelAttention
    layer = _randomize(KernelAttention(8, 2, rng, causal=True), rng)
    return layer, layer.forward, {"x": _x(rng, 2, 4, 8)}


@case("ToyBlock[transformer,rmsnorm,rope]")
def _toy_block(rng):
    from .research import ToyBlock, ToyConfig
    config = ToyConfig(vocab_size=7, d_model=8, n_heads=2, n_ctx=6, model_type="transformer_1L",
                       d_mlp=12, norm="rmsnorm", positional="rope", dtype="float64")
    layer = _randomize(ToyBlock(config, rng), rng)
    return layer, layer.forward, {"x": _x(rng, 2, 4, 8)}


def _seq2seq_config(**kw):
    from .research import EncoderDecoderConfig
    base = dict(vocab_size=5, d_model=4, n_heads=2, n_layers=1, n_decoder_layers=2, d_ff=6,
                max_len=6, dtype="float64")           # two decoder blocks: memory grads must add
    base.update(kw)
    return EncoderDecoderConfig(**base)


@case("EncoderDecoder[post-LN,padding]")
def _encoder_decoder_post(rng):
    from .research import EncoderDecoder
    model = EncoderDecoder(_seq2seq_config(), rng)
    mask = np.array([[True, True, True, False], [True, True, False, False]])
    return model, model.forward, {"src": rng.integers(0, 5, (2, 4)),
                                  "tgt_in": rng.integers(0, 5, (2, 3)), "src_mask": mask}


@case("EncoderDecoder[pre-LN,shared,learned]")
def _encoder_decoder_pre(rng):
    from .research import EncoderDecoder
    model = EncoderDecoder(_seq2seq_config(norm_first=True, share_embeddings=True,
                                           positional="learned", activation="gelu"), rng)
    return model, model.forward, {"src": rng.integers(0, 5, (2, 4)),
                                  "tgt_in": rng.integers(0, 5, (2, 3))}


def run_case(name, seed=0, tol=TOLERANCE):
    """Build and check one registered case; returns its records with the case name added."""
    rng = np.random.default_rng(seed)
    layer, forward, inputs = CASES[name](rng)
    return [{"name": name, **r} for r in check_layer(layer, forward, inputs, rng, tol)]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m glassformer.gradcheck",
                                     description="Check every backward() against central "
                                                 "differences in float64.")
    parser.add_argument("--layer", help="check one case (see --list); default: all")
    parser.add_argument("--list", action="store_true", help="list the case names and exit")
    parser.add_argument("--json", action="store_true", help="print a JSON list of records")
    parser.add_argument("--tol", type=float, default=TOLERANCE, help="max relative error allowed")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(CASES))
        return 0
    if args.layer:
        matches = [n for n in CASES if n == args.layer] or \
                  [n for n in CASES if n.split("[")[0].lower() == args.layer.lower()]
        if not matches:
            print(f"error: no gradient-check case named {args.layer!r}; "
                  f"choose one of: {', '.join(CASES)}", file=sys.stderr)
            return 2
    else:
        matches = list(CASES)
    records = [r for name in matches for r in run_case(name, tol=args.tol)]
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        width = max(len(r["name"]) for r in records)
        twidth = max(len(r["tensor"]) for r in records)
        print(f"{'name':<{width}}  {'tensor':<{twidth}}  max rel error  result")
        for r in records:
            print(f"{r['name']:<{width}}  {r['tensor']:<{twidth}}  {r['max_rel_error']:13.2e}  "
                  f"{'pass' if r['passed'] else 'FAIL'}")
        failed = sum(not r["passed"] for r in records)
        print(f"{len(records) - failed} passed, {failed} failed (tolerance {args.tol:g})")
    return 1 if any(not r["passed"] for r in records) else 0


if __name__ == "__main__":
    raise SystemExit(main())
