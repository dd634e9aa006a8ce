"""The Snakemake DAG: lint, dry run of the default configuration, and real runs on a tiny cohort."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from bratsflow import paths
from bratsflow.modalities import MODALITIES
from bratsflow.paths import TruthFiles, bids_image_path
from workflow_helpers import job_counts, snakemake, write_config

pytestmark = pytest.mark.workflow


def test_lint_is_clean():
    result = snakemake("--lint")
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_default_dry_run_plans_the_demo_cohort(tmp_path):
    result = snakemake("-n", "--cores", "2", "--config", f"results={tmp_path / 'results'}",
                       f"demo={{root: {tmp_path / 'demo'}}}")
    out = result.stdout + result.stderr
    # The default sheet lists sub-001..003 inside demo/; with the demo root elsewhere, ingest still plans them.
    assert out.count("rule ingest:") == 3
    assert "ingest_table" in out
    # The default members are the demo ensemble: each segments every subject, then fusion, radiomics, tables.
    for member in ("demo_regions", "demo_labels", "demo_labels_b"):
        assert out.count(f"rule segment_{member}:") == 3
    assert out.count("rule fuse:") == 3 and out.count("rule radiomics:") == 3
    assert out.count("rule cohort_table:") == 1
    # The HTML cohort report closes the run, after every subject's report record and provenance.
    assert out.count("rule report_html:") == 1 and "report/subjects/sub-003.html" in out


def test_default_dry_run_scores_the_demo_subjects_against_their_truth(tmp_path):
    """The default sheet's truth column names the demo's atlas-space truth, which the demo rule makes: the report
    is planned after it and is given it."""
    record = paths.step_files(tmp_path / "results", "sub-001", "report").record
    result = snakemake(str(record), "-n", "-p", "--cores", "2", "--config", f"results={tmp_path / 'results'}")
    out = result.stdout + result.stderr
    assert f"--truth {TruthFiles('demo', 'sub-001').labels}" in out


def test_dry_run_plans_the_probability_entropy_where_a_member_writes_probabilities(tmp_path):
    """The report gets the probability files of the subject's members that write them and declares the map; a
    subject whose such member is skipped for a missing FLAIR (run-available) still writes it (NaN, with the bare
    flag); a configuration whose members write none plans no map."""
    demo, results = tmp_path / "demo", tmp_path / "results"
    rows = ["subject_id\t" + "\t".join(MODALITIES)]
    for sid in ("sub-001", "sub-002"):
        rows.append("\t".join([sid, *("" if (sid, m) == ("sub-002", "flair") else str(bids_image_path(demo, sid, m))
                                      for m in MODALITIES)]))
    sheet = tmp_path / "subjects.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    # Channels named, so planning reads no model: with_flair needs FLAIR, no_flair does not and writes no
    # probabilities.
    with_flair = {"name": "with_flair", "model": "unused", "channels": ["t1", "t1c", "t2", "flair"]}
    no_flair = {"name": "no_flair", "model": "unused", "channels": ["t1", "t1c", "t2", "t2"], "probabilities": False}
    records = [str(paths.step_files(results, sid, "report").record) for sid in ("sub-001", "sub-002")]

    def plan(members: list[dict]) -> str:
        config = write_config(tmp_path, samples=str(sheet), missing_modalities="run-available",
                              segment={"members": members})
        result = snakemake(*records, "-n", "-p", "--cores", "2", "--configfile", str(config))
        return result.stdout + result.stderr

    out = plan([with_flair, no_flair])
    probabilities = paths.segment_probabilities(results, "sub-001", "with_flair")
    assert f"--probabilities with_flair={probabilities} --brain-mask" in out
    assert "--probabilities --brain-mask" in out  # sub-002: with_flair skipped
    for sid in ("sub-001", "sub-002"):
        assert str(paths.step_files(results, sid, "report").probability_entropy) in out
    out = plan([no_flair])
    assert "--probabilities" not in out and "probability_entropy" not in out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_demo_cohort_is_made_for_a_sheet_that_names_it_and_a_bad_subject_fails_alone(tmp_path):
    """A sheet naming demo files that do not exist yet: the demo rule makes them, the good subjects ingest, and the
    bad subject's ingest fails with every problem named (tests/workflow/test_reliability.py has one subject per kind
    of bad input, and the later steps under --keep-going)."""
    demo = tmp_path / "demo"
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    rows = [["subject_id", *MODALITIES]]
    rows += [[sid, *(str(bids_image_path(demo, sid, m)) for m in MODALITIES)] for sid in ("sub-001", "sub-002")]
    rows.append(["bad", *rows[1][1:3], str(broken), str(tmp_path / "absent.nii.gz")])
    sheet = tmp_path / "subjects.tsv"
    sheet.write_text("\n".join("\t".join(row) for row in rows) + "\n")
    config = write_config(tmp_path, samples=str(sheet))
    targets = [str(paths.step_image(tmp_path / "results", sid, "ingest", m))
               for sid in ("sub-001", "sub-002", "bad") for m in MODALITIES]

    result = snakemake(*targets, "--cores", "2", "--configfile", str(config), "--keep-going", check=False)
    assert result.returncode != 0, "the bad subject fails the run"
    results = tmp_path / "results"
    for sid in ("sub-001", "sub-002"):
        assert TruthFiles(demo, sid).labels.is_file()
        for name in MODALITIES:
            assert (results / sid / "ingest" / f"{name}.nii.gz").is_file()
        assert (results / sid / "benchmarks" / "ingest.tsv").is_file()
    assert not list((results / "bad" / "ingest").glob("*"))
    log = (results / "bad" / "logs" / "ingest.log").read_text()
    assert f"subject bad: T2 {broken}: " in log
    assert f"FLAIR {tmp_path / 'absent.nii.gz'}: file does not exist" in log



def test_dry_run_plans_a_dicom_study_subject_with_the_configs_rules(tmp_path):
    """A sheet with only a `dicom` column: the study and the rules file are the ingest job's inputs, the rules and
    the tie policy reach the command, and a modality declared absent (`flair_series` none) plans the
    without-FLAIR rule under run-available."""
    study = tmp_path / "pacs" / "P1"
    study.mkdir(parents=True)
    sheet = tmp_path / "subjects.tsv"
    sheet.write_text("subject_id\tdicom\tflair_series\nP1\tpacs/P1\tnone\n")
    config = write_config(tmp_path, samples=str(sheet), missing_modalities="run-available",
                          dicom={"on_tie": "latest"})
    record = paths.step_files(tmp_path / "results", "P1", "ingest").record
    result = snakemake(str(record), "-n", "-p", "--cores", "1", "--configfile", str(config))
    out = result.stdout + result.stderr
    assert "rule ingest_without_flair:" in out
    assert f"input: {study}, config/dicom_rules.yaml" in out
    assert "--dicom-rules config/dicom_rules.yaml --dicom-tie latest" in out

@pytest.mark.parametrize("enabled", [True, False])
def test_dry_run_plans_the_dicom_export_for_a_dicom_t1c_subject_when_enabled(tmp_path, enabled):
    """export.enabled plans one export job, after the fused segmentation mapped to native T1c space, for the
    subject whose T1c comes from its DICOM study, and none for the NIfTI subject; disabled, none at all."""
    (tmp_path / "pacs" / "P1").mkdir(parents=True)
    demo = tmp_path / "demo"
    nifti = "\t".join(str(bids_image_path(demo, "sub-001", m)) for m in MODALITIES)
    sheet = tmp_path / "subjects.tsv"
    sheet.write_text(f"subject_id\tdicom\t{chr(9).join(MODALITIES)}\nP1\tpacs/P1{chr(9) * 4}\n"
                     f"sub-001\t\t{nifti}\n")
    member = {"name": "m", "model": "unused", "channels": list(MODALITIES)}
    config = write_config(tmp_path, samples=str(sheet), segment={"members": [member]},
                          export={"enabled": enabled, "series_description": "AI tumour seg"})
    result = snakemake("-n", "-p", "--cores", "1", "--configfile", str(config))
    out = result.stdout + result.stderr
    export = paths.step_files(tmp_path / "results", "P1", "export")
    if not enabled:
        assert "rule export:" not in out and "space-t1c" not in out
        return
    assert out.count("rule export:") == 1 and str(export.dicom_segmentation) in out
    assert str(export.dicom_measurements) in out
    native = paths.native_file(tmp_path / "results", "P1", "fuse", "segmentation", "t1c")
    assert f"--segmentation {native}" in out and "--series-description 'AI tumour seg'" in out
    assert "sub-001/export" not in out


def test_bad_sheet_stops_before_any_job(tmp_path):
    sheet = tmp_path / "subjects.tsv"
    sheet.write_text("subject_id\tt1\tt1c\tt2\tflair\na/b\tx\tx\tx\tx\n")
    result = snakemake("-n", "--configfile", str(write_config(tmp_path, samples=str(sheet))), check=False)
    assert result.returncode != 0
    assert "subject id 'a/b' (row 2) is not allowed" in result.stdout + result.stderr


def test_config_outside_the_schema_is_refused(tmp_path):
    result = snakemake("-n", "--configfile", str(write_config(tmp_path, convention="brats2019")), check=False)
    assert result.returncode != 0
    assert "brats2019" in result.stdout + result.stderr


def test_a_label_set_the_steps_cannot_fuse_or_a_member_of_another_task_stops_before_any_job(tmp_path):
    not_nested = snakemake("-n", "--configfile", str(write_config(tmp_path, convention="brats-gli-post")),
                           check=False)
    assert not_nested.returncode != 0
    log = not_nested.stdout + not_nested.stderr
    assert "label set brats-gli-post" in log and "is not nested" in log
    paediatric = {"name": "ped", "kind": "nnunetv2", "model": "ped-model", "labels": "brats-ped"}
    mixed = snakemake("-n", "--configfile", str(write_config(tmp_path, segment={"members": [paediatric]})),
                      check=False)
    assert mixed.returncode != 0
    log = mixed.stdout + mixed.stderr
    assert "member ped writes label set brats-ped" in log and "no exact mapping" in log


def test_segmentation_members_and_fusion_in_the_dag(tiny_ensemble_run, tiny_members):
    results = tiny_ensemble_run
    for sid in ("sub-001", "sub-002"):
        segment_dir = results / sid / "segment"
        for name in ("tiny_labels", "tiny_regions"):
            labels = nib.load(segment_dir / f"{name}.nii.gz")
            assert labels.get_data_dtype() == np.uint8
            assert np.allclose(labels.affine, nib.load(results / sid / "skullstrip" / "t1.nii.gz").affine)
            assert (segment_dir / f"{name}_probabilities.npz").is_file()
            assert json.loads((segment_dir / f"{name}.json").read_text())["parameters"]["name"] == name
        record = json.loads((results / sid / "fuse" / "fuse.json").read_text())
        assert record["parameters"]["method"] == "mean"
        assert record["parameters"]["members"] == ["tiny_labels", "tiny_regions"]
        fused = np.asarray(nib.load(results / sid / "fuse" / "segmentation.nii.gz").dataobj)
        assert set(np.unique(fused)) <= {0, 1, 2, 3}
        # The subject's provenance names each member's model with its checkpoint's checksum.
        gathered = json.loads((results / sid / "provenance.json").read_text())
        assert {"segment/tiny_labels", "segment/tiny_regions", "fuse/fuse", "radiomics/radiomics"} <= \
            set(gathered["steps"])
        for name, kind in (("tiny_labels", "labels"), ("tiny_regions", "regions")):
            checkpoint = tiny_members[kind] / "fold_all" / "checkpoint_final.pth"
            assert gathered["models"][name]["checkpoints"] == {"all": _sha(checkpoint)}
    listed = (results / "manifest.tsv").read_text()
    for name in ("sub-001/segment/tiny_regions_probabilities.npz", "sub-002/fuse/segmentation.nii.gz",
                 "sub-002/radiomics/features.parquet", "cohort/features_wide.csv"):
        assert f"\n{name}\t" in listed


def test_defaced_and_native_images_are_made_and_made_again_the_same(tiny_ensemble_run, tmp_path):
    """The tiny ensemble run's optional outputs: defaced native images, and the co-registered FLAIR mapped back to
    T1c. Made again from a copy of sub-001's inputs to them, they are the same bytes: the reliability tests' bitwise
    reruns do not switch them on."""
    results = tiny_ensemble_run
    listed = (results / "manifest.tsv").read_text()
    for sid in ("sub-001", "sub-002"):
        assert f"\n{sid}/native/coregister-flair_space-t1c.nii.gz\t" in listed
        for name in ("t1", "flair"):
            # The same grid as the ingested image, some of the head removed.
            ingested = nib.load(results / sid / "ingest" / f"{name}.nii.gz")
            defaced = nib.load(results / sid / "deface" / f"{name}.nii.gz")
            assert defaced.shape == ingested.shape and np.allclose(defaced.affine, ingested.affine)
            assert 0 < np.count_nonzero(ingested.get_fdata()) - np.count_nonzero(defaced.get_fdata())
            assert f"\n{sid}/deface/{name}.nii.gz\t" in listed

    again = tmp_path / "results"
    for step in ("ingest", "coregister", "skullstrip"):
        shutil.copytree(results / "sub-001" / step, again / "sub-001" / step)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load((results.parent / "config.yaml").read_text()),
                                      "results": str(again)}))
    # One image of each kind: a defaced image, the brain mask mapped to its space (a label map) and the FLAIR mapped
    # to T1c (an image); the other modalities take the same code paths.
    made = [Path("sub-001/deface/t1.nii.gz"), Path("sub-001/native/skullstrip-brain_mask_space-t1.nii.gz"),
            Path("sub-001/native/coregister-flair_space-t1c.nii.gz")]
    rerun = snakemake(str(again / made[0]), str(again / made[2]), "--cores", "2", "--configfile", str(config))
    assert job_counts(rerun.stdout + rerun.stderr) == {"deface": 1, "to_native": 2}, "the copied steps do not rerun"
    for path in made:
        assert (again / path).read_bytes() == (results / path).read_bytes(), path


def test_missing_flair_under_run_available_and_fail(tmp_path, tiny_cohort, tiny_atlas, tiny_members):
    """sub-002 without FLAIR: run-available runs it on three modalities with the member that needs no FLAIR (the
    other is skipped, and the records and the report's figures say so); fail stops that subject at ingest, sub-001
    goes on."""
    rows = ["subject_id\t" + "\t".join(MODALITIES)]
    for sid in ("sub-001", "sub-002"):
        cells = ["" if (sid, m) == ("sub-002", "flair") else str(bids_image_path(tiny_cohort, sid, m))
                 for m in MODALITIES]
        rows.append("\t".join([sid, *cells]))
    sheet = tmp_path / "subjects.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    # The region model declared to read T2 in its FLAIR channel: a member that needs no FLAIR, without training a
    # three-channel model for the test.
    members = [{"name": "tiny_labels", "model": str(tiny_members["labels"])},
               {"name": "no_flair", "model": str(tiny_members["regions"]), "channels": ["t1", "t1c", "t2", "t2"]}]
    config = write_config(tmp_path, tiny_atlas, samples=str(sheet), missing_modalities="run-available",
                           segment={"members": members}, threads={"segment": 1})
    results = tmp_path / "results"
    lacking = results / "sub-002"
    # sub-002's jobs only (sub-001 with both members is the tiny ensemble run's case).
    report = paths.step_files(results, "sub-002", "report")
    snakemake(str(paths.provenance_file(results, "sub-002")), str(report.record), "--cores", "2",
              "--configfile", str(config))
    for step in ("ingest", "coregister", "skullstrip"):
        assert sorted(p.name for p in (lacking / step).glob("*.nii.gz")) == \
            sorted(["t1.nii.gz", "t1c.nii.gz", "t2.nii.gz"] + (["brain_mask.nii.gz"] if step == "skullstrip" else []))
        assert json.loads((lacking / step / f"{step}.json").read_text())["missing_modalities"] == ["flair"]
    assert not (lacking / "segment" / "tiny_labels.nii.gz").exists()
    assert json.loads((lacking / "segment" / "no_flair.json").read_text())["missing_modalities"] == ["flair"]
    fused = json.loads((lacking / "fuse" / "fuse.json").read_text())
    assert fused["parameters"]["members"] == ["no_flair"]
    assert fused["skipped_members"] == {"tiny_labels": ["flair"]}
    features = pd.read_parquet(lacking / "radiomics" / "features.parquet")
    assert set(features["modality"].dropna()) == {"t1", "t1c", "t2"}  # shape features have none
    gathered = json.loads((lacking / "provenance.json").read_text())
    assert gathered["missing_modalities"] == ["flair"]
    assert gathered["skipped_members"] == {"tiny_labels": ["flair"]}
    assert json.loads(report.record.read_text())["missing_modalities"] == ["flair"]
    assert all(report.figure(name).stat().st_size > 0 for name in paths.FIGURES)

    # fail (the default): sub-002's ingest fails with the empty cell named, sub-001's runs on.
    failing = tmp_path / "fail"
    targets = [str(paths.step_record(failing, sid, "ingest")) for sid in ("sub-001", "sub-002")]
    config = write_config(tmp_path, tiny_atlas, samples=str(sheet), results=str(failing))
    result = snakemake(*targets, "--cores", "2", "--configfile", str(config), "--keep-going", check=False)
    assert result.returncode != 0
    assert paths.step_record(failing, "sub-001", "ingest").is_file()
    assert not (failing / "sub-002" / "ingest").exists()
    log = (failing / "sub-002" / "logs" / "ingest.log").read_text()
    assert (f"subject sub-002: FLAIR: no FLAIR image: column flair of row 3 is empty in the sample sheet {sheet} "
            "(missing_modalities is fail; run-available runs the subject on the modalities it has)") in log
