"""Fusion speed: every bratsflow method on 6 members at 240×240×155 (BraTS size), side by side with the BraTS
Toolkit's `Fusionator` on the same inputs; prints medians and ratios. Never asserts.

The members are perturbations of one synthetic tumour (bratsflow.synth's lesion painter): smooth boundary
noise and a bias per member and region, a few false-positive specks, one weaker member. Labels follow the
2021 convention (ET = 4) because the toolkit's "brats-simple" hard-codes it.

    python bench/fusion.py --repeats 5 --btk-python PATH/TO/venv-with-brats-toolkit/bin/python

The toolkit (PyPI `brats-toolkit`) pins old libraries: install it into its own virtual environment and
name that interpreter with --btk-python (or the BTK_PYTHON environment variable); without it only bratsflow
is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from threadpoolctl import threadpool_limits

from bratsflow.fusion import fuse, fuse_files
from bratsflow.io import label_image, save_image
from bratsflow.labels import get_convention
from bratsflow.synth import Lesion, _paint_lesions, smooth_noise

SHAPE = (240, 240, 155)
CONVENTION = "brats2021"
METHODS = ("majority", "weighted", "simple", "staple")

# Runs inside the toolkit's interpreter: times its fusions on the saved members (in memory and as files;
# majority voting also with bratsflow's weights), prints one JSON line. The toolkit prints a great deal; that
# goes to /dev/null.
BTK_SCRIPT = r"""
import contextlib, json, os, statistics, sys, time
import numpy as np
from brats_toolkit.fusionator import Fusionator
folder, repeats, member_weights = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("member") and f.endswith(".nii.gz"))
arrays = [np.load(f.replace(".nii.gz", ".npy")) for f in files]
weights = [1] * len(arrays)
times = {}
with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
    fusionator = Fusionator(verbose=False)
    output = os.path.join(folder, "btk.nii.gz")
    runs = {
        "mav": lambda: fusionator._mav(arrays, labels=[1, 2, 4], weights=weights),
        "weighted mav": lambda: fusionator._mav(arrays, labels=[1, 2, 4], weights=member_weights),
        "simple": lambda: fusionator._simple(arrays, weights, labels=[1, 2, 4]),
        "brats-simple": lambda: fusionator._brats_simple(arrays, weights),
        "files mav": lambda: fusionator.fuse(files, output, method="mav"),
        "files weighted mav": lambda: fusionator.fuse(files, output, method="mav", weights=member_weights),
        "files simple": lambda: fusionator.fuse(files, output, method="simple"),
        "files brats-simple": lambda: fusionator.fuse(files, output, method="brats-simple"),
    }
    for name, run in runs.items():
        values = []
        for _ in range(repeats):
            start = time.perf_counter(); run(); values.append(time.perf_counter() - start)
        times[name] = statistics.median(values)
