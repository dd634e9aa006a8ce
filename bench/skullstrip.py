"""Skull stripping (atlas backend) on the synthetic cohort: brain-mask Dice and HD95 against the truth, and time.

    python bench/skullstrip.py --subjects 6 --seed 7 [--cohort DIR] [--scale 0.1]

Each subject's four images are brought into atlas space through their true transforms (what co-registration
delivers, without its 0.2 mm error), so the numbers are skull stripping's alone. The phantom's anatomy is the
atlas' own, deformed smoothly with its affine part removed, which flatters any atlas-based method; so every
subject is also run after a random affine change of head size and shape (per-axis scale within ±`--scale`,
shears within ±`--scale`/2) applied to its images and truth alike: the inter-subject differences a rigid
co-registration leaves to skull stripping. The baseline beside each row is the atlas brain mask taken as it is.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from bratsflow import synth
from bratsflow.atlas import load_atlas
from bratsflow.metrics import dice, hausdorff
from bratsflow.skullstrip import SkullstripParams, skullstrip


def random_affine(rng: np.random.Generator, scale: float, centre: np.ndarray) -> np.ndarray:
    """A world-space affine about `centre`: per-axis scale and shears."""
    linear = np.diag(1 + rng.uniform(-scale, scale, 3))
    linear[np.triu_indices(3, 1)] = rng.uniform(-scale / 2, scale / 2, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = linear
    matrix[:3, 3] = centre - linear @ centre
    return matrix


def deform(img: nib.Nifti1Image, matrix: np.ndarray, order: int) -> nib.Nifti1Image:
    """`img` with its content moved by the world affine `matrix`, on the same grid."""
    moved = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), matrix @ img.affine)
    return resample_from_to(moved, img, order=order)


def run(root: Path, sid: str, work: Path, matrix: np.ndarray | None, threads: int) -> dict:
    truth_file = root / "derivatives" / "truth" / sid / f"{sid}_space-atlas_desc-brain_mask.nii.gz"
    truth = nib.load(truth_file)
    images = {}
    for modality, data in synth.resample_native_to_atlas(root, sid).items():
        img = nib.Nifti1Image(data.astype(np.float32), truth.affine)
        images[modality] = work / f"{modality}.nii.gz"
        nib.save(img if matrix is None else deform(img, matrix, order=1), images[modality])
    if matrix is not None:
        truth = deform(truth, matrix, order=1)
    truth_mask = np.asarray(truth.dataobj) > 0.5
    start = time.perf_counter()
    skullstrip(images, work / "out", SkullstripParams(), subject=sid, threads=threads)
    seconds = time.perf_counter() - start
    mask = np.asarray(nib.load(work / "out" / "brain_mask.nii.gz").dataobj) > 0
    prior = np.asarray(load_atlas("mni152").mask.dataobj) > 0
    spacing = truth.header.get_zooms()[:3]
    return {"dice": dice(mask, truth_mask), "hd95": hausdorff(mask, truth_mask, spacing),
            "baseline_dice": dice(prior, truth_mask), "baseline_hd95": hausdorff(prior, truth_mask, spacing),
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cohort", type=Path, help="an existing synthetic cohort (default: synthesise one)")
    parser.add_argument("--scale", type=float, default=0.1, help="size/shape change of the second run")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-skullstrip-") as tmp:
        root = args.cohort or Path(tmp) / "cohort"
        if args.cohort is None:
            synth.generate_cohort(root, args.subjects, args.seed)
        subjects = [synth.subject_id(k) for k in range(args.subjects)]
        rng = np.random.default_rng(args.seed)
        rows = []
        for sid in subjects:
            brain = nib.load(root / "derivatives" / "truth" / sid / f"{sid}_space-atlas_desc-brain_mask.nii.gz")
            centre = nib.affines.apply_affine(brain.affine, np.argwhere(np.asarray(brain.dataobj) > 0).mean(0))
            for case, matrix in (("as synthesised", None), ("size/shape changed", random_affine(rng, args.scale,
                                                                                                  centre))):
                work = Path(tmp) / f"{sid}-{len(rows)}"
                work.mkdir()
                rows.append({"subject": sid, "case": case, **run(root, sid, work, matrix, args.threads)})
                row = rows[-1]
                print(f"{sid}  {case:<19} Dice {row['dice']:.4f}  HD95 {row['hd95']:5.2f} mm   "
                      f"(atlas mask as is: Dice {row['baseline_dice']:.4f}, HD95 {row['baseline_hd95']:5.2f} mm)  "
                      f"{row['seconds']:5.1f} s", flush=True)
    for case in ("as synthesised", "size/shape changed"):
        subset = [r for r in rows if r["case"] == case]
        print(f"{case}: Dice min {min(r['dice'] for r in subset):.4f} median "
              f"{statistics.median(r['dice'] for r in subset):.4f}; HD95 median "
              f"{statistics.median(r['hd95'] for r in subset):.2f} mm, max {max(r['hd95'] for r in subset):.2f} mm; "
              f"baseline Dice median {statistics.median(r['baseline_dice'] for r in subset):.4f}")
    times = [r["seconds"] for r in rows]
    print(f"time per subject ({args.threads} threads): median {statistics.median(times):.1f} s, "
          f"max {max(times):.1f} s")


if __name__ == "__main__":
    main()
