"""Ingest cost per subject against a bare baseline (nibabel load + reorient + save, no checks, no checksums),
side by side on the same files; prints medians and the ratio.

    python bench/ingest.py --cohort demo --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib

from bratsflow.cohort import MODALITIES, load_sheet
from bratsflow.ingest import ingest_subject


def bare(subject, out: Path) -> None:
    for modality in MODALITIES:
        img = nib.as_closest_canonical(nib.load(subject.image(modality)))
        nib.save(img, out / f"{modality}.nii.gz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohort", type=Path, default=Path("demo"), help="folder with subjects.tsv")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    subjects = load_sheet(args.cohort / "subjects.tsv")
    times = {"bare nibabel": [], "bratsflow ingest": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for subject in subjects:
                for name, run in (("bare nibabel", bare), ("bratsflow ingest", ingest_subject)):
                    out = Path(tmp) / name.replace(" ", "_") / subject.subject_id
                    out.mkdir(parents=True, exist_ok=True)
                    start = time.perf_counter()
                    run(subject, out)
                    times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:>17}: median {value:.2f} s per subject ({len(times[name])} runs)")
    print(f"ratio ingest / bare: {medians['bratsflow ingest'] / medians['bare nibabel']:.2f}")


if __name__ == "__main__":
    main()
