"""Shared fixtures: a tiny synthetic cohort (3 mm atlas grid, real anatomy) made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from bratsflow.synth import SynthParams, generate_cohort

TINY_RESOLUTION_MM = 3.0
TINY_SEED = 7
# The tiny cohort scales every voxel size by 3, so its thickest slices (4 mm FLAIR) become 12 mm.
TINY_SPACING_RANGE_MM = (0.2, 16.0)


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_cohort")
    generate_cohort(root, 3, TINY_SEED, SynthParams(resolution_mm=TINY_RESOLUTION_MM))
    return root
