"""Shared test fixtures and the ``slow`` marker.

``case_a``: the official GSVNet code's parity case A (frames, expected logits, stand-in weight recipe).
``synthetic_data(**params)``: a tiny synthetic dataset in the Cityscapes layout, generated once per
parameter set for the whole session (read-only for tests: copy it before changing files).
``slow``: subprocess/torchrun runs and full-size models; ``make test`` runs them, ``make test-fast``
(``-m "not slow"``) skips them.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dataset.synthetic import generate
from models.swiftnet import SwiftNet

CASE_A = Path(__file__).parent / "data" / "case_a_swiftnet_light.pt"
TINY = dict(num_train=2, num_val=1, height=64, width=128, num_frames=6, gt_index=4)  # the default tiny set


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: subprocess, torchrun or full-size runs (skipped by make test-fast)")


@pytest.fixture(scope="session")
def case_a() -> dict:
    return torch.load(CASE_A, weights_only=True)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """Factory: ``synthetic_data(**overrides)`` -> the root of a generated tiny synthetic dataset."""
    made: dict[tuple, Path] = {}

    def make(**overrides) -> Path:
        params = {**TINY, **overrides}
        key = tuple(sorted(params.items()))
        if key not in made:
            root = tmp_path_factory.mktemp("synthetic")
            generate(root, **params, progress=False, workers=1)
            made[key] = root
        return made[key]
    return make


@pytest.fixture(scope="session")
def segnet_file(tmp_path_factory) -> Path:
    """A random SwiftNet-R18 (seed 0, 19 classes) in the official raw-state_dict format: the frozen keyframe
    net of the CLI training tests."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "swnet.pt"
    torch.save(SwiftNet(19).state_dict(), path)
    return path
