"""Numerical gradient checks: central differences in float64 against every hand-written backward.

Run `python -m glassformer.gradcheck` for a table over every layer, loss and model,
`--layer NAME` for one, `--json` for machine-readable records; exit status 1 if any check fails.
"""
import numpy as np

from . import layers, models, research

TOLERANCE = 1e-6


def central_difference(f, x, index, h=1e-5):
    """df/dx[index] = (f(x + h e) - f(x - h e)) / 2h, x perturbed in place and then restored."""
    old = x[index]
    x[index] = old + h
    f_plus = f()
    x[index] = old - h
    f_minus = f()
    x[index] = old
    return (f_plus - f_minus) / (2 * h)


def numerical_grad(f, x, h=1e-5):
    """df/dx by central differences, one entry of x at a time (x's own memory: writes reach it)."""
    grad = np.zeros(x.shape, dtype=np.float64)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)        # views: writes reach x itself
    for i in range(flat_x.size):
        flat_g[i] = central_difference(f, flat_x, i, h)
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


def _randomize(layer, rng, std=0.5):
    """Non-trivial values everywhere: zero output projections would hide the upstream gradients."""
    for _, (p, _) in layer.named_parameters():
        p[...] = rng.normal(0.0, std, p.shape)
    return layer


def x_case(name, make, *shape, scale=1.0, randomize=False):
    """Register case `name`: the layer make(rng) (parameters redrawn if randomize) on one input x."""
    def build(rng):
        layer = make(rng)
        if randomize:
            _randomize(layer, rng)
        return layer, layer.forward, {"x": scale * _x(rng, *shape)}
    return case(name)(build)


class Lender(layers.Layer):
    """A layer checked with the parameters it borrows: a tied head writes the embedding's dW."""

    def __init__(self, layer, **lenders):
        self.layer, self.lenders = layer, lenders

    def forward(self, *args, **kwargs):
        return self.layer.forward(*args, **kwargs)

    def backward(self, dout):
        return self.layer.backward(dout)

    def children(self):
        return dict(self.lenders)


x_case("Linear", lambda rng: layers.Linear(5, 4, rng), 2, 3, 5)


@case("Embedding")
def _embedding(rng):
    layer = layers.Embedding(7, 4, rng)
    return layer, layer.forward, {"ids": np.array([[1, 2, 2], [6, 0, 1]])}   # repeated ids sum


x_case("SinusoidalPositionalEncoding", lambda rng: layers.SinusoidalPositionalEncoding(8, 4), 2, 3, 4)
x_case("LearnedPositionalEmbedding", lambda rng: layers.LearnedPositionalEmbedding(8, 4, rng), 2, 3, 4)


@case("LayerNorm")
def _layernorm(rng):
    layer = layers.LayerNorm(6)
    layer.gamma[...] = rng.standard_normal(6)               # non-trivial gain and shift
    layer.beta[...] = rng.standard_normal(6)
    return layer, layer.forward, {"x": _x(rng, 2, 3, 6)}


@case("LayerNorm[no bias]")
def _layernorm_no_bias(rng):
    layer = layers.LayerNorm(6, bias=False)                 # nanoGPT's bias=False: gamma only
    layer.gamma[...] = rng.standard_normal(6)
    return layer, layer.forward, {"x": _x(rng, 2, 3, 6)}


x_case("ReLU", lambda rng: layers.ReLU(), 3, 5)
x_case("GELU", lambda rng: layers.GELU(), 3, 5, scale=2.0)


@case("Softmax")
def _softmax(rng):
    layer = layers.Softmax()
    return layer, layer.forward, {"z": _x(rng, 2, 3, 5)}


@case("Dropout")
def _dropout(rng):
    layer = layers.Dropout(0.3, None)

    def forward(x):
        layer.rng = np.random.default_rng(0)                # the same mask on every call
        return layer.forward(x)
    return layer, forward, {"x": _x(rng, 3, 6)}


x_case("FeedForward", lambda rng: layers.FeedForward(4, 8, rng, activation="gelu"), 2, 3, 4)
x_case("MultiHeadAttention", lambda rng: layers.MultiHeadAttention(8, 2, rng), 2, 4, 8)


