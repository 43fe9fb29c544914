"""Fixtures the train_step_by_step.py tests share: small digits data, no plots."""
import pytest

from glassformer.runner import epochs as run_epochs
from glassformer.tasks import digits


@pytest.fixture
def tiny_digits(monkeypatch):
    """--size small means 300 examples here (2,000 in real runs): the CLI's logic, at test speed."""
    monkeypatch.setitem(digits.SIZES, "small", 300)


@pytest.fixture
def no_plots(monkeypatch):
    """Skip the PNGs where a test does not look at them (plots are tested on their own)."""
    monkeypatch.setattr(run_epochs, "plot_run", lambda run, out, model: [])
