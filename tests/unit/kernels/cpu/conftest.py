"""Fixtures of the CPU overlay's tests."""
import pytest

from glassformer.kernels.cpu import compiled


@pytest.fixture
def compiled_on():
    """The compiled loops on for a test (tests/conftest.py turns them off for the rest of the suite)."""
    old = compiled.set_enabled(True)
    yield
    compiled.set_enabled(old)
