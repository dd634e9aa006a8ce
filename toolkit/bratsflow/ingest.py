"""Ingest: validate each subject's four images, convert DICOM series, reorient, write NIfTI with checksums."""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib

from .availability import DEFAULT_POLICY, FAIL_HINT, Need, absent, unmet
from .dicom_study import DEFAULT_TIE, Series, StudyChoice, choose_study, files_sha256, link_series
from .errors import BratsflowError, InputError
from .io import axcodes, check_image, load_image, reorient, sha256_file, spacing
from .modalities import MODALITY_NAMES
from .paths import StepFiles
from .step import StepRun, read_record

if TYPE_CHECKING:
    # Only named in annotations: cohort loads pandas and jsonschema, which ingest itself does not need.
    import pandas as pd

    from .cohort import Subject

log = logging.getLogger(__name__)

DEFAULT_ORIENTATION = "RAS"
DEFAULT_SPACING_RANGE_MM = (0.2, 8.0)
# The config keys whose defaults these are (tests/test_defaults.py checks config.yaml and the schema agree).
CONFIG_DEFAULTS = {"ingest.orientation": DEFAULT_ORIENTATION, "ingest.spacing_range_mm": DEFAULT_SPACING_RANGE_MM}


def dcm2niix_binary() -> str:
    import dcm2niix

    return shutil.which("dcm2niix") or dcm2niix.bin


def folder_sha256(folder: Path) -> str:
    """A checksum of a DICOM folder: file names and contents, in sorted order."""
    return files_sha256([p for p in folder.rglob("*") if p.is_file()], folder)


