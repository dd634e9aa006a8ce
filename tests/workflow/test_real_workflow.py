"""The default configuration on the real glioma cases in ../shared/real, as a new user runs it: a sample sheet and the
README's command. The gates calibrated on real scans must let both cases pass, and the results must make sense
anatomically.

Two changes from the defaults keep CI short. The ensemble is one of the three demo members (each costs a minute or
more per full-size case on two cores); fusion still runs on it. And only TCGA-DU-7294 goes through every step: the
BraTS-format case stops after skull stripping, because the steps after it see only atlas-space images, whatever the
input format was, and radiomics of the demo member's scattered segmentation of that case alone took 140 s (the
shape features' diameters grow with the square of the surface)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bratsflow import paths
from workflow_helpers import snakemake

REPO = Path(__file__).resolve().parents[2]
CASES = {
    # Skull-stripped by HD-BET in scanner space: three grids, 5 mm T1/T2 slices, T1 with a qform only.
    "TCGA-DU-7294": {m: f"tcga-du-7294/native_hdbet/{m}_hdbet_brain.nii.gz" for m in ("t1", "t1c", "t2", "flair")},
    # BraTS format: skull-stripped, co-registered, 240×240×155 at 1 mm, LPS storage.
    "BraTS-GLI-00001-000": {m: f"brats-gli-00001-000/BraTS-GLI-00001-000-{name}.nii.gz"
                            for m, name in zip(("t1", "t1c", "t2", "flair"), ("t1n", "t1c", "t2w", "t2f"))},
}
END_TO_END = "TCGA-DU-7294"
pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def real_run(shared_real, tmp_path_factory):
    folder = tmp_path_factory.mktemp("real")
    results = folder / "results"
    one_member = "segment={members: [{name: demo_labels, model: models/demo/demo_labels}]}"
    for sid, files in CASES.items():
        sheet = folder / f"{sid}.tsv"
        sheet.write_text("subject_id\tt1\tt1c\tt2\tflair\n"
                         + "\t".join([sid, *(str(shared_real / files[m]) for m in ("t1", "t1c", "t2", "flair"))]) + "\n")
        targets = [] if sid == END_TO_END else [str(paths.brain_mask(results, sid))]
        snakemake("--cores", "2", *targets, "--config", f"samples={sheet}", f"results={results}", one_member,
                  timeout=3000)
    return results


def test_real_cases_pass_the_gates_and_one_runs_end_to_end_with_the_defaults(real_run):
    for sid in CASES:
        record = json.loads((real_run / sid / "coregister" / "coregister.json").read_text())
        for registration in record["registrations"].values():
            assert not any(attempt["failed"] for attempt in registration["attempts"][:1])
        assert paths.brain_mask(real_run, sid).is_file()
    # BraTS format: the three images on the T1c's grid, already aligned, are kept as given.
    gli = json.loads((real_run / "BraTS-GLI-00001-000" / "coregister" / "coregister.json").read_text())
    assert {m for m, r in gli["registrations"].items() if r["method"].startswith("kept")} == {"t1", "t2", "flair"}
    assert paths.fused_segmentation(real_run, END_TO_END).is_file()
    assert paths.radiomics_features(real_run, END_TO_END).is_file()
    assert paths.provenance_file(real_run, END_TO_END).is_file()
    assert paths.cohort_features(real_run).is_file()
    assert paths.report_index(real_run).is_file()


def test_real_brain_masks_are_the_given_brains(real_run):
    """Both cases come skull-stripped: the mask is the given brain (detected), carried into atlas space whole."""
    for sid in CASES:
        record = json.loads((real_run / sid / "skullstrip" / "skullstrip.json").read_text())
        assert record["input"]["decided"] == "stripped", sid
        mask = np.asarray(nib.load(real_run / sid / "skullstrip" / "brain_mask.nii.gz").dataobj) > 0
        source = record["mask_modality"]
        given = nib.load(real_run / sid / "coregister" / f"{source}.nii.gz").get_fdata() > 0
        assert 1000 < mask.sum() / 1000 < 1800, sid
        assert (mask & given).sum() / given.sum() >= 0.995, sid
