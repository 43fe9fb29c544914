"""Command-line tools the tests run, found as a user's venv has them, activated or not; bench scripts
as modules."""
import importlib.util
import shutil
import sys
from pathlib import Path


def tool(name):
    """The `name` beside this Python (a venv's bin/, where pip puts lint-imports and the mpich wheel's
    mpiexec), else the one on PATH, else None: a venv's python runs the tests without activating it."""
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else shutil.which(name)


def bench_module(name):
    """bench/NAME.py as a module, loaded by path (bench/ on sys.path would shadow the stdlib `profile`)."""
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
