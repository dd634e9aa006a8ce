"""The radiomics and cohort_table rules: fused segmentations and skull-stripped images → per-subject and cohort
feature tables through Snakemake."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from bratsflow import paths, synth
from bratsflow.cohort import MODALITIES
from bratsflow.io import label_image_like, save_image
from workflow_helpers import snakemake
from test_fuse_rule import MEMBERS, _members

pytestmark = pytest.mark.workflow
SUBJECTS = ("sub-001", "sub-002", "sub-003")
NO_TUMOUR_SUBJECT = "sub-002"


def _skullstripped(tiny_cohort, results, subject) -> None:
    """What the skullstrip rule leaves: the four atlas-space images (here through the true transforms) inside the
    true brain mask, and the mask."""
    brain_img = nib.load(paths.TruthFiles(tiny_cohort, subject).brain_mask)
    brain = np.asarray(brain_img.dataobj) > 0
    save_image(label_image_like(brain, brain_img), paths.brain_mask(results, subject))
    for modality, data in synth.resample_native_to_atlas(tiny_cohort, subject).items():
        save_image(nib.Nifti1Image(np.where(brain, data, 0).astype(np.float32), brain_img.affine),
                   paths.step_image(results, subject, "skullstrip", modality))


def test_radiomics_and_cohort_table_rules(tiny_cohort, tmp_path):
    results = tmp_path / "results"
    config = {
        "samples": str(tiny_cohort / "subjects.tsv"),
        "results": str(results),
        "demo": {"root": str(tmp_path / "demo")},
        "segment": {"members": MEMBERS},
        "fuse": {"method": "weighted"},
        "threads": {"radiomics": 2},
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    for subject in SUBJECTS:
        _skullstripped(tiny_cohort, results, subject)
        truth_img = nib.load(paths.TruthFiles(tiny_cohort, subject).labels)
        truth = np.asanyarray(truth_img.dataobj)
        if subject == NO_TUMOUR_SUBJECT:
            truth = np.zeros_like(truth)
        for name, labels in _members(truth).items():
            save_image(label_image_like(labels, truth_img), paths.segment_member(results, subject, name))

    # With members configured, the default target plans radiomics per subject and the cohort tables.
    plan = snakemake("-n", "--cores", "1", "--configfile", str(config_path))
    out = plan.stdout + plan.stderr
    assert out.count("rule radiomics:") == 3 and out.count("rule cohort_table:") == 1

    # The images, brain masks and members above stand in for the earlier steps.
    targets = [str(paths.cohort_features(results)), str(paths.cohort_features(results, wide=True))]
    snakemake(*targets, "--cores", "2", "--configfile", str(config_path),
              "--allowed-rules", "fuse", "radiomics", "cohort_table")

    wide = pd.read_csv(paths.cohort_features(results, wide=True))
    assert wide["subject"].tolist() == list(SUBJECTS)
    assert wide["tumour"].tolist() == [True, False, True]
    long = pd.read_parquet(paths.cohort_features(results))
    assert set(long["subject"]) == set(SUBJECTS)
    for subject in SUBJECTS:
        table = pd.read_parquet(paths.radiomics_features(results, subject))
        pd.testing.assert_frame_equal(long[long["subject"] == subject].reset_index(drop=True), table)
        fused = np.asarray(nib.load(paths.fused_segmentation(results, subject)).dataobj)
        row = wide.set_index("subject").loc[subject]
        assert row["ET_volume_ml"] == pytest.approx(np.count_nonzero(fused == 3) * 27 / 1000)
        assert row["WT_volume_ml"] == pytest.approx(np.count_nonzero(fused) * 27 / 1000)
        record = json.loads(paths.step_record(results, subject, "radiomics").read_text())
        assert record["parameters"]["threads"] == 2 and record["parameters"]["convention"] == "brats2023"
        assert record["inputs"]["segmentation"]["path"] == str(paths.fused_segmentation(results, subject))
        assert set(record["inputs"]) >= {*MODALITIES, "brain_mask", "segmentation"}
        assert paths.log_file(results, subject, "radiomics").is_file()
        assert paths.benchmark_file(results, subject, "radiomics").is_file()
    assert wide.loc[1, "WT_reason"] == "no tumour in the segmentation"
    assert np.isnan(wide.loc[1, "WT_flair_original_firstorder_Mean"])
    assert wide.loc[0, "WT_flair_original_firstorder_Mean"] > 0  # oedema is bright on FLAIR
