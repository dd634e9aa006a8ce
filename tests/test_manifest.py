"""The results manifest (`bratsflow manifest` / `verify`) and the per-subject provenance."""

import json
import time

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bratsflow import manifest, provenance
from bratsflow.cli import main
from bratsflow.cohort import load_sheet
from bratsflow.errors import InputError
from bratsflow.ingest import ingest_subject
from bratsflow.io import save_image, save_json, save_probabilities, save_table, sha256_file
from bratsflow.step import RECORD_VERSION
from conftest import TINY_SPACING_RANGE_MM

LISTED = ["cohort/ingest.tsv", "cohort/table.parquet", "s1/coregister/t1.nii.gz",
          "s1/coregister/transforms/t1-to-atlas.mat", "s1/segment/m_probabilities.npz", "s1/skullstrip/brain_mask.nii",
          "s1/report/report.html", "s1/report/qc.png"]
LEFT_OUT = ["s1/logs/ingest.log", "s1/benchmarks/ingest.tsv", "cohort/logs/manifest.log",
            "cohort/benchmarks/ingest_table.tsv", "s1/coregister/coregister.json", "s1/provenance.json",
            "s1/coregister/.t1.tmp123.nii.gz", "s1/coregister/transforms/.snakemake_timestamp"]


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    rng = np.random.default_rng(0)
    image = nib.Nifti1Image(rng.random((6, 7, 8)).astype(np.float32), np.eye(4))
    save_image(image, root / "s1/coregister/t1.nii.gz")
    save_image(nib.Nifti1Image(np.ones((6, 7, 8), np.uint8), np.eye(4)), root / "s1/skullstrip/brain_mask.nii")
    half = np.full((6, 7, 8), 0.5, np.float32)
    save_probabilities({"WT": half, "TC": half, "ET": half}, root / "s1/segment/m_probabilities.npz")
    table = pd.DataFrame({"subject": ["s1"], "value": [1.5]})
    save_table(table, root / "cohort/ingest.tsv")
    save_table(table, root / "cohort/table.parquet")
    (root / "s1/coregister/transforms").mkdir()
    (root / "s1/coregister/transforms/t1-to-atlas.mat").write_bytes(b"\x00matrix")
    (root / "s1/report").mkdir()
    (root / "s1/report/report.html").write_text("<html></html>\n")
    (root / "s1/report/qc.png").write_bytes(b"\x89PNG")
    for name in LEFT_OUT:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("run-specific\n")
    return root


def test_manifest_lists_results_and_leaves_out_run_specific_files(results, capsys):
    assert main(["manifest", str(results)]) == 0
    assert capsys.readouterr().out.strip() == f"{results / 'manifest.tsv'}: {len(LISTED)} files"
    table = pd.read_csv(results / "manifest.tsv", sep="\t")
    assert list(table.columns) == ["path", "sha256", "bytes"]
    assert list(table["path"]) == sorted(LISTED)
    for row in table.itertuples():
        assert row.sha256 == sha256_file(results / row.path)
        assert row.bytes == (results / row.path).stat().st_size
    # Written again over the same files, byte for byte the same (no timestamps, no order from the disk).
    before = (results / "manifest.tsv").read_bytes()
    manifest.write(results)
    assert (results / "manifest.tsv").read_bytes() == before


def test_results_written_later_are_byte_for_byte_the_same(results):
    """No writer stamps the time into a file (gzip and zip headers keep seconds, in steps of two for zip)."""
    files = ["cohort/table.parquet", "cohort/ingest.tsv", "s1/segment/m_probabilities.npz", "s1/coregister/t1.nii.gz"]
    first = {name: (results / name).read_bytes() for name in files}
    table = pd.read_parquet(results / "cohort/table.parquet")
    image = nib.load(results / "s1/coregister/t1.nii.gz")
    half = np.full((6, 7, 8), 0.5, np.float32)
    time.sleep(2.1)
    save_table(table, results / "cohort/table.parquet")
    save_table(table, results / "cohort/ingest.tsv")
    save_probabilities({"WT": half, "TC": half, "ET": half}, results / "s1/segment/m_probabilities.npz")
    save_image(nib.Nifti1Image(np.asarray(image.dataobj), image.affine, image.header),
               results / "s1/coregister/t1.nii.gz")
    assert {name: (results / name).read_bytes() for name in files} == first


