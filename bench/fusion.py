"""Fusion speed: every bratsflow method on 6 members at 240×240×155 (BraTS size), side by side with the BraTS
Toolkit's `Fusionator` on the same inputs; prints medians and ratios. Never asserts.

The members are perturbations of one synthetic tumour (bratsflow.synth's lesion painter): smooth boundary
noise and a bias per member and region, a few false-positive specks, one weaker member. Labels follow the
2021 convention (ET = 4) because the toolkit's "brats-simple" hard-codes it.

    python bench/fusion.py --rounds 7 --btk-python PATH/TO/venv-with-brats-toolkit/bin/python

Each comparison is timed in rounds, one bratsflow run and one toolkit run after the other, so that both see the
same load on the machine; the ratio is the toolkit's median over bratsflow's. The toolkit (PyPI `brats-toolkit`)
pins old libraries: install it into its own virtual environment and name that interpreter with --btk-python
(or the BTK_PYTHON environment variable); without it only bratsflow is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
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

# Runs inside the toolkit's interpreter: loads the saved members, then for each line on stdin (a run's name) runs
# that fusion once and answers the seconds it took. The toolkit prints a great deal; that goes to /dev/null.
BTK_WORKER = r"""
import contextlib, json, os, sys, time
import numpy as np
from brats_toolkit.fusionator import Fusionator
folder, member_weights = sys.argv[1], json.loads(sys.argv[2])
files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("member") and f.endswith(".nii.gz"))
arrays = [np.load(f.replace(".nii.gz", ".npy")) for f in files]
weights = [1] * len(arrays)
answer = sys.stdout
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
        "files brats-simple": lambda: fusionator.fuse(files, output, method="brats-simple"),
    }
    for line in sys.stdin:
        start = time.perf_counter()
        runs[line.strip()]()
        print(time.perf_counter() - start, file=answer, flush=True)
"""
# bratsflow run (method mode, "files" when read from and written to files) and the toolkit run it is compared with.
PAIRS = (("majority labels", "mav"), ("majority regions", "mav"), ("weighted labels", "weighted mav"),
         ("weighted regions", "weighted mav"), ("simple labels", "simple"), ("simple regions", "brats-simple"),
         ("files majority labels", "files mav"), ("files majority regions", "files mav"),
         ("files weighted labels", "files weighted mav"), ("files weighted regions", "files weighted mav"),
         ("files simple regions", "files brats-simple"))


class Toolkit:
    """The BraTS Toolkit worker process: `time(name)` runs one of its fusions and returns the seconds."""

    def __init__(self, python: str, folder: str, weights: list[float], threads: int):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
        self.process = subprocess.Popen([python, "-c", BTK_WORKER, folder, json.dumps(weights)], env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def time(self, name: str) -> float:
        self.process.stdin.write(name + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the BraTS Toolkit worker failed:\n" + self.process.stderr.read()[-2000:])
        return float(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


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
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the methods the toolkit lacks")
    parser.add_argument("--staple-repeats", type=int, default=1, help="STAPLE is slow; fewer repeats")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the side-by-side comparisons")
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

    def run(name: str, files: list[Path], out: Path):
        """bratsflow's fusion `name` ("[files ]method mode") as a call without arguments."""
        *where, method, mode = name.split()
        kwargs = dict(method=method, mode=mode, convention=CONVENTION,
                      weights=weights if method in ("weighted", "simple", "mean") else None)
        if where:
            return lambda: fuse_files(files, out, **kwargs)
        return lambda: fuse(members, probabilities=probabilities if method == "mean" else None, **kwargs)

    alone: dict[str, float] = {}
    paired: dict[str, list[float]] = {name: [] for name, _ in PAIRS}
    theirs: dict[str, list[float]] = {name: [] for name, _ in PAIRS}
    with threadpool_limits(args.threads), tempfile.TemporaryDirectory() as tmp:
        for mode in ("labels", "regions"):
            for method in ("staple", "mean"):
                repeats = args.staple_repeats if method == "staple" else args.repeats
                alone[f"{method} {mode}"] = timed(run(f"{method} {mode}", [], Path(tmp)), repeats)
        truth_wt = truth > 0
        for mode in ("labels", "regions"):
            fused = fuse(members, method="majority", mode=mode, convention=CONVENTION)
            dice = 2 * np.sum((fused > 0) & truth_wt) / (np.sum(fused > 0) + np.sum(truth_wt))
            print(f"majority {mode}: WT Dice with the truth {dice:.4f}")

        affine = np.diag([-1.0, -1.0, 1.0, 1.0])
        files = []
        for k, member in enumerate(members):
            path = Path(tmp) / f"member{k}.nii.gz"
            save_image(label_image(member, affine), path)
            np.save(path.with_suffix("").with_suffix(".npy"), member)
            files.append(path)
        toolkit = Toolkit(args.btk_python, tmp, weights, args.threads) if args.btk_python else None
        runs = {name: run(name, files, Path(tmp) / "ours.nii.gz") for name, _ in PAIRS}
        order = np.random.default_rng(args.seed)
        for _ in range(args.rounds):
            # A run right after one of the toolkit's heavy ones is slower: a new order every round.
            for index in order.permutation(len(PAIRS)):
                name, baseline = PAIRS[index]
                paired[name].append(timed(runs[name], 1))
                if toolkit:
                    theirs[name].append(toolkit.time(baseline))
        if toolkit:
            toolkit.close()

    print(f"\nmedian seconds per fusion ({args.threads} threads; {args.repeats} repeats, STAPLE "
          f"{args.staple_repeats})")
    for name, value in alone.items():
        print(f"  bratsflow {name:<24} {value:8.3f} s")
    print(f"\nside by side, {args.rounds} rounds: median seconds"
          + (" and ratio (BraTS Toolkit / bratsflow, same inputs)" if args.btk_python else ""))
    for name, baseline in PAIRS:
        ours = statistics.median(paired[name])
        line = f"  bratsflow {name:<24} {ours:8.3f} s"
        if theirs[name]:
            btk = statistics.median(theirs[name])
            line += f"   BraTS Toolkit {baseline:<20} {btk:8.3f} s   {btk / ours:6.1f}×"
        print(line)


if __name__ == "__main__":
    main()
