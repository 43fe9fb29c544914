"""glassformer: a transformer framework in plain NumPy with hand-written backpropagation."""
from .errors import UserError
from .layers import *  # noqa: F401,F403  the layers are the public API
from .optim import SGD, Adam, AdamW, clip_grad_norm
from .models import ModelConfig, EncoderClassifier, DecoderLM, build_model
from .checkpoint import load_checkpoint, save_checkpoint

__version__ = "0.1.0"
