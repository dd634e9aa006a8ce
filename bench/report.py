"""Report step time per 1 mm subject (maps, flags and the four QC figures), phase by phase, and each figure's size;
with `--before`, this checkout against another side by side.

    python bench/report.py [--results RESULTS [--subjects ID ...]] [--before OTHER/toolkit] [--rounds 3] [--keep DIR]

Each round runs `bratsflow report` in a fresh process as its rule runs it (workflow/rules/report.smk: the same
arguments, thresholds from config/config.yaml, one thread), once per checkout, the order of the two alternating
from call to call so that both see the same machine load. Prints the median of each phase (the record's
`timings_s`; "start and rest": process start, imports, checksums and the record), of the whole command, of its CPU
time and, with `--before`, the ratio after / before, then whether the two checkouts wrote the same record values,
maps and figures. The load average is printed with each run: the wall clock of a busy machine says little.

`--results`: a finished run's results folder (subjects with a fused segmentation; default every one). Without
it, one synthetic subject: its four images brought into atlas space through the true transforms (what
co-registration delivers) and masked with the true brain mask (what skull stripping delivers); its true labels
stand in for the fused segmentation, and three members are the truth shifted by two voxels, with its core eroded,
and as is. The atlas is the built-in MNI152, whose grid the synthetic cohort shares. `--keep DIR` keeps the last
run's report folders (to look at the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml
from scipy import ndimage

from bratsflow import paths, synth
from bratsflow.io import label_image_like, save_image
from bratsflow.labels import get_convention
from bratsflow.modalities import MODALITIES
from bratsflow.qc import ReportImages
from report_flags import run_inputs

HERE = Path(__file__).resolve().parent
CONFIG = yaml.safe_load((HERE.parent / "config" / "config.yaml").read_text())
# Record values that must not change with the code's speed (the rest are timings, versions and checksums).
VALUES = ("members", "missing_modalities", "volumes_ml", "agreement", "tumour_outside_brain",
          "mask_border_contact_cm2", "image_nmi", "metrics", "flags")
REST = "start and rest"


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


def command(inputs: dict, sid: str, out: Path) -> list[str]:
    """The report rule's command line for `inputs` (prepare's or report_flags.run_inputs' dict)."""
    images = inputs["images"]
    present = list(images.coregistered)
    records = [arg for key in ("coregister_record", "skullstrip_record") if inputs.get(key)
               for arg in (f"--{key.replace('_', '-')}", str(inputs[key]))]
    thresholds = [arg for key, value in CONFIG["report"].items() for arg in (f"--{key.replace('_', '-')}", str(value))]
    return [sys.executable, "-m", "bratsflow.cli", "report", "--subject", sid,
            "--segmentation", str(inputs["segmentation"]), "--members", *map(str, inputs["members"].values()),
            "--names", *inputs["members"], "--brain-mask", str(inputs["brain_mask"]), *records,
            "--convention", inputs["convention"], *thresholds,
            "--missing-modalities", *[m for m in MODALITIES if m not in present],
            "--skullstrip-dir", str(Path(images.stripped[present[0]]).parent),
            "--coregister-dir", str(Path(images.coregistered[present[0]]).parent),
            "--atlas", CONFIG["coregister"]["atlas"], "--out", str(out)]


