"""Shared fixtures: a tiny synthetic cohort (3 mm atlas grid, real anatomy) made once per test session."""

from __future__ import annotations

import http.server
import threading
from functools import partial
from pathlib import Path

import pytest

from bratsflow.paths import TruthFiles
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


@pytest.fixture(scope="session")
def tiny_atlas(tiny_cohort, tmp_path_factory) -> tuple[Path, Path]:
    """The MNI152 template and brain mask on the tiny cohort's 3 mm atlas grid (image, mask)."""
    import nibabel as nib
    import numpy as np
    from nibabel.processing import resample_from_to
    from nilearn import datasets

    folder = tmp_path_factory.mktemp("tiny_atlas")
    grid = nib.load(TruthFiles(tiny_cohort, "sub-001").labels)
    template = resample_from_to(datasets.load_mni152_template(resolution=1), grid, order=1)
    mask = resample_from_to(datasets.load_mni152_brain_mask(resolution=1), grid, order=0)
    nib.save(template, folder / "atlas.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(mask.dataobj, dtype=np.uint8), mask.affine), folder / "mask.nii.gz")
    return folder / "atlas.nii.gz", folder / "mask.nii.gz"


@pytest.fixture
def loopback_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving a folder: (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def tiny_members(tiny_cohort, tmp_path_factory):
    """Two tiny 4-channel nnU-Net v2 members trained on two tiny subjects: label-based and region-based."""
    from bratsflow import models
    from nnunet_helpers import LABEL_CHANNELS, REGION_CHANNELS, train_on_tiny_cohort

    root = tmp_path_factory.mktemp("tiny_members")
    label_model = train_on_tiny_cohort(tiny_cohort, root / "labels", LABEL_CHANNELS,
                                       label_names={"background": 0, "NETC": 1, "SNFH": 2, "ET": 3})
    region_model = train_on_tiny_cohort(tiny_cohort, root / "regions", REGION_CHANNELS,
                                        label_names={"background": 0, "whole_tumor": [1, 2, 3],
                                                     "tumor_core": [1, 3], "enhancing_tumor": 3},
                                        regions_class_order=[2, 1, 3])
    for folder in (label_model, region_model):
        models.write_manifest(folder, folder.name, source="tests")
    return {"labels": label_model, "regions": region_model}