def test_verify_reports_missing_changed_and_unlisted_files(results, capsys):
    manifest.write(results)
    assert main(["verify", str(results)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{len(LISTED)} files checked against "
                                                    f"{results / 'manifest.tsv'}: all match")
    # Run-specific files may change freely.
    (results / "s1/logs/ingest.log").write_text("another run\n")
    (results / "s1/coregister/coregister.json").write_text("{}\n")
    assert main(["verify", str(results)]) == 0
    capsys.readouterr()

    (results / "cohort/ingest.tsv").unlink()
    with open(results / "s1/coregister/transforms/t1-to-atlas.mat", "r+b") as handle:
        handle.write(b"\x01")  # same size, other content
    save_image(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), results / "s2/ingest/t1.nii.gz")
    assert main(["verify", str(results)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == ["missing: cohort/ingest.tsv", "changed: s1/coregister/transforms/t1-to-atlas.mat",
                   "unlisted: s2/ingest/t1.nii.gz", f"{len(LISTED) - 1} files checked against "
                   f"{results / 'manifest.tsv'}: 1 missing, 1 changed, 1 unlisted"]


def test_verify_against_another_runs_manifest(results, tmp_path, capsys):
    manifest.write(results)
    other = tmp_path / "other"
    for name in LISTED:
        (other / name).parent.mkdir(parents=True, exist_ok=True)
        (other / name).write_bytes((results / name).read_bytes())
    assert main(["verify", str(other), "--manifest", str(results / "manifest.tsv")]) == 0
    save_image(nib.Nifti1Image(np.zeros((6, 7, 8), np.float32), np.eye(4)), other / "s1/coregister/t1.nii.gz")
    assert main(["verify", str(other), "--manifest", str(results / "manifest.tsv")]) == 1
    assert "changed: s1/coregister/t1.nii.gz" in capsys.readouterr().out


def test_verify_without_or_with_a_broken_manifest(results, capsys):
    assert main(["verify", str(results)]) == 2
    assert "manifest.tsv: no manifest: write one with `bratsflow manifest RESULTS`" in capsys.readouterr().err
    (results / "manifest.tsv").write_text("path\tsha256\tbytes\ns1/a.nii.gz\tnot-a-checksum\t12\n")
    with pytest.raises(InputError, match="line 2 is not 'path, SHA-256, bytes'"):
        manifest.verify(results)
    with pytest.raises(InputError, match="results folder does not exist"):
        manifest.write(results / "nope")


def test_provenance_gathers_the_subjects_records(tiny_cohort, tmp_path, capsys):
    subject = load_sheet(tiny_cohort / "subjects.tsv")[0]
    sid = subject.subject_id
    folder = tmp_path / sid
    ingest_subject(subject, folder / "ingest", spacing_range_mm=TINY_SPACING_RANGE_MM)
    env = provenance.environment()
    # A member's record as the segment step writes it (its own test runs the real model), from an older bratsflow.
    model = {"model": "/models/m", "device": "cpu", "checkpoints": {"all": "ab" * 32}}
    member = {"step": "segment", "record_version": RECORD_VERSION, "subject": sid, "parameters": {"name": "m"},
              "inputs": {}, "outputs": {}, "models": {"m": model}, "atlases": {},
              "method": {**model, "channels": ["t1"], "regions": False},
              "timings_s": {"load": 1.0, "predict": 2.5}, "environment": {**env, "bratsflow": "0.0.9"}}
    save_json(member, folder / "segment" / "m.json")
    out = folder / "provenance.json"
    containers = {"ingest": "docker://example/ingest:1"}
    assert main(["provenance", "--subject", sid, "--out", str(out), "--containers", json.dumps(containers),
                 str(folder / "ingest" / "ingest.json"), str(folder / "segment" / "m.json")]) == 0
    gathered = json.loads(out.read_text())
    assert set(gathered["steps"]) == {"ingest/ingest", "segment/m"}
    assert gathered["inputs"]["t1"]["sha256"] == sha256_file(subject.image("t1"))
    assert gathered["models"] == {"m": model}
    assert gathered["containers"] == {"images": containers, "used": False}
    assert gathered["timings_s"]["segment/m"] == 3.5
    software = gathered["software"]
    assert software["bratsflow"] == {env["bratsflow"]: ["ingest/ingest"], "0.0.9": ["segment/m"]}
    assert software["numpy"] == env["packages"]["numpy"]
    assert software["bratsflow_git_commit"] == env["bratsflow_git_commit"]

    old = {key: value for key, value in member.items() if key not in ("inputs", "outputs")}
    save_json(old, folder / "segment" / "m.json")
    assert main(["provenance", "--subject", sid, "--out", str(out), str(folder / "segment" / "m.json")]) == 2
    assert "not a step record of this bratsflow: keys ['inputs', 'outputs'] are missing" in capsys.readouterr().err

    save_json({**member, "subject": "other"}, folder / "segment" / "m.json")
    assert main(["provenance", "--subject", sid, "--out", str(out), str(folder / "segment" / "m.json")]) == 2
    assert f"subject {sid}, file {folder / 'segment' / 'm.json'}: the record belongs to subject other" in \
        capsys.readouterr().err