def convert_dicom(folder: Path, workdir: Path, *, subject: str | None = None,
                  modality: str | None = None) -> Path:
    """Convert a folder holding exactly one DICOM series to NIfTI with dcm2niix; return the NIfTI path."""
    where = dict(subject=subject, modality=modality, file=folder)
    if not any(p.is_file() for p in folder.rglob("*")):
        raise InputError("DICOM folder is empty", **where)
    # A fresh folder per conversion: leftovers of an earlier run would count as extra series.
    workdir.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix="dcm2niix-", dir=workdir))
    # -g i: ignore a user's ~/.dcm2nii.ini so conversions are reproducible; -ba y: strip identifiers.
    command = [dcm2niix_binary(), "-g", "i", "-z", "y", "-b", "y", "-ba", "y", "-f", "%s_%d", "-w", "2",
               "-o", str(target), str(folder)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    outputs = sorted(target.glob("*.nii.gz"))
    if result.returncode != 0 and not outputs:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise InputError(f"dcm2niix could not convert the folder (exit {result.returncode}: {' | '.join(tail)})",
                         **where)
    if not outputs:
        raise InputError("no DICOM image series found in the folder", **where)
    if len(outputs) > 1:
        names = ", ".join(p.name.removesuffix(".nii.gz") for p in outputs)
        raise InputError(f"the folder holds {len(outputs)} image series ({names}); give one series per modality",
                         **where)
    return outputs[0]


def _read_source(path: Path, workdir: Path, subject: str, modality: str) -> tuple[nib.Nifti1Image, dict]:
    if path.is_dir():
        nifti = convert_dicom(path, workdir / modality, subject=subject, modality=modality)
        source = {"path": str(path), "format": "dicom", "sha256": folder_sha256(path),
                  "converter": "dcm2niix"}
    else:
        nifti = path
        source = {"path": str(path), "format": "nifti"}
    img = load_image(nifti, subject=subject, modality=modality)
    if source["format"] == "nifti":
        source["sha256"] = sha256_file(path)
    return img, source


def _read_series(choice: StudyChoice, item: Series, workdir: Path, subject: str,
                 modality: str) -> tuple[nib.Nifti1Image, dict]:
    folder = link_series(item, workdir / modality / "series")
    nifti = convert_dicom(folder, workdir / modality, subject=subject, modality=modality)
    source = {"path": str(choice.folder), "format": "dicom", "series_uid": item.uid, "series_number": item.number,
              "series_description": item.description, "files": len(item.files),
              "sha256": files_sha256([path for _, path in item.files], choice.folder), "converter": "dcm2niix"}
    return load_image(nifti, subject=subject, modality=modality), source


def check_needs(subject: Subject, modalities: tuple[str, ...], needs: tuple[Need, ...]) -> None:
    """Refuse a subject that lacks what a later step cannot do without, naming what is missing and why."""
    failed = unmet(modalities, needs)
    if failed:
        missing = "; ".join(subject.problems[m] for m in absent(modalities))
        raise InputError(f"{', '.join(need.describe() for need in failed)} (missing_modalities: run-available "
                         f"still needs these): {missing}", subject=subject.subject_id)


def ingest_subject(subject: Subject, out_dir: str | Path, *, orientation: str = DEFAULT_ORIENTATION,
                   spacing_range_mm: tuple[float, float] = DEFAULT_SPACING_RANGE_MM, policy: str = DEFAULT_POLICY,
                   needs: tuple[Need, ...] = (), dicom_rules: str | Path | None = None,
                   dicom_tie: str = DEFAULT_TIE) -> dict:
    """Check the subject's images (all four, or under `run-available` those it has) first and write only when
    every one passes, so a bad subject leaves no partial output; every problem of the subject is reported at
    once. A subject with a DICOM study takes the modalities it has no image for from the study's series, sorted
    by the rules in `dicom_rules` (default: bratsflow's), `dicom_tie` deciding between equal candidates."""
    files = StepFiles(out_dir, "ingest")
    sid = subject.subject_id
    modalities = subject.modalities(policy)
    check_needs(subject, modalities, needs)
    run = StepRun("ingest", sid, files.record,
                  parameters={"orientation": orientation, "spacing_range_mm": list(spacing_range_mm),
                              "missing_modalities": policy})
    checked: dict[str, tuple[nib.Nifti1Image, dict]] = {}
    problems: list[str] = []
    study: StudyChoice | None = None
    from_study = tuple(m for m in modalities if subject.from_study(m))
    if from_study:
        try:
            with run.phase("sort_dicom_study"):
                study = choose_study(subject.study, subject=sid, rules_file=dicom_rules, tie=dicom_tie,
                                     study=subject.study_selector, overrides=subject.series, modalities=from_study)
        except BratsflowError as exc:
            names = ", ".join(MODALITY_NAMES[m] for m in from_study)
            problems.append(f"DICOM study for {names}: {_without_subject(exc)}")
    with tempfile.TemporaryDirectory(prefix=f"bratsflow-ingest-{sid}-") as tmp:
        for modality in modalities:
            if modality in subject.missing:
                problems.append(f"{MODALITY_NAMES[modality]}: {subject.problems[modality]} ({FAIL_HINT})")
                continue
            if modality in from_study and (study is None or modality in study.problems):
                if study is not None:
                    problems.append(f"{MODALITY_NAMES[modality]}: study {subject.study}: {study.problems[modality]}")
                continue
            try:
                with run.phase(f"read_{modality}"):
                    if modality in from_study:
                        img, source = _read_series(study, study.chosen[modality], Path(tmp), sid, modality)
                    else:
                        img, source = _read_source(Path(subject.image(modality)), Path(tmp), sid, modality)
                    img = check_image(img, spacing_range_mm=spacing_range_mm, subject=sid, modality=modality,
                                      file=source["path"])
                checked[modality] = (img, source)
            except BratsflowError as exc:
                problems.append(_without_subject(exc))
        problems += _repeated_sources(checked)
        # Found here, not hours later by the report.
        truth_problem = subject.truth_problem()
        if truth_problem:
            problems.append(truth_problem)
        if problems:
            raise InputError("; ".join(problems), subject=sid)

        images = {}
        for modality, (img, source) in checked.items():
            run.add_input(modality, source)
            with run.phase(f"write_{modality}"):
                run.save_image(modality, reorient(img, orientation), files.image(modality))
            images[modality] = {
                "source_orientation": axcodes(img),
                "source_shape": list(img.shape),
                "spacing_mm": list(spacing(img)),
                "dtype": str(img.get_data_dtype()),
                "output_orientation": orientation,
            }
    missing = absent(modalities)
    # The study's decisions sit beside the images only when a study was read, so other records keep their keys.
    extra = {"dicom_study": study.record()} if study is not None else {}
    record = run.finish(images=images, missing_modalities=missing, **extra)
    log.info("%s: ingested %s%s", sid, ", ".join(MODALITY_NAMES[m] for m in modalities),
             f"; missing {', '.join(MODALITY_NAMES[m] for m in missing)}" if missing else "")
    return record


def _repeated_sources(checked: dict[str, tuple[nib.Nifti1Image, dict]]) -> list[str]:
    """One image given for two modalities (a copy-and-paste slip in a sheet) registers perfectly onto itself, so
    nothing later would notice."""
    by_content: dict[str, list[str]] = {}
    for modality, (_, source) in checked.items():
        by_content.setdefault(source["sha256"], []).append(modality)
    problems = []
    for modalities in by_content.values():
        if len(modalities) > 1:
            names = " and ".join(MODALITY_NAMES[m] for m in modalities)
            files = ", ".join(checked[m][1]["path"] for m in modalities)
            problems.append(f"{names} are the same image ({files}): each modality needs its own acquisition")
    return problems


def _without_subject(exc: BratsflowError) -> str:
    parts = [MODALITY_NAMES.get(exc.modality, exc.modality)] if exc.modality else []
    if exc.file:
        parts.append(exc.file)
    return f"{' '.join(parts)}: {exc.reason}" if parts else exc.reason


def cohort_table(records: list[str | Path]) -> "pd.DataFrame":
    """One row per subject and modality from the subjects' ingest.json records."""
    import pandas as pd

    rows = []
    for path in records:
        record = read_record(path)
        for modality, image in record["images"].items():
            source = record["inputs"][modality]
            rows.append({
                "subject": record["subject"],
                "modality": modality,
                "source": source["path"],
                "format": source["format"],
                "source_sha256": source["sha256"],
                # A study is one folder for all four: its series tells them apart.
                "series_uid": source.get("series_uid", ""),
                "series_description": source.get("series_description", ""),
                "source_orientation": image["source_orientation"],
                "shape": "x".join(map(str, image["source_shape"])),
                "spacing_mm": "x".join(f"{s:.4g}" for s in image["spacing_mm"]),
                "output_sha256": record["outputs"][modality]["sha256"],
            })
    return pd.DataFrame(rows)
