"""Training: the one optimisation step, the classifier epoch loop, the LM Trainer, run records."""
from .records import new_run_dir, read_metrics, write_json, write_metrics
from .step import train_step
from .trainer import TrainConfig, Trainer, estimate_loss, perplexity

__all__ = ["TrainConfig", "Trainer", "estimate_loss", "new_run_dir", "perplexity", "read_metrics",
           "train_step", "write_json", "write_metrics"]
