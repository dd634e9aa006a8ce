"""A results folder for the cohort report, made cheaply: each subject's report record from small synthetic label
maps (bratsflow.qc.report_subject), a few small PNG figures, and for some a provenance.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bratsflow import paths
from bratsflow.io import label_image, save_image, save_probabilities, save_table
from bratsflow.provenance import gather
from bratsflow.qc import cohort_tables, report_subject

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
SHAPE = (16, 16, 16)


def _cube(labels: np.ndarray, corner: int, size: int, value: int) -> np.ndarray:
    labels[corner:corner + size, corner:corner + size, corner:corner + size] = value
    return labels


def write_subject(results: Path, subject: str, size: int, *, disagree: bool = False, enhancing: bool = True,
                  figures: tuple[str, ...] = ("members", "overview"), provenance: bool = False,
                  truth: bool = False, probabilities: bool = False) -> dict:
    """A subject whose whole tumour is a size³ cube (ET a smaller cube inside it unless `enhancing` is False);
    `disagree`: the third member sees only the core, so the members' agreement is low; `truth`: the fused map is
    also the ground truth; `probabilities`: member a writes probabilities, 0.5 over its tumour (1 bit)."""
    inputs = results.parent / "inputs" / subject
    inputs.mkdir(parents=True, exist_ok=True)
    fused = _cube(np.zeros(SHAPE, np.uint8), 3, size, 2)
    if enhancing:
        _cube(fused, 4, max(size - 2, 1), 3)
    third = _cube(np.zeros(SHAPE, np.uint8), 4, max(size - 2, 1), 2) if disagree else fused
    members = {name: save_image(label_image(labels, AFFINE), inputs / f"{name}.nii.gz")
               for name, labels in (("a", fused), ("b", fused), ("c", third))}
    segmentation = save_image(label_image(fused, AFFINE), inputs / "fused.nii.gz")
    brain = np.zeros(SHAPE, np.uint8)
    brain[1:15, 1:15, 1:15] = 1
    brain_mask = save_image(label_image(brain, AFFINE), inputs / "brain.nii.gz")
    folder = paths.step_dir(results, subject, "report")
    unsure = {key: np.where(fused > 0, 0.5, 0.0).astype(np.float16) for key in ("WT", "TC", "ET")}
    record = report_subject(segmentation, members, brain_mask, folder, subject=subject,
                            truth=segmentation if truth else None,
                            probabilities={"a": save_probabilities(unsure, inputs / "a_probabilities.npz")}
                            if probabilities else None)
    for index, name in enumerate(figures):
        write_png(folder / f"{name}.png", index)
    if provenance:
        import json

        paths.provenance_file(results, subject).write_text(
            json.dumps(gather(subject, [paths.step_record(results, subject, "report")],
                              containers={"report": "docker://example.org/bratsflow-fuse:0.1.0"})))
    return record


def write_png(path: Path, seed: int) -> Path:
    """A small, valid PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, np.random.default_rng(seed).random((40, 60)), cmap="gray", metadata={"Software": None})
    return path


def write_cohort_tables(results: Path, subjects: list[str]) -> None:
    """The report step's cohort tables of `subjects`, as rule report_cohort writes them."""
    volumes, qc = cohort_tables([paths.step_record(results, s, "report") for s in subjects])
    save_table(volumes, paths.cohort_volumes(results))
    save_table(qc, paths.cohort_qc(results))
