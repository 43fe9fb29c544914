"""Hand-written layers, each with forward, backward, get_parameters and zero_grad."""
from .base import Layer
from .linear import Linear
from .embedding import Embedding, SinusoidalPositionalEncoding, LearnedPositionalEmbedding
from .norm import LayerNorm
from .activations import ReLU, GELU, Softmax, softmax, softmax_backward
from .dropout import Dropout
from .mlp import FeedForward
from .block import TransformerBlock

__all__ = ["Layer", "Linear", "Embedding", "SinusoidalPositionalEncoding",
           "LearnedPositionalEmbedding", "LayerNorm", "ReLU", "GELU", "Softmax", "softmax",
           "softmax_backward", "Dropout", "FeedForward", "TransformerBlock"]
