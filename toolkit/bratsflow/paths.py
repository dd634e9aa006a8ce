"""The results layout, RESULTS/<subject>/<step>/… and RESULTS/cohort/…: the only place that spells it."""

from __future__ import annotations

from pathlib import Path

COHORT = "cohort"
# Per-subject (and cohort) folders of run-specific files: job logs and Snakemake's timing benchmarks.
LOGS = "logs"
BENCHMARKS = "benchmarks"
MANIFEST = "manifest.tsv"


def step_dir(results: str | Path, subject: str, step: str) -> Path:
    return Path(results) / subject / step


def step_image(results: str | Path, subject: str, step: str, modality: str) -> Path:
    return step_dir(results, subject, step) / f"{modality}.nii.gz"


def step_record(results: str | Path, subject: str, step: str) -> Path:
    return step_dir(results, subject, step) / f"{step}.json"


def log_file(results: str | Path, subject: str, step: str) -> Path:
    return Path(results) / subject / LOGS / f"{step}.log"


def benchmark_file(results: str | Path, subject: str, step: str) -> Path:
    return Path(results) / subject / BENCHMARKS / f"{step}.tsv"


def cohort_file(results: str | Path, name: str) -> Path:
    return Path(results) / COHORT / name


def segment_member(results: str | Path, subject: str, member: str) -> Path:
    """One ensemble member's label map."""
    return step_dir(results, subject, "segment") / f"{member}.nii.gz"


def segment_record(results: str | Path, subject: str, member: str) -> Path:
    """One ensemble member's provenance record."""
    return step_dir(results, subject, "segment") / f"{member}.json"


def segment_probabilities(results: str | Path, subject: str, member: str) -> Path:
    """One ensemble member's probability maps (format: bratsflow.io.save_probabilities)."""
    return step_dir(results, subject, "segment") / f"{member}_probabilities.npz"


def fused_segmentation(results: str | Path, subject: str) -> Path:
    return step_dir(results, subject, "fuse") / "segmentation.nii.gz"


def native_file(results: str | Path, subject: str, step: str, name: str, space: str) -> Path:
    """An atlas-space result mapped back into a modality's native space."""
    return Path(results) / subject / "native" / f"{step}-{name}_space-{space}.nii.gz"


def is_label_map(step: str, name: str) -> bool:
    """Segmentations and masks move between spaces with label-aware interpolation."""
    return step in ("segment", "fuse") or name.endswith("mask")


def brain_mask(results: str | Path, subject: str) -> Path:
    """The skull-stripping step's brain mask, in atlas space; the skull-stripped images lie beside it."""
    return step_dir(results, subject, "skullstrip") / "brain_mask.nii.gz"


def radiomics_features(results: str | Path, subject: str, suffix: str = ".parquet") -> Path:
    """A subject's tidy feature table (`.parquet` or `.csv`)."""
    return step_dir(results, subject, "radiomics") / f"features{suffix}"


def cohort_features(results: str | Path, wide: bool = False) -> Path:
    """The cohort's radiomics tables: long (Parquet, one row per feature) or wide (CSV, one row per subject)."""
    return cohort_file(results, "features_wide.csv" if wide else "features.parquet")


def provenance_file(results: str | Path, subject: str) -> Path:
    """Every step's record of one subject, gathered (bratsflow provenance)."""
    return Path(results) / subject / "provenance.json"


def manifest_file(results: str | Path) -> Path:
    """Checksums of the results that must be reproducible (bratsflow manifest / verify)."""
    return Path(results) / MANIFEST
