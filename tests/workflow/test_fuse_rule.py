"""The fuse rule: member label maps under RESULTS/<subject>/segment/ fused by Snakemake, with its record."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from scipy import ndimage as ndi

from bratsflow import paths
from bratsflow.fusion import fuse
from bratsflow.io import label_image_like, save_image
from workflow_helpers import snakemake

pytestmark = pytest.mark.workflow
# Label maps placed by the test stand in for the members' segment_<name> jobs (run with --allowed-rules fuse).
MEMBERS = [{"name": "dilated", "weight": 1.0}, {"name": "eroded", "weight": 2.0}, {"name": "relabelled"},
           {"name": "shifted", "weight": 0.5}]
MEMBERS = [{**member, "model": "placed-by-the-test"} for member in MEMBERS]


def _members(truth: np.ndarray) -> dict[str, np.ndarray]:
    """Plausible segmentations of a truth label map (2023 labels)."""
    tumour = truth > 0
    dilated = truth.copy()
    dilated[ndi.binary_dilation(tumour) & ~tumour] = 2
    eroded = np.where(ndi.binary_erosion(tumour), truth, 0).astype(np.uint8)
    relabelled = truth.copy()
    relabelled[truth == 3] = 1  # enhancing called necrosis
    shifted = np.roll(truth, 1, axis=0)
    return {"dilated": dilated, "eroded": eroded, "relabelled": relabelled, "shifted": shifted}


def test_fuse_rule_runs_on_member_label_maps(tiny_cohort, tmp_path):
    results = tmp_path / "results"
    config = {
        "samples": str(tiny_cohort / "subjects.tsv"),
        "results": str(results),
        "demo": {"root": str(tmp_path / "demo")},
        "segment": {"members": MEMBERS},
        "fuse": {"method": "weighted", "mode": "regions"},
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    expected = {}
    for subject in ("sub-001", "sub-002", "sub-003"):
        truth_img = nib.load(paths.TruthFiles(tiny_cohort, subject).labels)
        members = _members(np.asanyarray(truth_img.dataobj))
        for name, labels in members.items():
            save_image(label_image_like(labels, truth_img), paths.segment_member(results, subject, name))
        expected[subject] = fuse([members[m["name"]] for m in MEMBERS], method="weighted",
                                 weights=[m.get("weight", 1.0) for m in MEMBERS])

    targets = [str(paths.fused_segmentation(results, s)) for s in ("sub-001", "sub-002", "sub-003")]
    only_fuse = ("--allowed-rules", "fuse", "--configfile", str(config_path))
    plan = snakemake("-n", *targets, "--cores", "1", *only_fuse)
    assert (plan.stdout + plan.stderr).count("rule fuse:") == 3

    target = paths.fused_segmentation(results, "sub-001")
    snakemake(str(target), "--cores", "1", *only_fuse)
    fused = nib.load(target)
    assert fused.get_data_dtype() == np.uint8
    np.testing.assert_allclose(fused.affine, nib.load(paths.segment_member(results, "sub-001", "eroded")).affine)
    np.testing.assert_array_equal(np.asanyarray(fused.dataobj), expected["sub-001"])

    record = json.loads(paths.step_record(results, "sub-001", "fuse").read_text())
    parameters = record["parameters"]
    assert parameters["method"] == "weighted" and parameters["mode"] == "regions"
    assert parameters["convention"] == "brats2023" and parameters["weights"] == [1.0, 2.0, 1.0, 0.5]
    member_file = paths.segment_member(results, "sub-001", "shifted")
    assert record["inputs"]["shifted"]["sha256"] == hashlib.sha256(Path(member_file).read_bytes()).hexdigest()
    assert record["environment"]["packages"]["numpy"]
    assert paths.log_file(results, "sub-001", "fuse").is_file()
    assert paths.benchmark_file(results, "sub-001", "fuse").is_file()
