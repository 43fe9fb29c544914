"""Training: the one optimisation step, the classifier epoch loop, the LM Trainer, run records."""
from .progress import key_values, wrap
from .records import new_run_dir, read_metrics, write_json, write_metrics
from .step import train_step
from .trainer import TrainConfig, Trainer, estimate_loss, perplexity

__all__ = ["TrainConfig", "Trainer", "estimate_loss", "key_values", "new_run_dir", "perplexity",
           "read_metrics", "train_step", "wrap", "write_json", "write_metrics"]