@case("MultiHeadAttention[separate-qkv,causal,padding]")
def _mha_masked(rng):
    layer = layers.MultiHeadAttention(8, 2, rng, causal=True, fused_qkv=False)
    mask = np.array([[True, True, True, False], [True, True, True, True]])
    return layer, layer.forward, {"x": _x(rng, 2, 4, 8), "key_padding_mask": mask}


x_case("TransformerBlock[post-LN]", lambda rng: layers.TransformerBlock(8, 2, 16, rng), 2, 4, 8)
x_case("TransformerBlock[pre-LN,causal,gelu]", lambda rng: layers.TransformerBlock(
    8, 2, 16, rng, norm_first=True, causal=True, activation="gelu"), 2, 4, 8)
x_case("TransformerBlock[pre-LN,causal,gelu,no bias]", lambda rng: layers.TransformerBlock(
    8, 2, 16, rng, norm_first=True, causal=True, activation="gelu", bias=False), 2, 4, 8)


@case("TiedLMHead")
def _tied_head(rng):
    emb = layers.Embedding(7, 4, rng)
    layer = Lender(layers.TiedLMHead(emb), tok_emb=emb)     # dh, and the head's part of dE
    return layer, layer.forward, {"h": _x(rng, 2, 3, 4)}


@case("Pooling[first]")
def _pool_first(rng):
    layer = layers.Pooling("first")
    return layer, layer.forward, {"x": _x(rng, 2, 4, 3)}


@case("Pooling[mean,padding]")
def _pool_mean(rng):
    layer = layers.Pooling("mean")
    mask = np.array([[True, True, False, False], [True] * 4])
    return layer, layer.forward, {"x": _x(rng, 2, 4, 3), "padding_mask": mask}


@case("CrossEntropyLoss[ignore_index]")
def _cross_entropy(rng):
    layer = layers.CrossEntropyLoss(ignore_index=0)
    targets = np.array([[1, 0, 3], [2, 4, 0]])              # two ignored positions
    return layer, layer.forward, {"logits": _x(rng, 2, 3, 5), "targets": targets}


def _model_case(name, model_class, **kw):
    """Register case `name`: a small float64 model_class on random ids (mask: the padding mask)."""
    mask = kw.pop("mask", None)

    def build(rng):
        config = dict(vocab_size=9, d_model=8, n_heads=2, n_layers=2, d_ff=16, max_len=8,
                      n_classes=3, dtype="float64", **kw)
        model = model_class(models.ModelConfig(**config), rng)
        inputs = {"ids": rng.integers(0, 9, (2, 5))}
        if mask is not None:
            inputs["padding_mask"] = mask
        return model, model.forward, inputs
    return case(name)(build)


_model_case("EncoderClassifier[first,post-LN]", models.EncoderClassifier)
_model_case("EncoderClassifier[mean,pre-LN,learned,padding]", models.EncoderClassifier,
            pooling="mean", norm_first=True, positional="learned",
            mask=np.array([[True, True, True, False, False], [True] * 5]))
_model_case("DecoderLM[tied]", models.DecoderLM, kind="decoder_lm", norm_first=True,
            activation="gelu", positional="learned")
_model_case("DecoderLM[untied,post-LN]", models.DecoderLM, kind="decoder_lm", tie_weights=False)
_model_case("DecoderLM[no bias]", models.DecoderLM, kind="decoder_lm", norm_first=True,
            activation="gelu", positional="learned", bias=False)   # nanoGPT's bias=False


# ---- research toys (glassformer.research) ------------------------------------------------------

x_case("RMSNorm", lambda rng: layers.RMSNorm(6), 2, 3, 6, randomize=True)
x_case("NoNorm", lambda rng: research.NoNorm(), 2, 3, 6)


@case("RotaryEmbedding[offset]")
def _rope(rng):
    layer = research.RotaryEmbedding(4, 8)
    return layer, lambda x: layer.forward(x, offset=3), {"x": _x(rng, 2, 2, 3, 4)}


x_case("RotaryAttention[causal]", lambda rng: research.RotaryAttention(8, 2, rng, causal=True,
                                                                        max_len=8), 2, 4, 8,
       randomize=True)


@case("RotaryAttention[separate-qkv,padding]")
def _rotary_attention_masked(rng):
    layer = _randomize(research.RotaryAttention(8, 2, rng, max_len=8, fused_qkv=False), rng)
    mask = np.array([[True, True, True, False], [True, True, True, True]])
    return layer, layer.forward, {"x": _x(rng, 2, 4, 8), "key_padding_mask": mask}


