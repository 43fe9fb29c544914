"""Hand-written layers, one stage per file, each with forward, backward, get_parameters and zero_grad."""
from .base import Layer
from .linear import Linear
from .embedding import Embedding
from .positional import SinusoidalPositionalEncoding, LearnedPositionalEmbedding
from .attention import MultiHeadAttention
from .norm import LayerNorm, RMSNorm
from .activations import ReLU, GELU, Softmax, softmax, softmax_backward
from .dropout import Dropout
from .feedforward import FeedForward
from .block import TransformerBlock
from .heads import TiedLMHead, Pooling
from .loss import CrossEntropyLoss

__all__ = ["Layer", "Linear", "Embedding", "SinusoidalPositionalEncoding",
           "LearnedPositionalEmbedding", "MultiHeadAttention", "LayerNorm", "RMSNorm", "ReLU", "GELU",
           "Softmax", "softmax", "softmax_backward", "Dropout", "FeedForward", "TransformerBlock",
           "TiedLMHead", "Pooling", "CrossEntropyLoss"]
