"""The Snakemake DAG: lint, dry run of the default configuration, and real runs on a tiny cohort."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from bratsflow import paths
from bratsflow.modalities import MODALITIES
from bratsflow.paths import TruthFiles, bids_image_path

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.workflow


def snakemake(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    # The rules call the `bratsflow` command: put this interpreter's scripts first on the PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    snakemake_bin = shutil.which("snakemake", path=env["PATH"])
    assert snakemake_bin, "snakemake is not installed"
    result = subprocess.run([snakemake_bin, "--nolock", *args], cwd=REPO, capture_output=True, text=True, env=env,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


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


def _write_config(tmp_path: Path, tiny_atlas=None, **extra) -> Path:
    config = {
        "results": str(tmp_path / "results"),
        "demo": {"root": str(tmp_path / "demo"), "subjects": 2, "seed": 7, "resolution_mm": 3.0},
        "ingest": {"spacing_range_mm": [0.2, 16.0]},
        # The demo ensemble (the default members) is for 1 mm subjects: the tiny cohort stops at skull stripping
        # unless a test names its own members.
        "segment": {"members": []},
        **extra,
    }
    if tiny_atlas:
        config["coregister"] = {"atlas": str(tiny_atlas[0]), "atlas_mask": str(tiny_atlas[1])}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_end_to_end_with_a_bad_subject_under_keep_going(tmp_path, tiny_atlas):
    demo = tmp_path / "demo"
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    rows = ["subject_id\tt1\tt1c\tt2\tflair"]
    for sid in ("sub-001", "sub-002"):
        rows.append("\t".join([sid, *(str(bids_image_path(demo, sid, m)) for m in ("t1", "t1c", "t2", "flair"))]))
    good = [str(bids_image_path(demo, "sub-001", m)) for m in ("t1", "t1c", "t2")]
    rows.append("\t".join(["bad", *good[:2], str(broken), str(tmp_path / "absent.nii.gz")]))
    sheet = tmp_path / "subjects.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    config = _write_config(tmp_path, tiny_atlas, samples=str(sheet),
                           to_native={"images": ["coregister/flair"], "spaces": ["t1c"]}, deface={"enabled": True})

    result = snakemake("--cores", "2", "--configfile", str(config), "--keep-going", check=False)
    assert result.returncode != 0, "the bad subject fails the run"
    results = tmp_path / "results"
    for sid in ("sub-001", "sub-002"):
        for name in ("t1", "t1c", "t2", "flair"):
            assert (results / sid / "ingest" / f"{name}.nii.gz").is_file()
        assert (results / sid / "benchmarks" / "ingest.tsv").is_file()
        for name in ("t1.nii.gz", "flair.nii.gz", "coregister.json", "transforms/flair-to-t1c.mat"):
            assert (results / sid / "coregister" / name).is_file()
        for name in ("brain_mask.nii.gz", "t1c.nii.gz", "flair.nii.gz", "skullstrip.json"):
            assert (results / sid / "skullstrip" / name).is_file()
    assert not (results / "bad" / "ingest" / "t1.nii.gz").exists()
    log = (results / "bad" / "logs" / "ingest.log").read_text()
    assert f"subject bad: T2 {broken}: " in log
    assert f"FLAIR {tmp_path / 'absent.nii.gz'}: file does not exist" in log
    assert TruthFiles(demo, "sub-002").labels.is_file()
    for sid in ("sub-001", "sub-002"):
        assert (results / sid / "native" / "coregister-flair_space-t1c.nii.gz").is_file()
        for name in ("t1", "flair"):
            # Defaced native images: the same grid as the ingested image, some of the head removed.
            ingested = nib.load(results / sid / "ingest" / f"{name}.nii.gz")
            defaced = nib.load(results / sid / "deface" / f"{name}.nii.gz")
            assert defaced.shape == ingested.shape and np.allclose(defaced.affine, ingested.affine)
            assert 0 < np.count_nonzero(ingested.get_fdata()) - np.count_nonzero(defaced.get_fdata())

    # The same cohort as a BIDS tree ingests to byte-identical images (every later step is bitwise reproducible
    # from them: tests/workflow/test_reliability.py); a rerun has nothing to do.
    bids_results = tmp_path / "bids_results"
    bids_config = _write_config(tmp_path, tiny_atlas, bids=str(demo), results=str(bids_results))
    ingest_targets = [str(paths.cohort_file(bids_results, "ingest.tsv"))]
    snakemake(*ingest_targets, "--cores", "2", "--configfile", str(bids_config))
    for sid in ("sub-001", "sub-002"):
        for name in MODALITIES:
            assert _sha(paths.step_image(bids_results, sid, "ingest", name)) == \
                _sha(paths.step_image(results, sid, "ingest", name))
    table = paths.cohort_file(bids_results, "ingest.tsv").read_text().splitlines()
    assert len(table) == 1 + 2 * 4
    rerun = snakemake(*ingest_targets, "--cores", "2", "--configfile", str(bids_config))
    assert "Nothing to be done" in rerun.stdout + rerun.stderr


def test_bad_sheet_stops_before_any_job(tmp_path):
    sheet = tmp_path / "subjects.tsv"
    sheet.write_text("subject_id\tt1\tt1c\tt2\tflair\na/b\tx\tx\tx\tx\n")
    result = snakemake("-n", "--configfile", str(_write_config(tmp_path, samples=str(sheet))), check=False)
    assert result.returncode != 0
    assert "subject id 'a/b' (row 2) is not allowed" in result.stdout + result.stderr


def test_config_outside_the_schema_is_refused(tmp_path):
    result = snakemake("-n", "--configfile", str(_write_config(tmp_path, convention="brats2019")), check=False)
    assert result.returncode != 0
    assert "brats2019" in result.stdout + result.stderr


def _tiny_ensemble(tiny_members) -> dict:
    """Config keys of a two-member ensemble of the tiny nnU-Net models, fused by weighted mean."""
    members = [{"name": "tiny_labels", "model": str(tiny_members["labels"])},
               {"name": "tiny_regions", "model": str(tiny_members["regions"]), "weight": 2.0}]
    return {"segment": {"members": members}, "fuse": {"method": "mean"}, "threads": {"segment": 1}}


def test_segmentation_members_and_fusion_in_the_dag(tmp_path, tiny_cohort, tiny_atlas, tiny_members):
    config = _write_config(tmp_path, tiny_atlas, **_tiny_ensemble(tiny_members),
                           samples=str(tiny_cohort / "subjects.tsv"))
    snakemake("--cores", "2", "--configfile", str(config))
    results = tmp_path / "results"
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


def test_missing_flair_under_run_available_and_fail(tmp_path, tiny_cohort, tiny_atlas, tiny_members):
    """sub-002 without FLAIR: run-available runs it on three modalities with the member that needs no FLAIR (the
    other is skipped, and the records say so); fail stops that subject at ingest, sub-001 goes on."""
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
    config = _write_config(tmp_path, tiny_atlas, samples=str(sheet), missing_modalities="run-available",
                           segment={"members": members}, threads={"segment": 1})
    snakemake("--cores", "2", "--configfile", str(config))
    results = tmp_path / "results"
    lacking = results / "sub-002"
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
    assert set(features["modality"]) == {"t1", "t1c", "t2"}
    gathered = json.loads((lacking / "provenance.json").read_text())
    assert gathered["missing_modalities"] == ["flair"]
    assert gathered["skipped_members"] == {"tiny_labels": ["flair"]}
    qc = pd.read_csv(results / "cohort" / "qc.tsv", sep="\t", index_col="subject", keep_default_na=False)
    assert qc.loc["sub-002", "missing_modalities"] == "flair" and qc.loc["sub-001", "missing_modalities"] == ""
    complete = json.loads((results / "sub-001" / "fuse" / "fuse.json").read_text())
    assert complete["parameters"]["members"] == ["tiny_labels", "no_flair"] and complete["skipped_members"] == {}
    assert json.loads((results / "sub-001" / "provenance.json").read_text())["missing_modalities"] == []

    # fail (the default): sub-002's ingest fails with the empty cell named, sub-001's runs on.
    failing = tmp_path / "fail"
    targets = [str(paths.step_record(failing, sid, "ingest")) for sid in ("sub-001", "sub-002")]
    config = _write_config(tmp_path, tiny_atlas, samples=str(sheet), results=str(failing))
    result = snakemake(*targets, "--cores", "2", "--configfile", str(config), "--keep-going", check=False)
    assert result.returncode != 0
    assert paths.step_record(failing, "sub-001", "ingest").is_file()
    assert not (failing / "sub-002" / "ingest").exists()
    log = (failing / "sub-002" / "logs" / "ingest.log").read_text()
    assert (f"subject sub-002: FLAIR: no FLAIR image: column flair of row 3 is empty in the sample sheet {sheet} "
            "(missing_modalities is fail; run-available runs the subject on the modalities it has)") in log
