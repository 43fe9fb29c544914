"""Language models on real text: presets, the Trainer, and text generation."""
from .presets import lm_batches, lm_config
from .trainer import TrainConfig, Trainer, estimate_loss, perplexity, plot_losses, read_metrics
from .generate import eos_id, generate_text

__all__ = ["lm_config", "lm_batches", "TrainConfig", "Trainer", "estimate_loss", "perplexity",
           "plot_losses", "read_metrics", "eos_id", "generate_text"]
