"""Research toys: RoPE, quadratic and cross attention, RMSNorm, bilinear MLP, toy models, Muon."""
from .attention import (CrossAttention, KernelAttention, QuadraticAttention, RotaryAttention,
                        RotaryEmbedding)
from .encoder_decoder import DecoderBlock, EncoderDecoder, EncoderDecoderConfig
from .layers import Bilinear, NoNorm, RMSNorm, make_norm
from .models import MODEL_TYPES, ToyBlock, ToyConfig, ToyModel, build_toy_model
from .muon import Muon, orthogonalize

__all__ = ["CrossAttention", "KernelAttention", "QuadraticAttention", "RotaryAttention",
           "RotaryEmbedding", "DecoderBlock", "EncoderDecoder", "EncoderDecoderConfig", "Bilinear",
           "NoNorm", "RMSNorm", "make_norm", "MODEL_TYPES", "ToyBlock", "ToyConfig", "ToyModel",
           "build_toy_model", "Muon", "orthogonalize"]
