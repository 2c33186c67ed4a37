"""Shared fixtures: data with known structure, and the `mixburn` command line the file tests
run (the binary of the workspace's build: $MIXBURN_BIN, else $CARGO_TARGET_DIR/debug)."""

import os
import pathlib
import shutil

import numpy as np
import pytest


@pytest.fixture
def blobs():
    """Three well-separated Gaussian blobs in 4-D, 300 rows, float64."""
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0, 0], [6, 6, 0, 0], [0, 8, 8, 3]], dtype=float)
    X = np.concatenate([rng.normal(c, [1.0, 0.5, 1.5, 0.8], size=(100, 4)) for c in centres])
    rng.shuffle(X)
    return X


@pytest.fixture(scope="session")
def cli():
    """The path of the `mixburn` binary (the tests that exchange files with it need it)."""
    explicit = os.environ.get("MIXBURN_BIN")
    candidates = [explicit] if explicit else []
    target = os.environ.get("CARGO_TARGET_DIR")
    root = pathlib.Path(__file__).resolve().parents[2]
    if target:
        candidates.append(os.path.join(target, "debug", "mixburn"))
    candidates.append(str(root / "target" / "debug" / "mixburn"))
    candidates.append(shutil.which("mixburn"))
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    pytest.fail("the mixburn binary was not found: build the workspace or set MIXBURN_BIN")
