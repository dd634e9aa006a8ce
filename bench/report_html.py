"""Time to build the cohort HTML report (bratsflow report-html: index, cohort plots, one page per subject) for a
synthetic cohort; prints the median of the repeats. Never asserts.

Each subject gets a real report record (bratsflow.qc.report_subject on a small label map with a random tumour),
its provenance gathered from that record, three small figures, and the cohort a radiomics table with the headline
features, so every part of the pages is drawn.

    python bench/report_html.py [--subjects 100] [--repeats 5] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bratsflow import paths  # noqa: E402
from bratsflow.cohort_report import HEADLINE_FEATURES, build  # noqa: E402
from bratsflow.io import label_image, save_image  # noqa: E402
from bratsflow.provenance import gather  # noqa: E402
from bratsflow.qc import report_subject  # noqa: E402

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
SHAPE = (24, 24, 24)
FIGURES = ("overview", "brain_mask", "registration", "members")


def subject_labels(rng: np.random.Generator) -> list[np.ndarray]:
    """Three members' label maps: a random box tumour with an enhancing core, the third member's shifted."""
    size, corner = int(rng.integers(2, 10)), int(rng.integers(3, 10))
    members = []
    for shift in (0, 0, int(rng.integers(0, 3))):
        labels = np.zeros(SHAPE, np.uint8)
        start = corner + shift
        labels[start:start + size, corner:corner + size, corner:corner + size] = 2
        labels[start + 1:start + size - 1, corner + 1:corner + size - 1, corner + 1:corner + size - 1] = 3
        members.append(labels)
    return members


def make_cohort(results: Path, subjects: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    inputs = results.parent / "inputs"
    brain = np.zeros(SHAPE, np.uint8)
    brain[1:-1, 1:-1, 1:-1] = 1
    brain_mask = save_image(label_image(brain, AFFINE), inputs / "brain.nii.gz")
    ids = [f"sub-{k:04d}" for k in range(1, subjects + 1)]
    for subject in ids:
        folder = inputs / subject
        members = {name: save_image(label_image(labels, AFFINE), folder / f"{name}.nii.gz")
                   for name, labels in zip("abc", subject_labels(rng))}
        report = paths.step_dir(results, subject, "report")
        report_subject(members["a"], members, brain_mask, report, subject=subject)
        for index, name in enumerate(FIGURES):
            plt.imsave(report / f"{name}.png", rng.random((60 + index, 90)), cmap="gray")
        paths.provenance_file(results, subject).write_text(
            json.dumps(gather(subject, [paths.step_record(results, subject, "report")])))
    table = pd.DataFrame({"subject": ids, "tumour": True,
                          **{column: rng.normal(1.0, 0.2, subjects) for column in HEADLINE_FEATURES}})
    wide = paths.cohort_features(results, wide=True)
    wide.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(wide, index=False)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, help="folder for the synthetic results (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = (args.work or Path(tmp)) / "results"
        start = time.perf_counter()
        ids = make_cohort(results, args.subjects)
        print(f"synthetic cohort of {len(ids)} subjects made in {time.perf_counter() - start:.1f} s")
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            written = build(results, ids)
            seconds.append(time.perf_counter() - start)
        size = sum(p.stat().st_size for p in written) / 1e6
        print(f"report-html, {len(ids)} subjects: median {statistics.median(seconds):.2f} s over {args.repeats} "
              f"builds (min {min(seconds):.2f}, max {max(seconds):.2f}); {len(written)} files, {size:.1f} MB")


if __name__ == "__main__":
    main()
