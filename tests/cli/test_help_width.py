"""Every command's --help fits an 80-column terminal (COLUMNS=80), as a nanoGPT or llm.c user's does."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = [["train_step_by_step.py"], ["test_model_manually.py"]] + [
    ["-m", f"glassformer.{m}"] for m in ("evaluate", "export", "gradcheck", "experiments", "interp",
                                          "lessons")]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[-1] for c in COMMANDS])
def test_help_fits_80_columns(command):
    env = dict(os.environ, COLUMNS="80")
    done = subprocess.run([sys.executable, *command, "--help"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    wide = [line for line in done.stdout.splitlines() if len(line) > 80]
    assert done.returncode == 0 and done.stdout.startswith("usage:") and not wide, wide
