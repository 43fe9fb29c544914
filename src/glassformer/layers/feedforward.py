"""The position-wise feed-forward network: Linear -> activation -> Linear."""
from .base import Layer
from .linear import Linear
from .activations import ACTIVATIONS


class FeedForward(Layer):
    """FFN(x) = act(x W1 + b1) W2 + b2, applied to every position alone."""

    def __init__(self, d_model, d_ff, rng, activation="relu", init="xavier", out_init=None,
                 dtype="float32", bias=True):
        self.fc1 = Linear(d_model, d_ff, rng, bias=bias, init=init, dtype=dtype)
        self.act = ACTIVATIONS[activation]()
        self.fc2 = Linear(d_ff, d_model, rng, bias=bias, init=out_init or init, dtype=dtype)

    def forward(self, x):                                   # (B, T, C) -> (B, T, C)
        return self.fc2.forward(self.act.forward(self.fc1.forward(x)))

    def backward(self, dout):
        return self.fc1.backward(self.act.backward(self.fc2.backward(dout)))

    def children(self):
        return {"fc1": self.fc1, "act": self.act, "fc2": self.fc2}