x_case("QuadraticAttention[causal]", lambda rng: research.QuadraticAttention(8, 2, rng, causal=True),
       2, 4, 8, randomize=True)


@case("QuadraticAttention[rope,padding]")
def _quadratic_attention_rope(rng):
    layer = _randomize(research.QuadraticAttention(8, 2, rng, rope=True, max_len=8), rng)
    mask = np.array([[True, True, False, False], [True, True, True, True]])
    return layer, layer.forward, {"x": _x(rng, 2, 4, 8), "key_padding_mask": mask}


x_case("Bilinear", lambda rng: research.Bilinear(4, 6, rng, bias=False), 2, 3, 4, randomize=True)
x_case("Bilinear[bias]", lambda rng: research.Bilinear(4, 6, rng, bias=True), 2, 3, 4,
       randomize=True)


@case("CrossAttention[padding]")
def _cross_attention(rng):
    layer = _randomize(research.CrossAttention(8, 2, rng, d_context=6), rng)
    mask = np.array([[True, True, True, True, False], [True, True, False, False, False]])
    return layer, layer.forward, {"x": _x(rng, 2, 3, 8), "context": _x(rng, 2, 5, 6),
                                  "context_mask": mask}


@case("DecoderBlock[post-LN]")
def _decoder_block_post(rng):
    layer = research.DecoderBlock(8, 2, 12, rng)
    mask = np.array([[True, True, True, False], [True] * 4])
    return layer, layer.forward, {"x": _x(rng, 2, 3, 8), "memory": _x(rng, 2, 4, 8),
                                  "memory_mask": mask}


@case("DecoderBlock[pre-LN,gelu]")
def _decoder_block_pre(rng):
    layer = _randomize(research.DecoderBlock(8, 2, 12, rng, norm_first=True, activation="gelu"), rng)
    return layer, layer.forward, {"x": _x(rng, 2, 3, 8), "memory": _x(rng, 2, 4, 8)}


def _toy_case(model_type, **kw):
    def build(rng):
        config = research.ToyConfig(vocab_size=7, d_model=8, n_heads=2, n_ctx=6,
                                    model_type=model_type, d_mlp=12, dtype="float64", **kw)
        model = _randomize(research.build_toy_model(config, rng), rng)
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


x_case("KernelAttention[causal,no-rope]", lambda rng: research.KernelAttention(8, 2, rng,
                                                                                causal=True),
       2, 4, 8, randomize=True)
x_case("ToyBlock[transformer,rmsnorm,rope]", lambda rng: research.ToyBlock(research.ToyConfig(
    vocab_size=7, d_model=8, n_heads=2, n_ctx=6, model_type="transformer_1L", d_mlp=12,
    norm="rmsnorm", positional="rope", dtype="float64"), rng), 2, 4, 8, randomize=True)


def _seq2seq_case(name, **kw):
    """Register case `name`: a small float64 EncoderDecoder (two decoder blocks: memory grads add)."""
    mask = kw.pop("mask", None)

    def build(rng):
        config = research.EncoderDecoderConfig(vocab_size=5, d_model=4, n_heads=2, n_layers=1,
                                               n_decoder_layers=2, d_ff=6, max_len=6,
                                               dtype="float64", **kw)
        model = research.EncoderDecoder(config, rng)
        inputs = {"src": rng.integers(0, 5, (2, 4)), "tgt_in": rng.integers(0, 5, (2, 3))}
        if mask is not None:
            inputs["src_mask"] = mask
        return model, model.forward, inputs
    return case(name)(build)


_seq2seq_case("EncoderDecoder[post-LN,padding]",
              mask=np.array([[True, True, True, False], [True, True, False, False]]))
_seq2seq_case("EncoderDecoder[pre-LN,shared,learned]", norm_first=True, share_embeddings=True,
              positional="learned", activation="gelu")


def run_case(name, seed=0, tol=TOLERANCE):
    """Build and check one registered case; returns its records with the case name added."""
    rng = np.random.default_rng(seed)
    layer, forward, inputs = CASES[name](rng)
    return [{"name": name, **r} for r in check_layer(layer, forward, inputs, rng, tol)]


if __name__ == "__main__":             # python -m glassformer.gradcheck: the command is in cli/
    from .cli.gradcheck import main
    raise SystemExit(main())
