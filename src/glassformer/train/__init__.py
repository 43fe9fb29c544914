"""Training: the epoch loop for classifiers, the LM Trainer, and the records a run writes."""
from .trainer import TrainConfig, Trainer, estimate_loss, perplexity, plot_losses, read_metrics

__all__ = ["TrainConfig", "Trainer", "estimate_loss", "perplexity", "plot_losses", "read_metrics"]
