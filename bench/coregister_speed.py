"""Co-registration wall time on synthetic demo subjects, this checkout against another side by side.

    python bench/coregister_speed.py --before OTHER/toolkit [--subjects 3] [--seed 42] [--rounds 2] [--cohort DIR]

Each round runs the step's command line in a fresh process for every subject, once per checkout, the order of
the two alternating from call to call so that both see the same machine load. Prints every time, the medians and
the ratio after / before, and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bratsflow import synth
from bratsflow.cohort import MODALITIES, load_sheet
from bratsflow.ingest import ingest_subject

HERE = Path(__file__).resolve().parent


def run(toolkit: Path, images: dict[str, Path], out: Path, subject: str) -> float:
    command = [sys.executable, "-m", "bratsflow.cli", "--threads", "2", "coregister", "--subject", subject,
               "--out", str(out), *[f"--{m}={p}" for m, p in images.items()]]
    start = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(toolkit)}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{toolkit}: {done.stderr.strip().splitlines()[-1]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="toolkit folder of the checkout to compare with")
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42, help="42: the demo cohort's seed")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cohort", type=Path, help="an existing synthetic cohort (default: made in a temp folder)")
    args = parser.parse_args()
    codes = {"before": args.before.resolve(), "after": (HERE.parent / "toolkit").resolve()}
    with tempfile.TemporaryDirectory(prefix="bench-coregister-speed-") as tmp:
        tmp = Path(tmp)
        root = args.cohort
        if root is None:
            root = tmp / "cohort"
            synth.generate_cohort(root, args.subjects, args.seed)
        times = {code: [] for code in codes}
        call = 0
        for round_index in range(args.rounds):
            for subject in load_sheet(root / "subjects.tsv")[: args.subjects]:
                sid = subject.subject_id
                folder = tmp / "ingest" / sid
                if not folder.exists():
                    ingest_subject(subject, folder)
                images = {m: folder / f"{m}.nii.gz" for m in MODALITIES}
                order = list(codes) if call % 2 == 0 else list(reversed(codes))
                call += 1
                for code in order:
                    seconds = run(codes[code], images, tmp / code / f"{sid}-{round_index}", sid)
                    times[code].append(seconds)
                    print(f"round {round_index + 1} {sid} {code:<6} {seconds:6.1f} s  load {os.getloadavg()[0]:.1f}",
                          flush=True)
        medians = {code: statistics.median(values) for code, values in times.items()}
        print(f"median: before {medians['before']:.1f} s, after {medians['after']:.1f} s, "
              f"ratio after/before {medians['after'] / medians['before']:.2f}")


if __name__ == "__main__":
    main()
