"""Baseline for bench/coregister.py: BrainLes-Preprocessing's ANTs path (co-registration to T1c, T1c to the
atlas, resampling), run in its own environment (PyPI `brainles-preprocessing`). Prints one JSON line: the wall
time and, per modality, the ANTs transform files that map atlas points to native points, in application order.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from brainles_preprocessing.constants import PreprocessorSteps
from brainles_preprocessing.modality import CenterModality, Modality
from brainles_preprocessing.preprocessor import AtlasCentricPreprocessor
from brainles_preprocessing.registration import ANTsRegistrator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--atlas", required=True)
    parser.add_argument("--out", type=Path, required=True)
    for modality in ("t1", "t1c", "t2", "flair"):
        parser.add_argument(f"--{modality}", required=True)
    args = parser.parse_args()
    out = args.out
    centre = CenterModality(modality_name="t1c", input_path=args.t1c, raw_skull_output_path=out / "t1c.nii.gz",
                            atlas_correction=False)
    moving = [Modality(modality_name=m, input_path=getattr(args, m), raw_skull_output_path=out / f"{m}.nii.gz",
                       atlas_correction=False) for m in ("t1", "t2", "flair")]
    preprocessor = AtlasCentricPreprocessor(center_modality=centre, moving_modalities=moving,
                                            registrator=ANTsRegistrator(), brain_extractor=None,
                                            atlas_image_path=args.atlas)
    start = time.perf_counter()
    preprocessor.run(save_dir_transformations=out / "transforms")
    seconds = time.perf_counter() - start

    def matrix(modality: str, step: PreprocessorSteps) -> str:
        # BrainLes names saved matrices "<step number>_<file>".
        (path,) = (out / "transforms" / modality).glob(f"{step.value}_*.mat")
        return str(path)

    atlas_step = matrix("t1c", PreprocessorSteps.ATLAS_REGISTERED)
    chains = {"t1c": [atlas_step]}
    for modality in ("t1", "t2", "flair"):
        # Fixed-grid points go atlas -> T1c -> modality, as bratsflow records its chains.
        chains[modality] = [atlas_step, matrix(modality, PreprocessorSteps.COREGISTERED)]
    print(json.dumps({"seconds": seconds, "chains": chains}))


if __name__ == "__main__":
    main()
