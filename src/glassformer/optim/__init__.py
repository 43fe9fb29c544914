"""Optimizers, learning-rate schedules, gradient clipping and the fp16 loss scaler."""
from .optimizers import (SGD, Adam, AdamW, Optimizer, clip_grad_norm, decay_mask, grad_norm,
                         warmup_cosine)
from .loss_scaler import LossScaler, ScaledLoss

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "decay_mask", "clip_grad_norm", "grad_norm",
           "warmup_cosine", "LossScaler", "ScaledLoss"]
