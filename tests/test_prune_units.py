"""converters.prune's pure parts: the sparsity schedule and the magnitude mask."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from converters.prune import gzip_size, magnitude_mask, sparsity_at


def test_schedule_rises_from_zero_to_the_target_and_stays():
    assert sparsity_at(0, 100, 0.8) == 0.0
    values = [sparsity_at(step, 100, 0.8) for step in range(0, 101, 10)]
    assert values == sorted(values)  # never falls
    assert values[-1] == pytest.approx(0.8)
    assert sparsity_at(50, 100, 0.8) == pytest.approx(0.8 * (1 - 0.5 ** 3))  # cubic: fast first
    assert sparsity_at(250, 100, 0.8) == 0.8
    assert sparsity_at(3, 0, 0.5) == 0.5  # no ramp: straight to the target


def test_mask_removes_exactly_the_smallest_magnitudes():
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((3, 3, 4, 8)).astype(np.float32)
    mask = magnitude_mask(weights, 0.75)
    assert mask.shape == weights.shape
    assert int((mask == 0).sum()) == round(0.75 * weights.size)
    kept, dropped = np.abs(weights[mask == 1]), np.abs(weights[mask == 0])
    assert kept.min() >= dropped.max()
    assert magnitude_mask(weights, 0.0).all()


def test_gzip_size_is_what_gzip_makes_and_sees_zeros():
    dense = np.random.default_rng(1).standard_normal(4096).astype(np.float32)
    sparse = dense * magnitude_mask(dense, 0.8)
    assert gzip_size(dense.tobytes()) == len(gzip.compress(dense.tobytes(), 9, mtime=0))
    assert gzip_size(sparse.tobytes()) < 0.5 * gzip_size(dense.tobytes())
