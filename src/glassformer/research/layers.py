"""Research layers with exact backward: NoNorm and the bilinear MLP; make_norm picks a norm by name."""
from ..layers.base import Layer
from ..layers.linear import Linear
from ..layers.norm import LayerNorm, RMSNorm


class NoNorm(Layer):
    """The identity, standing where a norm would be (norm="none" in a toy model)."""

    def forward(self, x):
        return x

    def backward(self, dout):
        return dout


class Bilinear(Layer):
    """Bilinear MLP: out = ((x W1) * (x W2)) W_out, no gate nonlinearity (Pearce et al. 2024)."""

    def __init__(self, d_model, d_hidden, rng, bias=True, init="normal", out_init="zeros",
                 dtype="float32"):
        self.w1 = Linear(d_model, d_hidden, rng, bias=bias, init=init, dtype=dtype)
        self.w2 = Linear(d_model, d_hidden, rng, bias=bias, init=init, dtype=dtype)
        self.w_out = Linear(d_hidden, d_model, rng, bias=bias, init=out_init, dtype=dtype)

    def forward(self, x):                                   # x: (B, T, C)
        self.a, self.b = self.w1.forward(x), self.w2.forward(x)   # (B, T, d_hidden) each
        return self.w_out.forward(self.a * self.b)          # (B, T, C)

    def backward(self, dout):
        dh = self.w_out.backward(dout)                      # h = a * b: product rule
        return self.w1.backward(dh * self.b) + self.w2.backward(dh * self.a)

    def children(self):
        return {"w1": self.w1, "w2": self.w2, "w_out": self.w_out}


NORMS = {"layernorm": LayerNorm, "rmsnorm": RMSNorm, "none": NoNorm}


def make_norm(kind, d_model, dtype="float32"):
    """A LayerNorm, RMSNorm or NoNorm by name."""
    if kind not in NORMS:
        raise ValueError(f"unknown norm {kind!r}: use one of {tuple(NORMS)}")
    return NoNorm() if kind == "none" else NORMS[kind](d_model, dtype=dtype)
