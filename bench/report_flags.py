"""Do the report's QC flags fire where they should? Each subject as delivered, with its atlas-space FLAIR moved by
10 mm (a misregistration that slipped through), and with an empty fused segmentation; prints the flags of each.

    python bench/report_flags.py --results RESULTS [--subjects ID ...]   # a finished run's results folder
    python bench/report_flags.py --synthetic [--seed 42]                  # one 1 mm synthetic subject (bench/report.py)

The report runs exactly as its rule runs it (records, images, members of the run); only the one input of each
variant is replaced, in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from bratsflow import paths, synth
from bratsflow.io import label_image_like, save_image
from bratsflow.modalities import MODALITIES
from bratsflow.qc import ReportImages, report_subject

SHIFT_MM = 10.0


def run_inputs(results: Path, sid: str) -> dict:
    """The report rule's inputs for one subject of a finished run."""
    fused = json.loads(paths.step_files(results, sid, "fuse").record.read_text())["parameters"]
    members = fused["members"]
    present = [m for m in MODALITIES if paths.step_image(results, sid, "coregister", m).is_file()]
    return {"segmentation": paths.fused_segmentation(results, sid),
            "members": {name: paths.segment_member(results, sid, name) for name in members},
            "brain_mask": paths.brain_mask(results, sid),
            "images": ReportImages({m: paths.step_image(results, sid, "skullstrip", m) for m in present},
                                   {m: paths.step_image(results, sid, "coregister", m) for m in present}),
            "coregister_record": paths.step_record(results, sid, "coregister"),
            "skullstrip_record": paths.step_record(results, sid, "skullstrip"),
            "convention": fused["convention"]}


def synthetic_inputs(seed: int, work: Path) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from report import prepare

    root = work / "cohort"
    synth.generate_cohort(root, 1, seed, only=["sub-001"])
    return prepare(root, "sub-001", work / "synthetic")


def moved_flair(inputs: dict, work: Path) -> dict:
    """The same inputs with the atlas-space FLAIR (skull on and stripped) moved by SHIFT_MM along x."""
    images = inputs["images"]
    moved = {}
    for kind, files in (("stripped", images.stripped), ("coregistered", images.coregistered)):
        img = nib.load(files["flair"])
        shift = SHIFT_MM / img.header.get_zooms()[0]
        data = ndimage.shift(np.asarray(img.dataobj, dtype=np.float32), (shift, 0, 0), order=1)
        moved[kind] = {**files, "flair": save_image(nib.Nifti1Image(data, img.affine), work / kind / "flair.nii.gz")}
    return {**inputs, "images": ReportImages(moved["stripped"], moved["coregistered"], images.atlas,
                                             images.atlas_mask)}


def empty_segmentation(inputs: dict, work: Path) -> dict:
    fused = nib.load(inputs["segmentation"])
    empty = save_image(label_image_like(np.zeros(fused.shape, np.uint8), fused), work / "empty.nii.gz")
    return {**inputs, "segmentation": empty}


def flags_of(inputs: dict, out: Path, sid: str) -> list[str]:
    record = report_subject(inputs["segmentation"], inputs["members"], inputs["brain_mask"], out,
                            convention=inputs["convention"], images=inputs["images"], subject=sid,
                            coregister_record=inputs.get("coregister_record"),
                            skullstrip_record=inputs.get("skullstrip_record"))
    nmi = ", ".join(f"{m} {v:.3f}" for m, v in record["image_nmi"].items())
    return [f["flag"] for f in record["flags"]], nmi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, help="a finished run's results folder")
    parser.add_argument("--subjects", nargs="+", help="subjects of --results (default: every one with a report)")
    parser.add_argument("--synthetic", action="store_true", help="one synthetic 1 mm subject instead")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if (args.results is None) == (not args.synthetic):
        parser.error("give --results or --synthetic")
    with tempfile.TemporaryDirectory(prefix="bench-report-flags-") as tmp:
        work = Path(tmp)
        if args.synthetic:
            cases = {"synthetic sub-001": synthetic_inputs(args.seed, work)}
        else:
            subjects = args.subjects or sorted(p.parent.parent.name for p in args.results.glob("*/report/report.json"))
            cases = {sid: run_inputs(args.results, sid) for sid in subjects}
        print(f"{'subject':<24} {'variant':<26} {'flags':<40} image NMI with the reference")
        for sid, inputs in cases.items():
            for variant, make in (("as delivered", lambda i, w: i), (f"FLAIR moved {SHIFT_MM:g} mm", moved_flair),
                                  ("empty segmentation", empty_segmentation)):
                folder = work / sid.replace(" ", "_") / variant.replace(" ", "_")
                folder.mkdir(parents=True)
                flags, nmi = flags_of(make(inputs, folder), folder / "report", sid.split()[-1])
                print(f"{sid:<24} {variant:<26} {', '.join(flags) or '(clean)':<40} {nmi}")
                shutil.rmtree(folder)


if __name__ == "__main__":
    main()
