"""The demo ensemble on held-out synthetic subjects: each member alone and the majority-vote fusion, BraTS 2023
region metrics (Dice, HD95), CPU inference time per member per subject (no TTA) and peak memory.

    python bench/segment_demo.py [--models models/demo] [--subjects 6] [--seed 2000] [--cohort DIR] [--threads 2]

Subjects come from `--seed` (default: the held-out seed that `bratsflow models train-demo` refuses to train on),
1 mm, prepared exactly as for training (atlas space through the true transforms, skull-stripped with the true
brain mask). Each member runs in its own fresh process through `bratsflow.segment.nnunet.predict` (checksums
verified, model loaded, prediction), as a pipeline rule does; the time is that call per subject, as wall time and
as CPU time (the machine's load average is printed with them), the memory the process's peak resident set
(Python, torch and the model included). Targets (issue 5, fused, held-out):
Dice WT >= 0.90, TC >= 0.85, ET >= 0.80.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "toolkit"))

from bratsflow import models  # noqa: E402
from bratsflow.fusion import fuse  # noqa: E402
from bratsflow.io import label_image_like, save_image  # noqa: E402
from bratsflow.metrics import region_metrics  # noqa: E402
from bratsflow.training.demo import HELD_OUT_SEED, atlas_inputs, synthesise  # noqa: E402

TARGETS = {"WT": 0.90, "TC": 0.85, "ET": 0.80}


def run_member(folder: str, inputs: dict[str, dict[str, str]], out: str, threads: int) -> dict:
    """In a fresh process: one member on every subject; seconds per subject and the process's peak memory."""
    import nibabel as nib

    from bratsflow.segment import Member
    from bratsflow.segment.nnunet import predict

    member = Member(name=Path(folder).name, model=folder, device="cpu", tta=False)
    seconds, cpu_seconds = {}, {}
    for sid, images in inputs.items():
        reference = nib.load(images["t1"])
        start, cpu_start = time.perf_counter(), cpu_time()
        labels, _, _ = predict({m: Path(p) for m, p in images.items()}, member, subject=sid, threads=threads)
        seconds[sid], cpu_seconds[sid] = time.perf_counter() - start, cpu_time() - cpu_start
        save_image(label_image_like(labels, reference), Path(out) / sid / f"{member.name}.nii.gz")
    return {"seconds": seconds, "cpu_seconds": cpu_seconds,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def cpu_time() -> float:
    """CPU seconds of this process's threads and its finished children: on a shared machine the wall time also
    counts the waits for a core, which depend on the other load."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=Path("models/demo"))
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    parser.add_argument("--cohort", type=Path, help="keep (and reuse) the held-out subjects here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    # Spinning OpenMP threads waste the cores on a shared machine (see bratsflow.training.demo); set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    folders = sorted(p.parent for p in args.models.glob(f"*/{models.MANIFEST}"))
    if not folders:
        sys.exit(f"no model folders with a checksum record under {args.models}")
    with tempfile.TemporaryDirectory() as tmp:
        cohort = args.cohort or Path(tmp) / "cohort"
        subjects = synthesise(cohort, args.subjects, args.seed, args.threads)
        inputs, truths = {}, {}
        for sid in subjects:
            images, truths[sid] = atlas_inputs(cohort, sid)
            inputs[sid] = {m: str(save_image(img, Path(tmp) / "inputs" / sid / f"{m}.nii.gz"))
                           for m, img in images.items()}
        out = Path(tmp) / "predictions"
        load_before = os.getloadavg()[0]
        runs = {}
        for folder in folders:
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                runs[folder.name] = pool.apply(run_member, (str(folder), inputs, str(out), args.threads))
        names = [f.name for f in folders]

        rows = []
        for sid in subjects:
            maps = {n: out / sid / f"{n}.nii.gz" for n in names}
            maps["fused (majority)"] = fuse(list(maps.values()), method="majority", names=names, subject=sid)
            for name, prediction in maps.items():
                table = region_metrics(prediction, truths[sid]).set_index("region")
                rows += [{"subject": sid, "model": name, "region": r, "dice": table.loc[r, "dice"],
                          "hd95": table.loc[r, "hd95"]} for r in TARGETS]
    results = pd.DataFrame(rows)

    pd.set_option("display.width", 200)
    print(f"held-out subjects: seed {args.seed}, {', '.join(subjects)} (1 mm); models: {', '.join(names)}\n")
    dice = results.pivot_table(index="subject", columns=["model", "region"], values="dice", sort=False)
    dice.loc["median"] = dice.median()
    dice.loc["mean"] = dice.iloc[:-1].mean()
    print("Dice per subject\n" + dice.round(3).to_string() + "\n")
    hd95 = results.pivot_table(index="subject", columns=["model", "region"], values="hd95", sort=False)
    print("HD95 (mm): median over subjects\n" + hd95.median().unstack().round(2).to_string() + "\n")

    seconds = pd.DataFrame({n: runs[n]["seconds"] for n in names})
    seconds.loc["median"] = seconds.median()
    cpu = pd.DataFrame({n: runs[n]["cpu_seconds"] for n in names})
    cpu.loc["median"] = cpu.median()
    print(f"CPU inference per member per subject (no TTA, {args.threads} threads, checksum check + model load + "
          f"prediction; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after)\n"
          + pd.concat({"wall s": seconds, "CPU s": cpu}, axis=1).round(1).to_string() + "\n")
    print("peak memory per member process (MB): "
          + ", ".join(f"{n} {runs[n]['peak_mb']:.0f}" for n in names) + "\n")

    fused = dice["fused (majority)"]
    for region, target in TARGETS.items():
        med, mean = fused.loc["median", region], fused.loc["mean", region]
        verdict = "meets" if min(med, mean) >= target else "MISSES"
        print(f"fused {region}: median {med:.3f}, mean {mean:.3f}; target >= {target:.2f}: {verdict}")
    for label, table in (("wall", seconds), ("CPU", cpu)):
        slowest = float(np.nanmax(table.drop(index="median").to_numpy()))
        print(f"slowest member call, {label} time: {slowest:.1f} s; target < 60 s: "
              f"{'meets' if slowest < 60 else 'MISSES'}")


if __name__ == "__main__":
    main()
