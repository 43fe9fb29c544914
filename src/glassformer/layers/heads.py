"""Output heads: the tied LM head (logits = h E^T) and the classifier's pooling over the sequence."""
from .base import Layer
from ..backend import array_module, matmul


class TiedLMHead(Layer):
    """logits = h @ E^T with E the token embedding's table (weight tying, Press & Wolf 2017).

    It owns no parameters (so checkpoint names stay those of the embedding): backward adds its part
    of dE into the embedding's dW, beside the lookup's own scatter-add.
    """

    def __init__(self, embedding):
        self.embedding = embedding                          # an Embedding; read, never a child

    @property
    def W(self):
        """The unembedding (C, V): the embedding's table transposed (a view)."""
        return self.embedding.W.T

    def forward(self, h):                                   # h: (B, T, C)
        self.h = h
        B, T, C = h.shape
        return matmul(h.reshape(B * T, C), self.embedding.W.T).reshape(B, T, -1)   # (B, T, V)

    def backward(self, dlogits):                            # dlogits: (B, T, V)
        V, C = self.embedding.W.shape
        d2, h2 = dlogits.reshape(-1, V), self.h.reshape(-1, C)
        self.embedding.dW += matmul(d2.T, h2)               # logits = h E^T: dE = dlogits^T h
        return matmul(d2, self.embedding.W).reshape(self.h.shape)   # dh: (B, T, C)


class Pooling(Layer):
    """(B, T, C) -> (B, C): the first token's vector ("first") or the mean over real tokens ("mean")."""

    MODES = ("first", "mean")

    def __init__(self, mode="first"):
        if mode not in self.MODES:
            raise ValueError(f"unknown pooling {mode!r}: use one of {self.MODES}")
        self.mode = mode

    def forward(self, x, padding_mask=None):                # x: (B, T, C); mask (B, T) True = real
        self.shape = x.shape
        if self.mode == "first":
            return x[:, 0]                                  # (B, C)
        xp = array_module(x)
        B, T, _ = x.shape
        m = xp.ones((B, T), x.dtype) if padding_mask is None else xp.asarray(padding_mask, x.dtype)
        self.weights = (m / m.sum(axis=1, keepdims=True))[:, :, None]   # (B, T, 1): 1/n or 0
        return (x * self.weights).sum(axis=1)               # (B, C): a weighted sum

    def backward(self, dout):                               # dout: (B, C) -> dx: (B, T, C)
        if self.mode == "first":
            dx = array_module(dout).zeros(self.shape, dout.dtype)
            dx[:, 0] = dout                                 # only token 0 was read
            return dx
        return dout[:, None, :] * self.weights              # each token got weight 1/n