print(json.dumps(times))
"""


def make_members(seed: int = 0, n_members: int = 6) -> tuple[np.ndarray, list[np.ndarray]]:
    """A tumour label map at 1 mm on the BraTS grid and `n_members` plausible segmentations of it."""
    rng = np.random.default_rng(seed)
    white_matter = np.clip(0.5 + 0.35 * smooth_noise(rng, SHAPE, 12.0), 0, 1).astype(np.float32)
    brain = np.ones(SHAPE, dtype=np.float32)
    main = Lesion(np.array([140.0, 110.0, 85.0]), 28.0, 14.0, 8.0, True, 0.18)
    satellite = Lesion(np.array([95.0, 150.0, 70.0]), 10.0, 5.0, 0.0, True, 0.2)
    truth = _paint_lesions(rng, [main, satellite], white_matter, brain, 1.0, CONVENTION)

    values = get_convention(CONVENTION).labels
    regions = {"WT": truth > 0, "TC": np.isin(truth, [values["NETC"], values["ET"]]), "ET": truth == values["ET"]}
    box = tuple(slice(max(s.start - 12, 0), s.stop + 12) for s in ndi.find_objects(regions["WT"].astype(int))[0])
    signed = {name: (ndi.distance_transform_edt(~mask[box]) - ndi.distance_transform_edt(mask[box]))
              for name, mask in regions.items()}
    members = []
    for k in range(n_members):
        weak = k == n_members - 1
        fused_regions = {}
        for name, distance in signed.items():
            noise = smooth_noise(rng, distance.shape, 6.0) * (3.0 if weak else 1.2)
            bias = rng.uniform(-1.0, 1.0) + (2.0 if weak else 0.0)
            fused_regions[name] = distance + noise + bias < 0
        member = np.zeros(SHAPE, dtype=np.uint8)
        sub = member[box]
        sub[fused_regions["WT"]] = values["SNFH"]
        sub[fused_regions["WT"] & fused_regions["TC"]] = values["NETC"]
        sub[fused_regions["WT"] & fused_regions["TC"] & fused_regions["ET"]] = values["ET"]
        for _ in range(rng.integers(0, 4)):  # false-positive specks elsewhere in the volume
            centre = rng.integers([20, 20, 20], [220, 220, 135])
            member[tuple(slice(c, c + 3) for c in centre)] = values["SNFH"]
        members.append(member)
    return truth, members


def timed(run, repeats: int) -> float:
    values = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        values.append(time.perf_counter() - start)
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--staple-repeats", type=int, default=1, help="STAPLE is slow; fewer repeats")
    parser.add_argument("--btk-repeats", type=int, default=3, help="repeats of the (slow) BraTS Toolkit runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--btk-python", default=os.environ.get("BTK_PYTHON"),
                        help="python of an environment with brats-toolkit installed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    start = time.perf_counter()
    truth, members = make_members(args.seed)
    print(f"members: {len(members)} × {SHAPE}, tumour voxels per member "
          f"{[int((m > 0).sum()) for m in members]} (made in {time.perf_counter() - start:.1f} s)")
    weights = [1.0, 1.2, 0.8, 1.1, 0.9, 0.5]
    probabilities = []
    for m in members:  # label-model softmax stand-ins, smoothed one-hot
        onehot = [(m == v).astype(np.float32) for v in (0, *get_convention(CONVENTION).labels.values())]
        probabilities.append({key: ndi.uniform_filter(p, 3).astype(np.float16)
                              for key, p in zip(("background", "NETC", "SNFH", "ET"), onehot)})

    ours: dict[str, float] = {}
    with threadpool_limits(args.threads):
        for mode in ("labels", "regions"):
            for method in (*METHODS, "mean"):
                kwargs = dict(method=method, mode=mode, convention=CONVENTION, threads=args.threads,
                              weights=weights if method in ("weighted", "simple", "mean") else None,
                              probabilities=probabilities if method == "mean" else None)
                repeats = args.staple_repeats if method == "staple" else args.repeats
                ours[f"{method} {mode}"] = timed(lambda: fuse(members, **kwargs), repeats)
        truth_wt = truth > 0
        for mode in ("labels", "regions"):
            fused = fuse(members, method="majority", mode=mode, convention=CONVENTION)
            dice = 2 * np.sum((fused > 0) & truth_wt) / (np.sum(fused > 0) + np.sum(truth_wt))
            print(f"majority {mode}: WT Dice with the truth {dice:.4f}")

    with tempfile.TemporaryDirectory() as tmp:
        affine = np.diag([-1.0, -1.0, 1.0, 1.0])
        files = []
        for k, member in enumerate(members):
            path = Path(tmp) / f"member{k}.nii.gz"
            save_image(label_image(member, affine), path)
            np.save(path.with_suffix("").with_suffix(".npy"), member)
            files.append(path)
        for method, mode in (("majority", "labels"), ("majority", "regions"), ("weighted", "labels"),
                             ("weighted", "regions"), ("simple", "regions")):
            ours[f"files {method} {mode}"] = timed(
                lambda: fuse_files(files, Path(tmp) / "ours.nii.gz", method=method, mode=mode,
                                   weights=weights if method == "weighted" else None, convention=CONVENTION,
                                   threads=args.threads),
                args.repeats)
        btk = {}
        if args.btk_python:
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": str(args.threads)}
            command = [args.btk_python, "-c", BTK_SCRIPT, tmp, str(args.btk_repeats), json.dumps(weights)]
            result = subprocess.run(command, capture_output=True, text=True, env=env)
            if result.returncode != 0:
                print("BraTS Toolkit run failed:\n" + result.stderr[-2000:], file=sys.stderr)
            else:
                btk = json.loads(result.stdout.strip().splitlines()[-1])

    print(f"\nmedian seconds per fusion (bratsflow {args.repeats} repeats, STAPLE {args.staple_repeats}, "
          f"BraTS Toolkit {args.btk_repeats}; {args.threads} threads)")
    for name, value in ours.items():
        print(f"  bratsflow {name:<24} {value:8.3f} s")
    for name, value in btk.items():
        print(f"  BraTS Toolkit {name:<20} {value:8.3f} s")
    if btk:
        print("\nratios (BraTS Toolkit / bratsflow, same inputs)")
        pairs = [("mav", "majority labels"), ("mav", "majority regions"), ("weighted mav", "weighted labels"),
                 ("weighted mav", "weighted regions"), ("simple", "simple labels"), ("brats-simple", "simple regions"),
                 ("files mav", "files majority labels"), ("files mav", "files majority regions"),
                 ("files weighted mav", "files weighted labels"), ("files weighted mav", "files weighted regions"),
                 ("files brats-simple", "files simple regions")]
        for theirs, mine in pairs:
            print(f"  {theirs:>18} / {mine:<24} {btk[theirs] / ours[mine]:8.1f}×")


if __name__ == "__main__":
    main()
