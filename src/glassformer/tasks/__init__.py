"""Tasks: data generators for the studies glassformer runs (digit operations, sentences, synthetic toys)."""
from .base import BOS, EOS, IGNORE, PAD, SyntheticTask
from .dataset import Dataset, load_dataset
from .registry import FILE_TASKS, TASKS, make_task, task_class
