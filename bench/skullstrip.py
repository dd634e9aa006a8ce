"""Skull stripping on the synthetic cohort and on the shared real cases: mask Dice, kept fraction, decision, time.

    python bench/skullstrip.py --subjects 6 --seed 7 [--cohort DIR] [--scale 0.1] [--variants] [--before DIR]
    python bench/skullstrip.py --real ../shared/real --work DIR [--cases ...] [--before DIR]

Synthetic: each subject's four images are brought into atlas space through their true transforms (what
co-registration delivers, without its 0.2 mm error), so the numbers are skull stripping's alone. The phantom's
anatomy is the atlas' own, deformed smoothly with its affine part removed, which flatters any atlas-based method;
so every subject is also run after a random affine change of head size and shape (per-axis scale within
±`--scale`, shears within ±`--scale`/2) applied to its images and truth alike. `--variants` adds degraded copies of
the unchanged subject: 5 mm slices, the top 30 mm outside the field of view, the air set to exactly 0 (a raw
scan whose scanner zeroes the background: the most brain-like support a skull-on image has).

Real (`--real`): TCGA-DU-7294's native HD-BET brains and BraTS-GLI-00001-000 are co-registered by bratsflow (the
similarity gate lowered to 1.0; kept in `--work` and reused), the reference brain (TCGA: HD-BET's T1 mask;
BraTS: the T1's non-zero support) is carried into atlas space by the same transforms (nearest neighbour), and
each case is run as given and degraded in atlas space: 5 mm slices (box profile), the top 30 mm out of view, a
smooth bias field, noise inside the brain, and a raw-like copy with noise over the whole field of view of the
native T1 (the skull is still missing: no skull-on real scan is available) and that copy cropped at the top.

Every row runs the step's command line in a fresh process, for this checkout and, with `--before DIR` (the
`toolkit` folder of another checkout, e.g. a worktree of main), for that one too, side by side.
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

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to
from scipy import ndimage as ndi

import bratsflow
from bratsflow import synth
from bratsflow.atlas import load_atlas
from bratsflow.cohort import MODALITIES
from bratsflow.metrics import dice, hausdorff
from bratsflow.paths import TruthFiles

AFTER = Path(bratsflow.__file__).resolve().parents[1]
REAL_CASES = {
    "TCGA-DU-7294": {m: (f"tcga-du-7294/native_hdbet/{m}_hdbet_brain.nii.gz",
                         f"tcga-du-7294/native_hdbet/{m}_hdbet_mask.nii.gz") for m in MODALITIES},
    "BraTS-GLI-00001-000": {m: (f"brats-gli-00001-000/BraTS-GLI-00001-000-{name}.nii.gz", None)
                            for m, name in zip(MODALITIES, ("t1n", "t1c", "t2w", "t2f"))},
}


def strip(toolkit: Path, images: dict[str, Path], out: Path, *extra: str) -> dict:
    """The skullstrip command of the checkout at `toolkit` in a fresh process: mask, record and wall time."""
    command = [sys.executable, "-m", "bratsflow.cli", "--threads", "2", "skullstrip", "--out", str(out),
               *[f"--{m}={p}" for m, p in images.items()], *extra]
    start = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(toolkit)}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1], "seconds": seconds}
    return {"mask": np.asarray(nib.load(out / "brain_mask.nii.gz").dataobj) > 0,
            "record": json.loads((out / "skullstrip.json").read_text()), "seconds": seconds}


def scores(result: dict, reference: np.ndarray, view: np.ndarray | None = None) -> str:
    if "error" in result:
        return f"FAILED: {result['error']}"
    mask, record = result["mask"], result["record"]
    kept = np.count_nonzero(mask & reference) / np.count_nonzero(reference)
    outside = 0.0 if view is None else np.count_nonzero(mask & ~view) / 1000
    decided = record.get("input", {}).get("decided", "-")
    clipped = record.get("field_of_view", {}).get("clipped_ml", 0.0)
    return (f"Dice {dice(mask, reference):.4f} kept {100 * kept:6.2f} % {record['brain_volume_ml']:6.0f} mL "
            f"out-of-view {outside:5.1f} mL clipped {clipped:5.1f} mL  {decided:<8} {result['seconds']:5.1f} s")


def evidence(result: dict, modality: str = "t1") -> str:
    found = result.get("record", {}).get("input", {}).get("evidence", {}).get(modality)
    if found is None:
        return ""
    atlas, registered = (("-" if found[key] is None else format(found[key], ".4f"))
                         for key in ("outside_atlas", "outside_registered"))
    return f"support {found['support_ml']:6.0f} mL, outside atlas {atlas}, outside registered {registered}"


# Degradations in atlas space (z is the atlas' inferior-superior axis, pointing up).
def thick_slices(data: np.ndarray, mm: int = 5) -> np.ndarray:
    """A box slice profile of `mm` along z, interpolated back onto the 1 mm grid, as a thick-slice scan is."""
    n = data.shape[2] // mm * mm
    blocks = data[:, :, :n].reshape(data.shape[0], data.shape[1], -1, mm).mean(axis=3)
    centres = (np.arange(blocks.shape[2]) + 0.5) * mm - 0.5
    z = np.clip(np.arange(data.shape[2]), centres[0], centres[-1])
    index = np.interp(z, centres, np.arange(blocks.shape[2]))
    grid = np.meshgrid(np.arange(data.shape[0]), np.arange(data.shape[1]), index, indexing="ij")
    return ndi.map_coordinates(blocks, grid, order=1).astype(np.float32)


def crop_top(data: np.ndarray, top_z: int, mm: int = 30) -> np.ndarray:
    out = data.copy()
    out[:, :, top_z - mm + 1:] = 0
    return out


def bias(data: np.ndarray, amplitude: float = 0.3) -> np.ndarray:
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in data.shape]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    return data * np.exp(amplitude * (0.6 * x + 0.5 * z - 0.4 * x * y + 0.5 * z**2 - 0.3 * y**2))


def rician(data: np.ndarray, where: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = np.sqrt((data + rng.normal(0, sigma, data.shape)) ** 2 + rng.normal(0, sigma, data.shape) ** 2)
    return np.where(where, noisy, data).astype(np.float32)


def zero_air(data: np.ndarray) -> np.ndarray:
    """The background connected to the border set to exactly 0, as some scanners deliver it."""
    air = data < 0.1 * np.percentile(data[data > 0], 90)
    components, _ = ndi.label(air)
    border = np.unique(np.concatenate([components[[0, -1]].ravel(), components[:, [0, -1]].ravel(),
                                       components[:, :, [0, -1]].ravel()]))
    return np.where(np.isin(components, border[border > 0]), 0, data).astype(np.float32)


def real_case(root: Path, case: str, work: Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """The case co-registered (reused from `work`), its reference brain and the T1's native field of view in atlas
    space, and the atlas affine."""
    import ants

    from bratsflow.coregister import CoregisterParams, coregister

    files = REAL_CASES[case]
    out = work / case / "coregister"
    if not (out / "coregister.json").is_file():
        coregister({m: root / image for m, (image, _) in files.items()}, out, CoregisterParams(min_nmi=1.0),
                   subject=case, threads=2)
    record = json.loads((out / "coregister.json").read_text())
    atlas = ants.image_read(str(out / "t1.nii.gz"))
    chain = [str(out / "transforms" / name) for name in record["transforms"]["to_atlas"]["t1"]]
    image, mask = files["t1"]
    native = ants.image_read(str(root / (mask or image)))
    native = native.new_image_like((native.numpy() != 0).astype(np.float32))
    reference = ants.apply_transforms(atlas, native, chain, interpolator="nearestNeighbor").numpy() > 0
    covered = native.new_image_like(np.ones(native.shape, np.float32))
    view = ants.apply_transforms(atlas, covered, chain, interpolator="linear", defaultvalue=0).numpy() > 0
    images = {m: nib.load(out / f"{m}.nii.gz").get_fdata(dtype=np.float32) for m in MODALITIES}
    return images, reference, view, nib.load(out / "t1.nii.gz").affine


def real_variants(images, reference, view, rng):
    """(name, images, reference, field of view or None) for each degraded copy of a stripped real case."""
    top = int(np.argwhere(reference)[:, 2].max())
    noisy_view = {m: rician(d, view, 0.03 * np.percentile(d[reference], 90), rng) for m, d in images.items()}
    yield "as given", images, reference, None
    yield "5 mm slices", {m: thick_slices(d) for m, d in images.items()}, reference, None
    cropped = reference.copy()
    cropped[:, :, top - 29:] = False
    yield "top 30 mm cropped", {m: crop_top(d, top) for m, d in images.items()}, cropped, None
    yield "bias field", {m: bias(d) for m, d in images.items()}, reference, None
    yield "noise in brain", {m: rician(d, d != 0, 0.03 * np.percentile(d[reference], 90), rng)
                             for m, d in images.items()}, reference, None
    yield "raw-like (noisy view)", noisy_view, reference, view
    view_cropped = view.copy()
    view_cropped[:, :, top - 29:] = False
    yield ("raw-like, top 30 mm cut", {m: np.where(view_cropped, d, 0).astype(np.float32)
                                       for m, d in noisy_view.items()}, cropped, view_cropped)


def save(images: dict[str, np.ndarray], affine: np.ndarray, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for modality, data in images.items():
        paths[modality] = folder / f"{modality}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), paths[modality])
    return paths


def bench_real(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-skullstrip-real-"))
    for case in args.cases or REAL_CASES:
        images, reference, view, affine = real_case(args.real, case, work)
        print(f"{case}: reference brain {np.count_nonzero(reference) / 1000:.0f} mL, T1 field of view "
              f"{np.count_nonzero(view) / 1000:.0f} mL", flush=True)
        for name, variant, truth, variant_view in real_variants(images, reference, view, rng):
            folder = work / case / name.replace(" ", "_").replace(",", "")
            paths = save(variant, affine, folder / "images")
            rows = {"after": strip(AFTER, paths, folder / "after")}
            if args.before:
                rows["before"] = strip(args.before, paths, folder / "before")
            for code, result in rows.items():
                print(f"  {name:<24} {code:<6} {scores(result, truth, variant_view)}  {evidence(result)}",
                      flush=True)


def synthetic_variants(images: dict[str, np.ndarray], truth: np.ndarray):
    top = int(np.argwhere(truth)[:, 2].max())
    cropped = truth.copy()
    cropped[:, :, top - 29:] = False
    yield "5 mm slices", {m: thick_slices(d) for m, d in images.items()}, truth
    yield "top 30 mm cut", {m: crop_top(d, top) for m, d in images.items()}, cropped
    yield "5 mm, top 30 mm cut", {m: crop_top(thick_slices(d), top) for m, d in images.items()}, cropped
    yield "air zeroed", {m: zero_air(d) for m, d in images.items()}, truth


def random_affine(rng: np.random.Generator, scale: float, centre: np.ndarray) -> np.ndarray:
    """A world-space affine about `centre`: per-axis scale and shears."""
    linear = np.diag(1 + rng.uniform(-scale, scale, 3))
    linear[np.triu_indices(3, 1)] = rng.uniform(-scale / 2, scale / 2, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = linear
    matrix[:3, 3] = centre - linear @ centre
    return matrix


def deform(img: nib.Nifti1Image, matrix: np.ndarray, order: int) -> nib.Nifti1Image:
    """`img` with its content moved by the world affine `matrix`, on the same grid."""
    moved = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), matrix @ img.affine)
    return resample_from_to(moved, img, order=order)


def bench_synthetic(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-skullstrip-") as tmp:
        root = args.cohort or Path(tmp) / "cohort"
        if args.cohort is None:
            synth.generate_cohort(root, args.subjects, args.seed)
        rng = np.random.default_rng(args.seed)
        prior = np.asarray(load_atlas("mni152").mask.dataobj) > 0
        rows = []
        for sid in [synth.subject_id(k) for k in range(args.subjects)]:
            truth_img = nib.load(TruthFiles(root, sid).brain_mask)
            truth = np.asarray(truth_img.dataobj) > 0.5
            images = synth.resample_native_to_atlas(root, sid)
            centre = nib.affines.apply_affine(truth_img.affine, np.argwhere(truth).mean(0))
            matrix = random_affine(rng, args.scale, centre)
            changed = {m: deform(nib.Nifti1Image(d.astype(np.float32), truth_img.affine), matrix, 1).get_fdata(
                dtype=np.float32) for m, d in images.items()}
            cases = [("as synthesised", images, truth),
                     ("size/shape changed", changed, deform(truth_img, matrix, 1).get_fdata() > 0.5)]
            if args.variants:
                cases += list(synthetic_variants(images, truth))
            for case, variant, reference in cases:
                folder = Path(tmp) / f"{sid}-{len(rows)}"
                paths = save(variant, truth_img.affine, folder / "images")
                results = {"after": strip(AFTER, paths, folder / "after")}
                if args.before:
                    results["before"] = strip(args.before, paths, folder / "before")
                for code, result in results.items():
                    row = {"subject": sid, "case": case, "code": code, "seconds": result["seconds"]}
                    if "mask" in result:
                        row.update(dice=dice(result["mask"], reference),
                                   hd95=hausdorff(result["mask"], reference, truth_img.header.get_zooms()[:3]))
                    rows.append(row)
                    print(f"{sid}  {case:<20} {code:<6} {scores(result, reference)}  "
                          f"HD95 {row.get('hd95', float('nan')):5.2f} mm  {evidence(result)}  (atlas mask as is: "
                          f"Dice {dice(prior, reference):.4f})", flush=True)
    for case in dict.fromkeys(r["case"] for r in rows):
        for code in ("before", "after"):
            subset = [r for r in rows if r["case"] == case and r["code"] == code and "dice" in r]
            if subset:
                print(f"{case:<20} {code:<6} Dice min {min(r['dice'] for r in subset):.4f} median "
                      f"{statistics.median(r['dice'] for r in subset):.4f}; HD95 median "
                      f"{statistics.median(r['hd95'] for r in subset):.2f} mm, max "
                      f"{max(r['hd95'] for r in subset):.2f} mm; time median "
                      f"{statistics.median(r['seconds'] for r in subset):.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cohort", type=Path, help="an existing synthetic cohort (default: synthesise one)")
    parser.add_argument("--scale", type=float, default=0.1, help="size/shape change of the second run")
    parser.add_argument("--variants", action="store_true", help="also thick-slice, cropped and zero-air copies")
    parser.add_argument("--real", type=Path, help="the shared real cases' folder: bench those instead")
    parser.add_argument("--cases", nargs="+", choices=list(REAL_CASES), help="real cases: only these")
    parser.add_argument("--work", type=Path, help="real cases: keeps (and reuses) co-registrations and outputs")
    parser.add_argument("--before", type=Path, help="toolkit folder of another checkout to run side by side")
    args = parser.parse_args()
    if args.real:
        bench_real(args)
    else:
        bench_synthetic(args)


if __name__ == "__main__":
    main()
