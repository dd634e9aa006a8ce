"""Report step time of one 1 mm subject (maps, flags and the four QC figures), and each figure's size.

    python bench/report.py [--cohort DIR] [--subject sub-001] [--repeats 3] [--keep DIR]

The subject is synthetic: its four images brought into atlas space through the true transforms (what
co-registration delivers) and masked with the true brain mask (what skull stripping delivers); its true labels
stand in for the fused segmentation, and three members are the truth shifted by one voxel, with its core eroded,
and as is. The atlas is the built-in MNI152, whose grid the synthetic cohort shares. `--keep DIR` keeps the last
run's report folder (to look at the figures).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from bratsflow import paths, synth
from bratsflow.io import label_image_like, save_image
from bratsflow.labels import get_convention
from bratsflow.modalities import MODALITIES
from bratsflow.qc import ReportImages, report_subject


def members(labels: np.ndarray, convention: str) -> dict[str, np.ndarray]:
    """Three plausible members that disagree a little: shifted, core eroded, and the truth itself."""
    core = np.isin(labels, [get_convention(convention).labels[name] for name in ("NETC", "ET")])
    eroded = np.where(core & ~ndimage.binary_erosion(core, iterations=2),
                      get_convention(convention).labels["SNFH"], labels)
    return {"shifted": np.roll(labels, 2, axis=0), "eroded": eroded.astype(labels.dtype), "truth": labels}


def prepare(root: Path, sid: str, work: Path) -> dict:
    truth = paths.TruthFiles(root, sid)
    reference = nib.load(truth.labels)
    labels = np.asarray(reference.dataobj)
    brain = np.asarray(nib.load(truth.brain_mask).dataobj) > 0
    convention = synth.load_truth(root, sid)["label_convention"]
    stripped, coregistered = {}, {}
    for modality, data in synth.resample_native_to_atlas(root, sid).items():
        coregistered[modality] = save_image(nib.Nifti1Image(data.astype(np.float32), reference.affine),
                                            work / "coregister" / f"{modality}.nii.gz")
        stripped[modality] = save_image(nib.Nifti1Image(np.where(brain, data, 0).astype(np.float32),
                                                        reference.affine), work / "skullstrip" / f"{modality}.nii.gz")
    member_files = {name: save_image(label_image_like(data, reference), work / "segment" / f"{name}.nii.gz")
                    for name, data in members(labels, convention).items()}
    return {"segmentation": truth.labels, "members": member_files, "brain_mask": truth.brain_mask,
            "images": ReportImages(stripped, coregistered), "convention": convention}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohort", type=Path, help="an existing 1 mm synthetic cohort (default: synthesise one)")
    parser.add_argument("--subject", default="sub-001")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="copy the last run's report folder here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        work = Path(tmp)
        root = args.cohort
        if root is None:
            root = work / "cohort"
            synth.generate_cohort(root, 1, args.seed, only=[args.subject])
        inputs = prepare(root, args.subject, work)
        seconds, record = [], {}
        for repeat in range(args.repeats):
            out = work / f"report-{repeat}"
            start = time.perf_counter()
            record = report_subject(inputs["segmentation"], inputs["members"], inputs["brain_mask"], out,
                                    convention=inputs["convention"], images=inputs["images"],
                                    subject=args.subject)
            seconds.append(time.perf_counter() - start)
        grid = nib.load(inputs["segmentation"])
        print(f"grid {grid.shape} at {grid.header.get_zooms()[0]:g} mm, {len(inputs['members'])} members")
        print(f"report step: median {statistics.median(seconds):.2f} s over {args.repeats} runs "
              f"({', '.join(f'{s:.2f}' for s in seconds)})")
        print("phases of the last run: " + ", ".join(f"{k} {v:.2f} s" for k, v in record["timings_s"].items()))
        for name in paths.FIGURES:
            size = (out / paths.StepFiles(out, "report").figure(name).name).stat().st_size
            print(f"{name}.png: {size / 1000:.0f} kB")
        if args.keep:
            shutil.rmtree(args.keep, ignore_errors=True)
            shutil.copytree(out, args.keep)


if __name__ == "__main__":
    main()
