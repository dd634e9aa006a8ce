"""Container members: a tiny BraTS-style algorithm image (tests/containers/tiny-member) run by podman with the
MLCube-style folders, no network, as the calling user. Needs podman and the offline base image
(`containers/setup-podman`); CI sets it up and sets BRATSFLOW_REQUIRE_PODMAN=1 so the test cannot skip there."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bratsflow.cohort import MODALITIES
from bratsflow.errors import ModelError
from bratsflow.labels import region_mask
from bratsflow.segment import Member, segment
from nnunet_helpers import atlas_space_subject

IMAGE = "localhost/bratsflow-tiny-member:test"
RECIPE = Path(__file__).parent / "containers" / "tiny-member"
sys.path.insert(0, str(RECIPE))

from algorithm import segment as reference_algorithm  # noqa: E402


def _podman_ready() -> bool:
    return shutil.which("podman") is not None and subprocess.run(
        ["podman", "image", "exists", "docker.io/library/debian:bookworm-slim"], check=False).returncode == 0


pytestmark = pytest.mark.skipif(not _podman_ready() and os.environ.get("BRATSFLOW_REQUIRE_PODMAN") != "1",
                                reason="podman with the offline base image is not set up (containers/setup-podman)")


@pytest.fixture(scope="module")
def tiny_image():
    subprocess.run(["podman", "build", "--pull=never", "-q", "-t", IMAGE, str(RECIPE)], check=True,
                   capture_output=True)
    return IMAGE


@pytest.fixture(scope="module")
def inputs(tiny_cohort, tmp_path_factory):
    folder = tmp_path_factory.mktemp("container_inputs")
    images, truth = atlas_space_subject(tiny_cohort, "sub-002")
    files = {}
    for modality, img in images.items():
        files[modality] = folder / f"{modality}.nii.gz"
        nib.save(img, files[modality])
    return files, truth


def test_container_member_runs_the_image_on_the_subject(tiny_image, inputs, tmp_path):
    files, truth = inputs
    record = segment(files, Member(name="tiny_container", kind="container", model=tiny_image), tmp_path,
                     subject="sub-002")
    written = tmp_path / "tiny_container.nii.gz"
    labels = np.asarray(nib.load(written).dataobj)
    expected = reference_algorithm(nib.load(files["t1c"]).get_fdata(), nib.load(files["flair"]).get_fdata())
    np.testing.assert_array_equal(labels, expected)
    assert region_mask(labels, "WT", "brats2023").any() and region_mask(truth, "WT", "brats2023").any()
    assert written.stat().st_uid == os.getuid()
    assert not (tmp_path / "tiny_container_probabilities.npz").exists()
    method = record["method"]
    assert method["runtime"] == "podman" and len(method["image_id"]) == 64
    assert "--network" in method["command"] and "none" in method["command"]
    assert not list(tmp_path.glob(".tiny_container-*")), "the staging folder is removed"


def test_container_member_failures_are_clear(tiny_image, inputs, tmp_path):
    files, _ = inputs
    with pytest.raises(ModelError, match="the config pins 0{64}"):
        segment(files, Member(name="c", kind="container", model=tiny_image, sha256="0" * 64), tmp_path)
    with pytest.raises(ModelError, match="is not available to podman"):
        segment(files, Member(name="c", kind="container", model="localhost/no-such-image:1"), tmp_path)
    base = "docker.io/library/debian:bookworm-slim"
    with pytest.raises(ModelError, match="exited with 1"):
        segment(files, Member(name="c", kind="container", model=base, args=("false",)), tmp_path)
    with pytest.raises(ModelError, match=r"wrote no BraTS-GLI-00000-000.nii.gz \(found \[\]\)"):
        segment(files, Member(name="c", kind="container", model=base, args=("true",)), tmp_path)
    assert not (tmp_path / "c.nii.gz").exists()
    assert set(MODALITIES) == set(files)
