"""The results layout, RESULTS/<subject>/<step>/… and RESULTS/cohort/…: the only place that spells it."""

from __future__ import annotations

from pathlib import Path

COHORT = "cohort"


def step_dir(results: str | Path, subject: str, step: str) -> Path:
    return Path(results) / subject / step


def step_image(results: str | Path, subject: str, step: str, modality: str) -> Path:
    return step_dir(results, subject, step) / f"{modality}.nii.gz"


def step_record(results: str | Path, subject: str, step: str) -> Path:
    return step_dir(results, subject, step) / f"{step}.json"


def log_file(results: str | Path, subject: str, step: str) -> Path:
    return Path(results) / subject / "logs" / f"{step}.log"


def benchmark_file(results: str | Path, subject: str, step: str) -> Path:
    return Path(results) / subject / "benchmarks" / f"{step}.tsv"


def cohort_file(results: str | Path, name: str) -> Path:
    return Path(results) / COHORT / name
