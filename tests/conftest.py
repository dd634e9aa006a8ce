"""Shared fixtures: a tiny synthetic cohort (3 mm atlas grid, real anatomy) made once per test session."""

from __future__ import annotations

import http.server
import os
import importlib.util
import shutil
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

from bratsflow.paths import TruthFiles
from bratsflow.synth import SynthParams, generate_cohort

TINY_RESOLUTION_MM = 3.0
TINY_SEED = 7
TINY_SUBJECTS = 3
# The tiny models, trained on the tiny cohort by tests/make_tiny_models.py.
TINY_MODELS = Path(__file__).parent / "data" / "tiny_models"
# The tiny cohort scales every voxel size by 3, so its thickest slices (4 mm FLAIR) become 12 mm.
TINY_SPACING_RANGE_MM = (0.2, 16.0)
REPO = Path(__file__).resolve().parents[1]


def workflow_steps():
    """workflow/steps.py, the step and image registry (beside the rules, not in the package: it reads
    config/config.yaml and containers/*/Dockerfile), loaded once."""
    name = "bratsflow_workflow_steps"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "workflow" / "steps.py")
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


# The session fixture that costs most; every file using it joins one group, so it is made once under xdist.
SHARED_RUN = "tiny_ensemble_run"


# tryfirst: xdist reads the groups in its own hook of this name, on each worker.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Under pytest-xdist (`make test` runs `-n 2 --dist loadgroup`), a worker takes whole groups: one per test file,
    so a module fixture is made once, and one for all files that share the tiny-ensemble run. The slow groups
    (Snakemake and container runs) go first, so the two workers do not end on them one after the other."""
    sharing = {item.path for item in items if SHARED_RUN in item.fixturenames}

    def slow(item) -> bool:
        return item.get_closest_marker("workflow") is not None or item.get_closest_marker("containers") is not None

    for item in items:
        group = SHARED_RUN if item.path in sharing else str(item.path.relative_to(config.rootpath))
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: not slow(item))


# Real scans beside the checkout (../shared/real, see its README); never copied into the project.
SHARED_REAL = Path(__file__).resolve().parents[2] / "shared" / "real"


@pytest.fixture(scope="session")
def shared_real() -> Path:
    """The shared real cases: a test that needs them fails under CI, which has them, and skips elsewhere."""
    if not SHARED_REAL.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the shared real cases are missing ({SHARED_REAL}); CI has shared/ beside the checkout")
        pytest.skip("no ../shared/real beside the checkout")
    return SHARED_REAL


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_cohort")
    generate_cohort(root, TINY_SUBJECTS, TINY_SEED, SynthParams(resolution_mm=TINY_RESOLUTION_MM))
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


def shipped_tiny_model(name: str, tmp_path_factory, record: bool = True) -> Path:
    """A copy of a shipped tiny model (tests may change their copy), with its checksum record unless `record` is
    False."""
    from bratsflow import models

    folder = shutil.copytree(TINY_MODELS / name, tmp_path_factory.mktemp(f"tiny_{name}") / name)
    if record:
        models.write_manifest(folder, name, source="tests")
    return folder


@pytest.fixture(scope="session")
def tiny_members(tmp_path_factory) -> dict[str, Path]:
    """Two tiny 4-channel nnU-Net v2 members trained on two tiny subjects: label-based and region-based."""
    return {name: shipped_tiny_model(name, tmp_path_factory) for name in ("labels", "regions")}


@pytest.fixture(scope="session")
def tiny_ensemble_run(tiny_cohort, tiny_atlas, tiny_members, tmp_path_factory) -> Path:
    """Two tiny subjects through every step with the two-member tiny ensemble and the optional outputs, run once
    with the local profile: the DAG tests check its outputs and the SLURM test compares its cluster run with it (its
    results folder)."""
    from bratsflow.modalities import MODALITIES
    from bratsflow.paths import bids_image_path
    from workflow_helpers import snakemake, tiny_ensemble, write_config

    folder = tmp_path_factory.mktemp("tiny_ensemble")
    rows = [["subject_id", *MODALITIES]]
    rows += [[sid, *(str(bids_image_path(tiny_cohort, sid, m)) for m in MODALITIES)] for sid in ("sub-001", "sub-002")]
    sheet = folder / "subjects.tsv"
    sheet.write_text("\n".join("\t".join(row) for row in rows) + "\n")
    # The optional outputs are on in this run only (their nine jobs per subject are paid once): defaced native
    # images, and an atlas-space image mapped back to T1c.
    config = write_config(folder, tiny_atlas, **tiny_ensemble(tiny_members), samples=str(sheet),
                          deface={"enabled": True}, to_native={"images": ["coregister/flair"], "spaces": ["t1c"]})
    snakemake("--workflow-profile", "config/profiles/local", "--configfile", str(config), timeout=900)
    return folder / "results"
