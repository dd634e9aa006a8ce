"""Time the synthetic cohort generator per subject at a given atlas resolution; prints medians.

    python bench/synth.py --resolution 1 --repeats 3
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bratsflow.synth import SynthParams, load_head_model, synthesize_subject, write_subject


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    params = SynthParams(resolution_mm=args.resolution)

    start = time.perf_counter()
    load_head_model(args.resolution)
    head_s = time.perf_counter() - start
    synth_s, write_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.repeats):
            start = time.perf_counter()
            subject = synthesize_subject(np.random.default_rng([args.seed, index]), params)
            synth_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            write_subject(subject, Path(tmp), f"sub-{index + 1:03d}", args.seed, params)
            write_s.append(time.perf_counter() - start)
        size_mb = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 1e6 / args.repeats
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"resolution {args.resolution:g} mm, {args.repeats} subjects")
    print(f"head model (once per process): {head_s:.1f} s")
    print(f"synthesis per subject: median {statistics.median(synth_s):.1f} s "
          f"(min {min(synth_s):.1f}, max {max(synth_s):.1f})")
    print(f"writing per subject:   median {statistics.median(write_s):.1f} s")
    print(f"files per subject: {size_mb:.0f} MB; peak memory {peak_gb:.1f} GB")


if __name__ == "__main__":
    main()
