"""Shared test fixtures."""

import os

import pytest
import torch

# Safety filters are on by default for users; tests turn them on where they test them (tests/test_safety_*.py), so
# the rest does not load the concept encoder for every generation.
os.environ.setdefault("NOISECRAFT_SAFETY", "off")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """`make test` runs two pytest workers on two cores; with torch's intra-op threads on top they spin against each
    other (7-35x slower on small tensors). One thread per worker keeps both cores busy without contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
