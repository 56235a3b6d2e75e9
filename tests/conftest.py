"""Shared fixtures: a tiny custom SAEViT arch and seeded randomness.

The tools' modules (``tools/demo_steps.py``, ``tools/misc/demo_data.py``,
``tools/misc/golden_outputs.py``, ``tools/analysis_tools/benchmark.py``...)
are importable from the tests: their folders are appended to ``sys.path``, as
Python puts a script's folder there when it runs.
"""
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_models.test_backbones.utils import TINY_ARCH

TOOLS = Path(__file__).resolve().parents[1] / 'tools'
for folder in (TOOLS, TOOLS / 'misc', TOOLS / 'analysis_tools'):
    if str(folder) not in sys.path:
        sys.path.append(str(folder))  # after the standard library


@pytest.fixture
def tiny_arch():
    """A fresh copy of :data:`TINY_ARCH` (tests may modify it)."""
    return dict(TINY_ARCH)


@pytest.fixture(autouse=True)
def seed_everything():
    """Seed python, numpy and torch before every test."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture
def single_thread():
    """Run the test with one intra-op thread, then restore the setting.

    Tiny models are fastest on one thread, and on a loaded 2-core machine
    two OpenMP threads wait on each other: a tiny forward pass measured
    0.07 s on one thread and 0.2-12 s on two under load.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
