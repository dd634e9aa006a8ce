"""The HD-BET path on a GPU: one short script for a machine with CUDA (runs on CPU too, for comparison).

    python bench/gpu_hdbet.py [--device cuda] [--repeats 3]

Installs the tests' tiny brain-extraction model (tests/data/tiny_models/hdbet, trained on two 3 mm synthetic
subjects) into a temporary model store, and runs `skullstrip --backend hdbet` on a held-out subject, with and without
TTA, on the requested device and on the CPU: prints the device torch used, median wall times, the masks' Dice
against the truth, and the Dice between the GPU and CPU masks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import TINY_MODELS, TINY_RESOLUTION_MM, TINY_SEED, TINY_SUBJECTS  # noqa: E402
from nnunet_helpers import atlas_space_t1  # noqa: E402

from bratsflow import models, synth  # noqa: E402
from bratsflow.metrics import dice  # noqa: E402
from bratsflow.skullstrip import SkullstripParams, skullstrip  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
          + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
    with tempfile.TemporaryDirectory(prefix="gpu-hdbet-") as tmp:
        tmp = Path(tmp)
        os.environ[models.STORE_ENV] = str(tmp / "store")
        synth.generate_cohort(tmp / "cohort", TINY_SUBJECTS, TINY_SEED,
                              synth.SynthParams(resolution_mm=TINY_RESOLUTION_MM))
        models.install("hd-bet", TINY_MODELS / "hdbet")
        t1, truth = atlas_space_t1(tmp / "cohort", "sub-002")
        nib.save(t1, tmp / "t1.nii.gz")
        masks = {}
        for device in dict.fromkeys([args.device, "cpu"]):
            for tta in (False, True):
                times = []
                for repeat in range(args.repeats):
                    out = tmp / f"out-{device}-{tta}-{repeat}"
                    start = time.perf_counter()
                    record = skullstrip({"t1": tmp / "t1.nii.gz"}, out,
                                        SkullstripParams(backend="hdbet", device=device, tta=tta), threads=2)
                    times.append(time.perf_counter() - start)
                masks[device, tta] = np.asarray(nib.load(out / "brain_mask.nii.gz").dataobj) > 0
                print(f"{device:>4} (ran on {record['method']['device']}), TTA {'on ' if tta else 'off'}: median "
                      f"{statistics.median(times):.2f} s over {args.repeats} (first {times[0]:.2f} s), Dice vs truth "
                      f"{dice(masks[device, tta], truth):.4f}")
        if args.device != "cpu":
            for tta in (False, True):
                print(f"TTA {'on ' if tta else 'off'}: Dice {args.device} vs cpu mask "
                      f"{dice(masks[args.device, tta], masks['cpu', tta]):.5f}")


if __name__ == "__main__":
    main()
