"""Cohort runs that are reproducible, resumable and safe, on the tiny (3 mm) cohort.

A clean run of two subjects is the reference: a second clean run must reproduce its manifest bit for bit, a run
killed with SIGKILL must resume to the same results, and the same results folder then takes a cohort full of bad
inputs under --keep-going. Each run has its own working folder (Snakemake's .snakemake/: locks, incomplete
markers), HOME, XDG_CACHE_HOME and TMPDIR, so the checks see everything a run writes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from bratsflow import manifest
from bratsflow.cohort import MODALITIES
from bratsflow.io import reorient
from bratsflow.paths import bids_image_path
from dicom_helpers import write_dicom_series
from workflow_helpers import job_counts

REPO = Path(__file__).resolve().parents[2]
GOOD = ("sub-001", "sub-002")
pytestmark = pytest.mark.workflow


@dataclass
class Workspace:
    root: Path

    def __post_init__(self):
        for folder in (self.results.parent, self.workdir, self.home, self.cache, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        # The Snakefile's default configfile is found relative to the working folder.
        (self.workdir / "config").symlink_to(REPO / "config")

    results = property(lambda self: self.root / "out" / "results")
    workdir = property(lambda self: self.root / "work")
    home = property(lambda self: self.root / "home")
    cache = property(lambda self: self.root / "cache")
    tmp = property(lambda self: self.root / "tmp")
    sheet = property(lambda self: self.root / "subjects.tsv")
    config = property(lambda self: self.root / "config.yaml")

    def write(self, rows: list[list[str]], tiny_atlas) -> None:
        self.sheet.write_text("\n".join("\t".join(row) for row in [["subject_id", *MODALITIES], *rows]) + "\n")
        self.config.write_text(yaml.safe_dump({
            "samples": str(self.sheet),
            "results": str(self.results),
            "ingest": {"spacing_range_mm": [0.2, 16.0]},
            "coregister": {"atlas": str(tiny_atlas[0]), "atlas_mask": str(tiny_atlas[1])},
            # Not the default demo ensemble (1 mm models, relative to the repository): these runs stop at
            # skull stripping.
            "segment": {"members": []},
        }))

    def command(self, *extra: str) -> list[str]:
        snakemake = shutil.which("snakemake", path=self.env()["PATH"])
        assert snakemake, "snakemake is not installed"
        return [snakemake, "-s", str(REPO / "Snakefile"), "-d", str(self.workdir), "--cores", "2",
                *extra, "--configfile", str(self.config)]

    def env(self) -> dict[str, str]:
        # The rules call the `bratsflow` command: this interpreter's scripts come first on the PATH.
        return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "HOME": str(self.home), "XDG_CACHE_HOME": str(self.cache), "TMPDIR": str(self.tmp)}

    def run(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(self.command(*extra), capture_output=True, text=True, env=self.env())
        if check and result.returncode != 0:
            raise AssertionError(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result


def good_rows(cohort: Path, subjects=GOOD) -> list[list[str]]:
    return [[sid, *(str(bids_image_path(cohort, sid, m)) for m in MODALITIES)] for sid in subjects]


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file below `folder` (hidden ones too): content hash and modification time."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tiny_cohort, tiny_atlas, tmp_path_factory):
    """One clean run of two subjects; its manifest is kept aside before later tests reuse the folder."""
    ws = Workspace(tmp_path_factory.mktemp("reference"))
    ws.write(good_rows(tiny_cohort), tiny_atlas)
    inputs_before = snapshot(tiny_cohort)
    start = time.perf_counter()
    ws.run()
    seconds = time.perf_counter() - start
    kept = ws.root / "reference-manifest.tsv"
    shutil.copyfile(ws.results / "manifest.tsv", kept)
    return {"ws": ws, "manifest": kept, "seconds": seconds, "inputs_before": inputs_before}


def test_a_clean_run_writes_only_results_and_caches(reference, tiny_cohort):
    ws = reference["ws"]
    assert snapshot(tiny_cohort) == reference["inputs_before"], "inputs are never modified, nothing is added"
    assert not any(ws.tmp.iterdir()), "temporary files are removed"
    assert sorted(p.name for p in ws.workdir.iterdir()) == [".snakemake", "config"]
    # User-level writes go to the cache folder (Snakemake's source cache, matplotlib's font list); at most an
    # empty configuration folder appears in HOME (matplotlib makes one when ANTsPy imports it).
    assert not [p for p in ws.home.rglob("*") if p.is_file()]
    assert [p.name for p in ws.results.parent.iterdir()] == ["results"]
    report = manifest.verify(ws.results)
    assert report.ok and report.checked == len(manifest.read(reference["manifest"]))
    for sid in GOOD:
        gathered = yaml.safe_load((ws.results / sid / "provenance.json").read_text())
        # Every record of the subject is gathered: the steps up to skull stripping (no members), and any other
        # step the registry adds.
        records = {f"{p.parent.name}/{p.stem}" for p in (ws.results / sid).glob("*/*.json")}
        assert set(gathered["steps"]) == records
        assert {"ingest/ingest", "coregister/coregister", "skullstrip/skullstrip"} <= records
        for modality in MODALITIES:
            source = bids_image_path(tiny_cohort, sid, modality)
            assert gathered["inputs"][modality] == {"path": str(source), "format": "nifti",
                                                    "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
        assert gathered["software"]["antspyx"] and gathered["software"]["bratsflow_git_commit"] is not None
        assert gathered["containers"]["used"] is False and "coregister" in gathered["containers"]["images"]


def test_a_bids_tree_ingests_to_the_same_images(reference, tiny_cohort, tiny_atlas, tmp_path):
    """The same subjects read from the BIDS tree instead of a sheet ingest to byte-identical images (every later
    step is bitwise reproducible from them: the killed-and-resumed test); a rerun has nothing to do."""
    ws = Workspace(tmp_path)
    ws.write([], tiny_atlas)
    config = yaml.safe_load(ws.config.read_text())
    ws.config.write_text(yaml.safe_dump({**config, "samples": "", "bids": str(tiny_cohort)}))
    target = str(ws.results / "cohort" / "ingest.tsv")
    ws.run(target)
    for sid in GOOD:
        for name in MODALITIES:
            ingested = ws.results / sid / "ingest" / f"{name}.nii.gz"
            assert ingested.read_bytes() == (reference["ws"].results / sid / "ingest" / f"{name}.nii.gz").read_bytes()
    assert len(ws.results.joinpath("cohort", "ingest.tsv").read_text().splitlines()) == 1 + 3 * 4
    assert "Nothing to be done" in (lambda r: r.stdout + r.stderr)(ws.run(target))


def _process_group(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def test_a_killed_run_resumes_to_the_same_results(reference, tiny_cohort, tiny_atlas, tmp_path):
    """Also the test that two runs from scratch are bitwise identical: the killed run computed its ingest outputs,
    and the resumed run everything after them, in a second folder; all must equal the reference run's."""
    ws = Workspace(tmp_path)
    ws.write(good_rows(tiny_cohort), tiny_atlas)
    start = time.perf_counter()
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(ws.command(), env=ws.env(), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            while not list(ws.results.glob("*/coregister/*.nii.gz")):
                assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
                time.sleep(0.1)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    killed_after = time.perf_counter() - start
    for _ in range(50):
        if not _process_group(process.pid):
            break
        time.sleep(0.1)
    assert not _process_group(process.pid), "the whole process group is gone"
    assert not (ws.results / "manifest.tsv").exists(), "killed in the middle"
    ingested = {p: p.stat().st_mtime_ns for p in ws.results.glob("*/ingest/*")}
    assert len(ingested) == 2 * 5

    # The kill left half-written outputs (Snakemake marks them incomplete) and Snakemake's lock behind.
    refused = ws.run(check=False)
    assert refused.returncode != 0 and "IncompleteFilesException" in refused.stderr
    refused = ws.run("--rerun-incomplete", check=False)
    assert refused.returncode != 0 and "It can be removed with the --unlock argument" in refused.stderr
    resume_start = time.perf_counter()
    ws.run("--unlock")
    resumed = ws.run("--rerun-incomplete")
    resume_seconds = time.perf_counter() - resume_start
    jobs = job_counts(resumed.stdout + resumed.stderr)
    assert "ingest" not in jobs, "finished jobs are not redone"
    assert jobs["coregister"] == 2 and jobs["manifest"] == 1
    assert {p: p.stat().st_mtime_ns for p in ingested} == ingested
    report = manifest.verify(ws.results, reference["manifest"])
    assert report.ok, report.lines()
    assert (ws.results / "manifest.tsv").read_bytes() == reference["manifest"].read_bytes()
    kinds = {Path(p).name.split(".", 1)[1] for p in manifest.read(reference["manifest"])}
    assert kinds == {"nii.gz", "mat", "tsv"}
    print(f"\nresume: killed after {killed_after:.1f} s, unlock + --rerun-incomplete took {resume_seconds:.1f} s "
          f"({jobs}); an uninterrupted run took {reference['seconds']:.1f} s; {report.checked} files identical")


def _bad_inputs(cohort: Path, folder: Path, sheet: Path) -> tuple[list[list[str]], dict[str, str], dict[str, str]]:
    """Subjects that each carry one kind of bad input (the other images are sub-003's good ones): their sample
    sheet rows, the message each one's failing job must start with, and what else it must say for some."""
    folder.mkdir()
    good = {m: bids_image_path(cohort, "sub-003", m) for m in MODALITIES}
    flair = nib.load(good["flair"])
    data = np.asarray(flair.dataobj)
    rows, expected, also_expected = [], {}, {}

    def case(sid: str, image: str | Path, message: str, modality: str = "flair") -> None:
        rows.append([sid, *(str(image) if m == modality else str(good[m]) for m in MODALITIES)])
        expected[sid] = message

    def saved(name: str, img) -> Path:
        nib.save(img, folder / name)
        return folder / name

    case("bad-missing", folder / "absent.nii.gz", f"FLAIR {folder / 'absent.nii.gz'}: file does not exist")
    # Every problem of a subject in one message, not the first one only.
    truncated = folder / "truncated.nii.gz"
    truncated.write_bytes(good["t2"].read_bytes()[:4000])
    rows.append(["bad-two-images", str(good["t1"]), str(good["t1c"]), str(truncated), str(folder / "absent.nii.gz")])
    expected["bad-two-images"] = f"T2 {truncated}: corrupt or truncated gzip stream ("
    also_expected["bad-two-images"] = f"; FLAIR {folder / 'absent.nii.gz'}: file does not exist"
    case("bad-empty-cell", "", "T1c: no T1c image: column t1c of row ", modality="t1c")
    case("bad-gzip", truncated, f"T2 {truncated}: corrupt or truncated gzip stream (", modality="t2")
    plain = saved("plain.nii", flair)
    plain.write_bytes(plain.read_bytes()[: plain.stat().st_size // 2])
    case("bad-short-nii", plain, f"FLAIR {plain}: cannot read image data (Expected ")
    garbage = folder / "garbage.nii"
    garbage.write_text("subject_id\tt1\n" * 40)
    case("bad-not-nifti", garbage, f"FLAIR {garbage}: not a readable NIfTI image (")
    slab = saved("slice.nii.gz", nib.Nifti1Image(data[:, :, :1], flair.affine))
    case("bad-2d", slab, f"FLAIR {slab}: a 2-D image (shape ({data.shape[0]}, {data.shape[1]}, 1))")
    series = saved("series.nii.gz", nib.Nifti1Image(np.stack([data, data], axis=3), flair.affine))
    case("bad-4d", series, f"FLAIR {series}: expected a 3-D image, got 4-D with shape {(*data.shape, 2)}")
    zero = saved("zero.nii.gz", nib.Nifti1Image(np.zeros_like(data), flair.affine))
    case("bad-all-zero", zero, f"FLAIR {zero}: all voxels are zero (empty image)")
    values = data.astype(np.float32)
    values[5:7, 5:7, 5] = np.nan
    values[8, 8, 8] = np.inf
    nan = saved("nan.nii.gz", nib.Nifti1Image(values, flair.affine))
    case("bad-nan", nan, f"FLAIR {nan}: 5 voxels are NaN or infinite")
    thick = flair.affine @ np.diag([1.0, 1.0, 50.0 / flair.header.get_zooms()[2], 1.0])
    spaced = saved("thick.nii.gz", nib.Nifti1Image(data, thick))
    shown = "×".join(f"{s:g}" for s in np.sqrt((thick[:3, :3] ** 2).sum(axis=0)))
    case("bad-spacing", spaced, f"FLAIR {spaced}: implausible voxel spacing {shown} mm (allowed 0.2–16 mm per axis)")
    zero_pixdim = saved("pixdim.nii", flair)
    header = bytearray(zero_pixdim.read_bytes())
    header[76 + 4 * 3: 76 + 4 * 4] = np.float32(0).tobytes()  # pixdim[3], the third axis' spacing
    zero_pixdim.write_bytes(bytes(header))
    case("bad-zero-spacing", zero_pixdim, f"FLAIR {zero_pixdim}: voxel spacing is 0 in the header (pixdim) along "
                                          f"axis [2]")
    mirrored = nib.Nifti1Image(data, flair.affine)
    mirrored.set_qform(np.diag([-1.0, 1.0, 1.0, 1.0]) @ flair.affine, code=1)
    qform = saved("qform.nii.gz", mirrored)
    codes = ["".join(nib.aff2axcodes(a)) for a in (mirrored.get_qform(), flair.affine)]
    case("bad-qform", qform, f"FLAIR {qform}: the header's qform ({codes[0]}) and sform ({codes[1]}) disagree")
    case("bad-same-image", good["t1"], f"T1 and T1c are the same image ({good['t1']}, {good['t1']})",
         modality="t1c")
    dicom = folder / "dicom"
    write_dicom_series(flair, dicom, series_number=3, description="FLAIR")
    write_dicom_series(flair, dicom, series_number=4, description="FLAIR_repeat")
    case("bad-dicom", dicom, f"FLAIR {dicom}: the folder holds 2 image series (")
    # Upside down inside a correct header: ingest cannot tell, the registration's similarity check does.
    upright = reorient(flair, "RAS")
    flipped = saved("flipped.nii.gz", nib.Nifti1Image(np.asarray(upright.dataobj)[:, :, ::-1], upright.affine))
    case("bad-flipped", flipped, "FLAIR, file {results}/bad-flipped/ingest/flair.nii.gz: registration to t1c "
                                 "failed its checks")
    return rows, expected, also_expected


def test_bad_inputs_fail_alone_with_clear_messages_and_good_results_stay(reference, tiny_cohort, tiny_atlas):
    """The reference folder grows by one good subject and one subject per kind of bad input, under --keep-going."""
    ws = reference["ws"]
    before = snapshot(ws.results)
    rows, expected, also_expected = _bad_inputs(tiny_cohort, ws.root / "bad", ws.sheet)
    ws.write(good_rows(tiny_cohort, (*GOOD, "sub-003")) + rows, tiny_atlas)
    result = ws.run("--keep-going", check=False)
    assert result.returncode != 0
    results = ws.results

    # The new good subject ran to the end beside the failing ones.
    assert (results / "sub-003" / "provenance.json").is_file()
    assert (results / "sub-003" / "skullstrip" / "brain_mask.nii.gz").is_file()
    for sid, message in expected.items():
        step = "coregister" if sid == "bad-flipped" else "ingest"
        errors = [line for line in (results / sid / "logs" / f"{step}.log").read_text().splitlines()
                  if line.startswith(f"bratsflow {step}: error: ")]
        prefix = f"bratsflow {step}: error: subject {sid}" + (", " if step == "coregister" else ": ")
        assert len(errors) == 1 and errors[0].startswith(prefix + message.format(results=results)), (sid, errors)
        assert also_expected.get(sid, "") in errors[0], (sid, errors)
        assert not list((results / sid).glob(f"{step}/*")), f"{sid}: the failed step leaves no output"
    assert len(expected) == 16

    # Nothing the reference run wrote was touched (same bytes, same times), and the only new results are those
    # of the new subject and the flipped subject's ingest.
    after = snapshot(results)
    assert {p: after[p] for p in before} == before
    report = manifest.verify(results, reference["manifest"])
    assert not report.missing and not report.changed
    assert {p.split("/")[0] for p in report.unlisted} == {"sub-003", "bad-flipped"}
    assert all(p.startswith("bad-flipped/ingest/") for p in report.unlisted if p.startswith("bad-flipped"))
