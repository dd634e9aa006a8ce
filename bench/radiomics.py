"""Radiomics time of one 1 mm subject: 5 regions × 4 modalities, original image only, then with LoG and wavelet.

    python bench/radiomics.py [--cohort DIR] [--subject sub-001] [--threads 2] [--repeats 3] [--filter-repeats 1]

The subject is synthetic: its four images brought into atlas space through the true transforms and masked with
the true brain mask (what skull stripping delivers), its true labels standing in for the fused segmentation.
`bratsflow radiomics` (files in, tables and record out) runs with 1 and with `--threads` worker processes.
Beside it, the baseline: pyradiomics as its documentation shows, one `RadiomicsFeatureExtractor.execute` per
region × modality on the image and label files (shape features every time, `preCrop` on), in one process, on the
same brain-normalised images; the largest relative difference between the two runs' features is printed too.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on the path, and its name would hide the pyradiomics package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import nibabel as nib
import numpy as np
import pandas as pd
import yaml

from bratsflow import paths, synth
from bratsflow.io import label_image_like, save_image
from bratsflow.labels import SUMMARY_REGIONS, region_mask
from bratsflow.radiomics import DEFAULT_PARAMS, load_params, radiomics_subject


def prepare(root: Path, sid: str, work: Path) -> dict[str, Path]:
    truth = paths.TruthFiles(root, sid)
    brain_img = nib.load(truth.brain_mask)
    brain = np.asarray(brain_img.dataobj) > 0
    files = {"segmentation": truth.labels, "brain_mask": truth.brain_mask}
    for modality, data in synth.resample_native_to_atlas(root, sid).items():
        files[modality] = save_image(nib.Nifti1Image(np.where(brain, data, 0).astype(np.float32), brain_img.affine),
                                     work / f"{modality}.nii.gz")
    return files


def cpu_seconds() -> float:
    """CPU time of this process and its finished worker processes: on a shared machine, wall time alone misleads."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def ours(files: dict[str, Path], filters: list[str], threads: int, out: Path) -> tuple[float, float, pd.DataFrame]:
    images = {m: files[m] for m in ("t1", "t1c", "t2", "flair")}
    start, cpu = time.perf_counter(), cpu_seconds()
    table = radiomics_subject(images, files["segmentation"], out, brain_mask=files["brain_mask"],
                              params=load_params(filters=filters), subject="bench", threads=threads)
    return time.perf_counter() - start, cpu_seconds() - cpu, table


def baseline_inputs(files: dict[str, Path], work: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Brain-normalised image files (the baseline's input) and one binary mask file per region."""
    params = load_params()
    brain = np.asarray(nib.load(files["brain_mask"]).dataobj) > 0
    images = {}
    for modality in ("t1", "t1c", "t2", "flair"):
        img = nib.load(files[modality])
        data = np.asarray(img.dataobj, dtype=np.float64)
        normalised = (data - data[brain].mean()) / data[brain].std(ddof=1) * params.scale
        images[modality] = save_image(nib.Nifti1Image(normalised, img.affine), work / f"norm_{modality}.nii.gz")
    seg = nib.load(files["segmentation"])
    labels = np.asarray(seg.dataobj)
    masks = {region: save_image(label_image_like(region_mask(labels, region, "brats2023"), seg),
                                work / f"mask_{region}.nii.gz") for region in SUMMARY_REGIONS}
    return images, masks


def baseline(images: dict[str, Path], masks: dict[str, Path], filters: list[str]) -> tuple[float, float, dict]:
    import radiomics
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    radiomics.setVerbosity(40)
    params = yaml.safe_load(DEFAULT_PARAMS.read_text())
    params["setting"] = {**params["setting"], "normalize": False, "preCrop": True}
    params["imageType"] = {"Original": {}, **{{"log": "LoG", "wavelet": "Wavelet"}[f]: {} for f in filters}}
    extractor = RadiomicsFeatureExtractor(params)
    features = {}
    start, cpu = time.perf_counter(), cpu_seconds()
    for region, mask in masks.items():
        for modality, image in images.items():
            result = extractor.execute(str(image), str(mask), label=1)
            features.update({(region, modality, *key.rsplit("_", 2)): float(value)
                             for key, value in result.items() if not key.startswith("diagnostics_")})
    return time.perf_counter() - start, cpu_seconds() - cpu, features


def largest_difference(table: pd.DataFrame, features: dict) -> float:
    worst = 0.0
    for row in table[table["feature_class"] != "volume"].itertuples():
        modality = row.modality if isinstance(row.modality, str) else "t1"  # shape: any modality's run
        expected = features[(row.region, modality, row.image_type, row.feature_class, row.feature)]
        scale = max(abs(expected), 1e-12)
        worst = max(worst, abs(row.value - expected) / scale if abs(row.value - expected) > 1e-10 else 0.0)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohort", type=Path, help="an existing 1 mm synthetic cohort (default: synthesise one)")
    parser.add_argument("--subject", default="sub-001")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the original-image configuration")
    parser.add_argument("--filter-repeats", type=int, default=1, help="runs with LoG and wavelet on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-radiomics-") as tmp:
        work = Path(tmp)
        root = args.cohort
        if root is None:
            root = work / "cohort"
            synth.generate_cohort(root, 1, args.seed, only=[args.subject])
        files = prepare(root, args.subject, work)
        labels = np.asarray(nib.load(files["segmentation"]).dataobj)
        voxels = {region: int(region_mask(labels, region, "brats2023").sum()) for region in SUMMARY_REGIONS}
        print(f"subject {args.subject} of {root}: 1 mm grid {labels.shape}; region voxels {voxels}")
        norm_images, masks = baseline_inputs(files, work)
        for name, filters, repeats in (("original", [], args.repeats),
                                       ("original+LoG(5 sigmas)+wavelet(8)", ["log", "wavelet"], args.filter_repeats)):
            runs = {1: [], args.threads: []}
            for _ in range(repeats):
                for threads in runs:
                    *seconds, table = ours(files, filters, threads, work / f"out{threads}")
                    runs[threads].append(seconds)
            base = [baseline(norm_images, masks, filters) for _ in range(repeats)]
            base_wall, base_cpu = (statistics.median(b[i] for b in base) for i in (0, 1))
            diff = largest_difference(table, base[-1][2])
            print(f"\n{name}: {len(table)} table rows, {repeats} run(s), medians of wall and CPU seconds; "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            for threads, values in runs.items():
                wall, cpu = (statistics.median(v[i] for v in values) for i in (0, 1))
                print(f"  bratsflow radiomics, {threads} process(es): {wall:7.1f} s wall, {cpu:7.1f} s CPU "
                      f"(baseline / this: {base_wall / wall:.2f} wall)")
            print(f"  baseline, pyradiomics per region x modality, 1 process: {base_wall:7.1f} s wall, "
                  f"{base_cpu:7.1f} s CPU")
            print(f"  largest relative feature difference to the baseline: {diff:.2e}")


if __name__ == "__main__":
    main()
