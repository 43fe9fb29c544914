"""Token embeddings: one learned row per token id."""
from .base import Layer, new_grad, new_param
from ..backend import scatter_add


class Embedding(Layer):
    """Looks up one row of W per token id; backward scatter-adds (repeated ids sum)."""

    def __init__(self, vocab_size, d_model, rng, std=None, dtype="float32"):
        std = d_model ** -0.5 if std is None else std
        self.W = new_param(rng.normal(0.0, std, (vocab_size, d_model)), dtype)
        self.dW = new_grad(self.W)

    def forward(self, ids):                                 # ids: (B, T) integers
        self.ids = ids
        return self.W[ids]                                  # (B, T, C)

    def backward(self, dout):                               # dout: (B, T, C)
        C = dout.shape[-1]
        scatter_add(self.dW, self.ids.reshape(-1), dout.reshape(-1, C))
        return None                                         # ids have no gradient

    def own_parameters(self):
        return {"W": (self.W, self.dW)}
