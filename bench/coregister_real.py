"""Co-registration on real scans: the shared glioma cases, realistic degradations of them, and inputs that must be
refused, with every registration's check values (alignment.py) beside the old absolute gate (NMI ≥ 1.12).

    python bench/coregister_real.py [--real ../shared/real] [--work DIR] [--cases tcga gli] [--variants ...]

Per case and variant it ingests the four images, runs the co-registration step with its checks switched off (so
every value is seen, also those a gate would refuse), and prints per registration: NMI before and after, overlap,
coverage, peak depth and its nearest rival, the seconds, and which gates the defaults would fail. Then, for each
good registration, the same checks on the result moved by known amounts: how far off a registration must be for
the peak check to refuse it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from bratsflow import degrade
from bratsflow.alignment import MovingImage, check_alignment, index_to_physical, perturbations
from bratsflow.cohort import MODALITIES, Subject
from bratsflow.coregister import CoregisterParams, _matrix, coregister, working_copy
from bratsflow.errors import BratsflowError
from bratsflow.ingest import ingest_subject
from bratsflow.io import to_ants

HERE = Path(__file__).resolve().parent
CASES = {
    "tcga": {m: f"tcga-du-7294/native_hdbet/{m}_hdbet_brain.nii.gz" for m in MODALITIES},
    "gli": {m: f"brats-gli-00001-000/BraTS-GLI-00001-000-{name}.nii.gz"
            for m, name in zip(MODALITIES, ("t1n", "t1c", "t2w", "t2f"))},
}
GOOD_VARIANTS = ("original", "thick", "crop", "bias_noise", "motion")
BAD_VARIANTS = ("flipped", "other_subject", "slab")
OLD_MIN_NMI = 1.12
NO_GATES = dict(min_overlap=0.0, min_coverage=0.0, min_peak=-1e9, min_nmi=1.0)


def degraded(img: nib.Nifti1Image, variant: str, rng: np.random.Generator) -> nib.Nifti1Image:
    if variant == "thick":
        return degrade.thick_slices(img, 5.0)
    if variant == "crop":
        return degrade.crop_top(img, 30.0)
    if variant == "bias_noise":
        return degrade.bias_noise(img, rng)
    if variant == "motion":
        return degrade.motion(img)
    return img


def variant_images(real: Path, case: str, variant: str, folder: Path, seed: int) -> dict[str, Path]:
    sources = {m: real / p for m, p in CASES[case].items()}
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = {}
    for modality, source in sources.items():
        img = degraded(nib.load(source), variant, rng)
        if modality == "flair" and variant == "flipped":
            img = degrade.upside_down(img)
        elif modality == "flair" and variant == "other_subject":
            img = nib.load(real / CASES[next(c for c in CASES if c != case)]["flair"])
        elif modality == "flair" and variant == "slab":
            img = degrade.slab(img)
        images[modality] = folder / f"{modality}.nii.gz"
        nib.save(img, images[modality])
    return images


def sensitivity(params: CoregisterParams, ingested: Path, out: Path, record: dict) -> list[tuple[str, float]]:
    """The T1c -> atlas check on the result moved by known amounts: how far off a result the checks refuse."""
    import ants

    from bratsflow.atlas import load_atlas

    atlas = load_atlas(params.atlas, params.atlas_mask)
    res = params.level_resolutions_mm[-1]
    grid = working_copy(to_ants(atlas.image), res)
    brain = ants.resample_image_to_target(to_ants(atlas.mask), grid, interp_type="nearestNeighbor").numpy() > 0
    core = ndi.distance_transform_edt(brain, sampling=grid.spacing) > params.atlas_core_margin_mm
    centre = record["centre"]
    moving = MovingImage(working_copy(ants.image_read(str(ingested / f"{centre}.nii.gz")), res))
    matrix = _matrix(str(out / "transforms" / f"{centre}-to-atlas.mat"))
    centre_lps = index_to_physical(grid)[:3, :3] @ np.argwhere(brain).mean(axis=0) + index_to_physical(grid)[:3, 3]
    scale = params.atlas_check_scale
    rows = []
    for shift in (2.0, 4.0, 6.0, 10.0):
        for name, move in perturbations(centre_lps, shift, shift).items():
            if name.startswith("+"):
                check = check_alignment(grid, brain, moving, matrix @ move, core=core,
                                        shift_mm=params.check_shift_mm * scale,
                                        angle_deg=params.check_angle_deg * scale)
                rows.append((name, check.peak, check.coverage))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=HERE.parent.parent / "shared" / "real")
    parser.add_argument("--work", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--variants", nargs="+", default=[*GOOD_VARIANTS, *BAD_VARIANTS],
                        choices=[*GOOD_VARIANTS, *BAD_VARIANTS])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7, help="seed of the degradations")
    parser.add_argument("--sensitivity", action="store_true", help="also move each good T1c->atlas result")
    args = parser.parse_args()

    defaults = CoregisterParams()
    params = replace(defaults, **NO_GATES)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-coregister-real-"))
    print(f"gates: min_overlap {defaults.min_overlap}, min_coverage {defaults.min_coverage}, min_peak "
          f"{defaults.min_peak}, min_nmi {defaults.min_nmi} (old: NMI >= {OLD_MIN_NMI}); work {work}")
    header = (f"{'case':<6}{'variant':<15}{'registration':<15}{'NMI0':>7}{'NMI':>7}{'overlap':>8}{'cover':>7}"
              f"{'peak':>7}  {'rival':<11}{'s':>6}  {'old':<5}{'new':<5}")
    print(header)
    summary = []
    for case in args.cases:
        for variant in args.variants:
            folder = work / case / variant
            images = variant_images(args.real, case, variant, folder / "input", args.seed)
            subject = Subject(f"{case}-{variant}", {m: str(p) for m, p in images.items()})
            try:
                ingest_subject(subject, folder / "ingest", spacing_range_mm=(0.2, 8.0))
                ingested = {m: folder / "ingest" / f"{m}.nii.gz" for m in MODALITIES}
                start = time.perf_counter()
                record = coregister(ingested, folder / "coregister", params, subject=subject.subject_id,
                                    threads=args.threads)
                seconds = time.perf_counter() - start
            except BratsflowError as exc:
                print(f"{case:<6}{variant:<15}error: {exc}")
                continue
            for modality, registration in record["registrations"].items():
                check = registration["checks"]
                old = "pass" if check["nmi"] >= OLD_MIN_NMI else "FAIL"
                failures = [key for key, value, floor in (
                    ("overlap", check["overlap"], defaults.min_overlap),
                    ("coverage", check["coverage"], defaults.min_coverage),
                    ("peak", check["peak"], defaults.min_peak), ("nmi", check["nmi"], defaults.min_nmi))
                    if value < floor]
                new = "FAIL" if failures else "pass"
                print(f"{case:<6}{variant:<15}{modality + '->' + registration['fixed']:<15}{check['nmi_before']:>7.3f}"
                      f"{check['nmi']:>7.3f}{check['overlap']:>8.3f}{check['coverage']:>7.3f}{check['peak']:>7.3f}  "
                      f"{check['nearest_rival']:<11}{registration['seconds']:>6.1f}  {old:<5}{new:<5}"
                      f"{' ' + ','.join(failures) if failures else ''}"
                      f"{' (kept as given)' if registration.get('method', '').startswith('kept') else ''}")
                summary.append({"case": case, "variant": variant, "registration": modality, **check,
                                "expected": "pass" if variant in GOOD_VARIANTS else
                                ("fail" if modality == "flair" else "pass"), "new": new, "old": old})
            print(f"{case:<6}{variant:<15}step {seconds:.1f} s (check phase {record['timings_s'].get('check', 0):.1f} s)")
            if args.sensitivity and variant in GOOD_VARIANTS:
                for name, peak, coverage in sensitivity(params, folder / "ingest", folder / "coregister", record):
                    print(f"{case:<6}{variant:<15}T1c->atlas moved {name:<10} peak {peak:7.3f} coverage {coverage:.3f}")
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    for key in ("overlap", "coverage", "peak", "nmi"):
        good = [row[key] for row in summary if row["expected"] == "pass"]
        bad = [row[key] for row in summary if row["expected"] == "fail"]
        if good:
            print(f"{key}: correct registrations min {min(good):.3f} (median {np.median(good):.3f})"
                  + (f"; inputs to refuse: max {max(bad):.3f}" if bad else ""))


if __name__ == "__main__":
    main()