def run(toolkit: Path, inputs: dict, sid: str, out: Path) -> dict[str, float]:
    """One fresh process of the report step: seconds per phase, the rest and the whole command, and its CPU
    seconds (user and system: on a shared machine steadier than the wall clock)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command(inputs, sid, out), env={**os.environ, "PYTHONPATH": str(toolkit)},
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{toolkit}: {done.stderr.strip()}")
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = now.ru_utime - used.ru_utime + now.ru_stime - used.ru_stime
    phases = json.loads(paths.StepFiles(out, "report").record.read_text())["timings_s"]
    return {**phases, REST: seconds - sum(phases.values()), "total": seconds, "total CPU": cpu}


def differences(before: Path, after: Path) -> list[str]:
    """What differs between two report folders of the same inputs: record values, maps, figures."""
    found = []
    files = {code: paths.StepFiles(folder, "report") for code, folder in (("before", before), ("after", after))}
    records = {code: json.loads(f.record.read_text()) for code, f in files.items()}
    found += [f"record {key}" for key in VALUES if records["before"].get(key) != records["after"].get(key)]
    for name in ("votes", "disagreement"):
        arrays = [np.asarray(nib.load(getattr(f, name)).dataobj) for f in files.values()]
        if arrays[0].shape != arrays[1].shape or not np.array_equal(arrays[0], arrays[1]):
            found.append(f"{name} map")
    from PIL import Image

    for name in paths.FIGURES:
        pngs = [f.figure(name) for f in files.values()]
        if pngs[0].read_bytes() == pngs[1].read_bytes():
            continue
        pixels = [np.asarray(Image.open(png).convert("RGB"), dtype=np.int16) for png in pngs]
        if pixels[0].shape != pixels[1].shape:
            found.append(f"{name}.png size {pixels[0].shape[:2]} -> {pixels[1].shape[:2]}")
        else:
            changed = np.any(pixels[0] != pixels[1], axis=-1)
            found.append(f"{name}.png {int(changed.sum())} of {changed.size} pixels")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, help="a finished run's results folder (default: one synthetic subject)")
    parser.add_argument("--subjects", nargs="+", help="subjects of --results (default: every one)")
    parser.add_argument("--cohort", type=Path, help="an existing 1 mm synthetic cohort (default: synthesise one)")
    parser.add_argument("--subject", default="sub-001", help="the synthetic subject")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--before", type=Path, help="toolkit folder of the checkout to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="copy the last round's report folders here")
    args = parser.parse_args()
    codes = {"after": (HERE.parent / "toolkit").resolve()}
    if args.before:
        codes = {"before": args.before.resolve(), **codes}
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        work = Path(tmp)
        if args.results:
            subjects = args.subjects or sorted(sid for sid in os.listdir(args.results)
                                               if paths.fused_segmentation(args.results, sid).is_file())
            cases = {sid: run_inputs(args.results, sid) for sid in subjects}
        else:
            root = args.cohort
            if root is None:
                root = work / "cohort"
                synth.generate_cohort(root, 1, args.seed, only=[args.subject])
            cases = {args.subject: prepare(root, args.subject, work / "synthetic")}
        times = {(sid, code): [] for sid in cases for code in codes}
        call = 0
        for round_index in range(args.rounds):
            for sid, inputs in cases.items():
                order = list(codes) if call % 2 == 0 else list(reversed(codes))
                call += 1
                for code in order:
                    seconds = run(codes[code], inputs, sid, work / code / sid)
                    times[sid, code].append(seconds)
                    print(f"round {round_index + 1} {sid} {code:<6} {seconds['total']:5.1f} s "
                          f"({seconds['total CPU']:.1f} s CPU)  load {os.getloadavg()[0]:.1f}", flush=True)
        for sid in cases:
            print(f"\n{sid}: median of {args.rounds} runs (s)")
            phases = list(dict.fromkeys(phase for code in codes for run_times in times[sid, code] for phase in run_times))
            print(f"  {'phase':<16}" + "".join(f"{code:>8}" for code in codes) + ("   after/before" if args.before else ""))
            for phase in phases:
                medians = {code: statistics.median(t.get(phase, 0.0) for t in times[sid, code]) for code in codes}
                ratio = f"   {medians['after'] / medians['before']:.2f}" if args.before and medians["before"] else ""
                print(f"  {phase:<16}" + "".join(f"{medians[code]:8.2f}" for code in codes) + ratio)
            sizes = ", ".join(f"{name} {paths.StepFiles(work / 'after' / sid, 'report').figure(name).stat().st_size / 1000:.0f}"
                              for name in paths.FIGURES)
            print(f"  figures (kB): {sizes}")
            if args.before:
                found = differences(work / "before" / sid, work / "after" / sid)
                print("  before and after: " + ("the same record values, maps and figures" if not found else
                                                "differ in " + "; ".join(found)))
        if args.keep:
            for sid in cases:
                for code in codes:
                    shutil.rmtree(args.keep / code / sid, ignore_errors=True)
                    shutil.copytree(work / code / sid, args.keep / code / sid)


if __name__ == "__main__":
    main()
