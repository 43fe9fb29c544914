"""Command-line tools the tests run, found as a user's venv has them, activated or not."""
import shutil
import sys
from pathlib import Path


def tool(name):
    """The `name` beside this Python (a venv's bin/, where pip puts lint-imports and the mpich wheel's
    mpiexec), else the one on PATH, else None: a venv's python runs the tests without activating it."""
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else shutil.which(name)
