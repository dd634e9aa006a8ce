"""Workflow runs shared between test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from bratsflow import paths
from bratsflow.modalities import MODALITIES
from test_dag import _tiny_ensemble, _write_config, snakemake

ENSEMBLE_SUBJECTS = ("sub-001", "sub-002")


@pytest.fixture(scope="session")
def tiny_ensemble_run(tiny_cohort, tiny_atlas, tiny_members, tmp_path_factory) -> Path:
    """Two tiny subjects through every step with the two-member tiny ensemble, run once with the local profile:
    the DAG test checks its outputs and the SLURM test compares its cluster run with it (its results folder)."""
    folder = tmp_path_factory.mktemp("tiny_ensemble")
    rows = [["subject_id", *MODALITIES]]
    rows += [[sid, *(str(paths.bids_image_path(tiny_cohort, sid, m)) for m in MODALITIES)] for sid in ENSEMBLE_SUBJECTS]
    sheet = folder / "subjects.tsv"
    sheet.write_text("\n".join("\t".join(row) for row in rows) + "\n")
    config = _write_config(folder, tiny_atlas, **_tiny_ensemble(tiny_members), samples=str(sheet))
    snakemake("--workflow-profile", "config/profiles/local", "--configfile", str(config), timeout=900)
    return folder / "results"
