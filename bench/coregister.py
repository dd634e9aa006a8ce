"""Co-registration accuracy and speed on the synthetic cohort, against the true transforms, and side by side
with BrainLes-Preprocessing's ANTs path on the same images and the same atlas file.

    python bench/coregister.py --subjects 4 --seed 11 [--brainles-python /path/to/venv/bin/python]

Prints, per subject and modality, the target registration error (TRE) over brain voxels (median, max, mm) of the
native -> atlas mapping, region Dice of the T1c-native truth labels pushed into the atlas, the wall time of the
step, and the bad-input checks (another subject's T2; a barely overlapping FLAIR).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ants
import nibabel as nib
import numpy as np

from bratsflow import paths, synth
from bratsflow.cohort import MODALITIES, load_sheet
from bratsflow.coregister import CoregisterParams, coregister
from bratsflow.errors import RegistrationError
from bratsflow.ingest import ingest_subject
from bratsflow.io import reorient
from bratsflow.labels import REGIONS, region_mask

LPS = np.array([-1.0, -1.0, 1.0])
HERE = Path(__file__).resolve().parent


def map_points(files: list[Path], points_ras: np.ndarray) -> np.ndarray:
    points = points_ras * LPS
    for file in files:
        transform = ants.read_transform(str(file))
        points = np.array([transform.apply_to_point(tuple(p)) for p in points])
    return points * LPS


def tre(root: Path, sid: str, chains: dict[str, list[Path]], stride: int = 20) -> dict[str, tuple[float, float]]:
    truth = synth.load_truth(root, sid)
    brain = nib.load(paths.TruthFiles(root, sid).brain_mask)
    points = nib.affines.apply_affine(brain.affine, np.argwhere(np.asarray(brain.dataobj) > 0)[::stride])
    out = {}
    for modality, chain in chains.items():
        true = nib.affines.apply_affine(np.asarray(truth["transforms"][modality]["atlas_to_native"]), points)
        error = np.linalg.norm(map_points(chain, points) - true, axis=1)
        out[modality] = (float(np.median(error)), float(error.max()))
    return out


def label_dice(root: Path, sid: str, t1c_to_atlas: Path, atlas_file: Path) -> dict[str, float]:
    """The native-T1c truth labels pushed into the atlas through the estimated transform vs the atlas truth."""
    truth = paths.TruthFiles(root, sid)
    native = reorient(nib.load(truth.labels_t1c), "RAS")
    atlas_truth = np.asarray(nib.load(truth.labels).dataobj)
    from bratsflow.io import to_ants

    moved = ants.apply_transforms(ants.image_read(str(atlas_file)), to_ants(native), [str(t1c_to_atlas)],
                                  interpolator="genericLabel").numpy()
    dice = {}
    for region in REGIONS:
        a, b = region_mask(moved, region, "brats2023"), region_mask(atlas_truth, region, "brats2023")
        dice[region] = float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))
    return dice


def run_brainles(python: str, images: dict[str, Path], atlas_file: Path, out: Path) -> tuple[float, dict]:
    result = subprocess.run(
        [python, str(HERE / "brainles_ants.py"), "--atlas", str(atlas_file), "--out", str(out),
         *[f"--{m}={images[m]}" for m in MODALITIES]], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"BrainLes run failed:\n{result.stderr[-2000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["seconds"], {m: [Path(p) for p in chain] for m, chain in report["chains"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--brainles-python", help="python of a venv with brainles-preprocessing installed")
    parser.add_argument("--atlas-transform", nargs="+", default=["affine", "rigid"], choices=["affine", "rigid"],
                        help="bratsflow configurations to measure (BrainLes' ANTs path maps to the atlas rigidly)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "cohort"
        synth.generate_cohort(root, args.subjects, args.seed)
        from nilearn import datasets

        atlas_file = tmp / "mni152.nii.gz"
        nib.save(datasets.load_mni152_template(resolution=1), atlas_file)
        rows, ours_s, theirs_s = [], {t: [] for t in args.atlas_transform}, []
        for subject in load_sheet(root / "subjects.tsv"):
            sid = subject.subject_id
            ingest_subject(subject, tmp / "ingest" / sid)
            images = {m: tmp / "ingest" / sid / f"{m}.nii.gz" for m in MODALITIES}
            ours, dice = {}, {}
            for kind in args.atlas_transform:
                start = time.perf_counter()
                out = tmp / kind / sid
                record = coregister(images, out, CoregisterParams(atlas_transform=kind), subject=sid,
                                    threads=args.threads)
                ours_s[kind].append(time.perf_counter() - start)
                chains = {m: [out / "transforms" / f for f in c] for m, c in record["transforms"]["to_atlas"].items()}
                ours[kind] = tre(root, sid, chains)
                dice[kind] = label_dice(root, sid, out / "transforms" / "t1c-to-atlas.mat", atlas_file)
            theirs = {}
            if args.brainles_python:
                seconds, their_chains = run_brainles(args.brainles_python, images, atlas_file, tmp / "brainles" / sid)
                theirs_s.append(seconds)
                theirs = tre(root, sid, their_chains)
            for modality in MODALITIES:
                rows.append((sid, modality, *(v for kind in args.atlas_transform for v in ours[kind][modality]),
                             *theirs.get(modality, (np.nan, np.nan))))
            times = ", ".join(f"bratsflow {kind} {ours_s[kind][-1]:.1f} s" for kind in args.atlas_transform)
            print(f"{sid}: {times}" + (f", BrainLes {theirs_s[-1]:.1f} s" if theirs_s else ""), flush=True)
            for kind in args.atlas_transform:
                print(f"  atlas-space label Dice ({kind}): "
                      + ", ".join(f"{r} {d:.3f}" for r, d in dice[kind].items()), flush=True)

        print("\nTRE over brain voxels, mm (native -> atlas): median / max")
        header = [f"bratsflow {kind}" for kind in args.atlas_transform] + ["BrainLes (rigid)"]
        print(f"{'subject':8} {'modality':8} " + " ".join(f"{h:>17}" for h in header))
        for sid, modality, *values in rows:
            pairs = [f"{values[i]:7.2f} / {values[i + 1]:5.2f}" for i in range(0, len(values), 2)]
            print(f"{sid:8} {modality:8} " + " ".join(f"{p:>17}" for p in pairs))
        for i, name in enumerate(header):
            medians = [r[2 + 2 * i] for r in rows]
            maxima = [r[3 + 2 * i] for r in rows]
            print(f"{name}: worst median {max(medians):.2f} mm, worst max {max(maxima):.2f} mm")
        print(f"\nstep time per subject ({args.threads} threads), medians:")
        for kind in args.atlas_transform:
            print(f"bratsflow {kind}: {statistics.median(ours_s[kind]):.1f} s")
        if theirs_s:
            print(f"BrainLes-Preprocessing ANTs path: {statistics.median(theirs_s):.1f} s; ratio to bratsflow "
                  + ", ".join(f"{kind} {statistics.median(theirs_s) / statistics.median(ours_s[kind]):.2f}x"
                              for kind in args.atlas_transform))

        print("\nbad inputs (real size)")
        sids = [s.subject_id for s in load_sheet(root / "subjects.tsv")]
        wrong = {"t1c": tmp / "ingest" / sids[0] / "t1c.nii.gz", "t2": tmp / "ingest" / sids[1] / "t2.nii.gz"}
        flair = nib.load(tmp / "ingest" / sids[0] / "flair.nii.gz")
        data = np.asarray(flair.dataobj).copy()
        data[:, :, : data.shape[2] - 3] = 0
        nib.save(nib.Nifti1Image(data, flair.affine), tmp / "slab.nii.gz")
        slab = {"t1c": wrong["t1c"], "flair": tmp / "slab.nii.gz"}
        for label, images in (("T2 of another subject", wrong), ("FLAIR cut to 3 slices", slab)):
            try:
                coregister(images, tmp / "bad", CoregisterParams(), subject=sids[0], threads=args.threads)
                print(f"{label}: NOT refused")
            except RegistrationError as exc:
                print(f"{label}: refused: {exc}")


if __name__ == "__main__":
    sys.exit(main())
