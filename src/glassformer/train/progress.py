"""The training floor's name for glassformer.progress (the meter and the terminal-width helpers moved
there, so tokenisers, data loaders and evaluate share them): every name stays importable from here."""
from ..progress import (Meter, duration, first_fit, fold, key_values,  # noqa: F401
                        progress_line, shell_wrap, si, step_line, terminal_width, wrap)
