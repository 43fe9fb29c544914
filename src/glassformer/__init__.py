"""glassformer: a transformer framework in plain NumPy with hand-written backpropagation."""
from .errors import UserError
from .layers import *  # noqa: F401,F403  the layers are the public API
from .attention import MultiHeadAttention
from .losses import CrossEntropyLoss
from .optimizers import SGD, Adam, AdamW, clip_grad_norm
from .models import ModelConfig, EncoderClassifier, DecoderLM, build_model

__version__ = "0.1.0"
