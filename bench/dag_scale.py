"""How long Snakemake takes to plan a cohort: `snakemake -n` with the SLURM profile over generated sample sheets
of growing size (every image a link to one real NIfTI file, so the DAG sees existing inputs as on a real cohort),
side by side with a 10-subject baseline; prints the median wall and CPU time per size and the time per subject.
The cohort is configured with an ensemble of --members segmentation members (0: no segmentation), so the plan
holds every step through fusion, radiomics and the cohort's tables; a dry run does not read the members' models.
With --alternation, the same dry runs also go through the Snakefile as it was before: the subject wildcard
constrained by an alternation of every id of the cohort instead of the id character set.

    python bench/dag_scale.py --subjects 10 100 1000 --repeats 3 --alternation
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bratsflow.cohort import MODALITIES
from bratsflow.paths import bids_image_path
from bratsflow.synth import SynthParams, generate_cohort

REPO = Path(__file__).resolve().parents[1]


def write_sheet(folder: Path, image: Path, subjects: int) -> Path:
    rows = ["\t".join(["subject_id", *MODALITIES])]
    for index in range(1, subjects + 1):
        subject = folder / f"P{index:05d}"
        subject.mkdir()
        for modality in MODALITIES:
            (subject / f"{modality}.nii.gz").symlink_to(image)
        rows.append("\t".join([subject.name, *(f"{subject.name}/{m}.nii.gz" for m in MODALITIES)]))
    sheet = folder / "subjects.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    return sheet


def alternation_snakefile(folder: Path) -> Path:
    """The Snakefile with the former subject constraint, an alternation of the cohort's ids; beside a link to the
    rules, which it includes relative to itself."""
    source = (REPO / "Snakefile").read_text()
    constraint = re.search(r"^wildcard_constraints:\n    subject=.*$", source, re.MULTILINE)
    if not constraint:
        sys.exit("dag_scale: the Snakefile's subject wildcard constraint was not found")
    alternation = 'wildcard_constraints:\n    subject="|".join(re.escape(s) for s in SUBJECTS),'
    folder.mkdir()
    (folder / "workflow").symlink_to(REPO / "workflow")
    snakefile = folder / "Snakefile"
    snakefile.write_text("import re\n" + source[: constraint.start()] + alternation + source[constraint.end():])
    return snakefile


def ensemble_config(folder: Path, members: int) -> Path:
    config = folder / "ensemble.yaml"
    names = [f"member_{index}" for index in range(1, members + 1)]
    config.write_text(yaml.safe_dump({"segment": {"members": [
        {"name": name, "model": str(folder / name)} for name in names]}, "fuse": {"method": "mean"}}))
    return config


def dry_run(sheet: Path, results: Path, extra: list[str]) -> tuple[float, float, int]:
    """Wall time and CPU time (user + system; robust to other load on the machine) of one dry run, and the number
    of jobs it planned."""
    command = [
        shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake", "-n", "--nolock",
        "--workflow-profile", "config/profiles/slurm", "--config", f"samples={sheet}", f"results={results}", *extra,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if result.returncode != 0:
        sys.exit(f"dry run failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    total = re.search(r"^total\s+(\d+)", result.stdout, re.MULTILINE)
    return seconds, cpu, int(total.group(1)) if total else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--members", type=int, default=3, help="segmentation members of the ensemble (default 3)")
    parser.add_argument("--quiet", action="store_true", help="also time `-n --quiet` (no per-job listing)")
    parser.add_argument("--alternation", action="store_true",
                        help="also time the former constraint (alternation of the cohort's ids)")
    args = parser.parse_args()
    sizes = sorted(set([10, *args.subjects]))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_cohort(tmp / "one", 1, 7, SynthParams(resolution_mm=3.0))
        image = bids_image_path(tmp / "one", "sub-001", "t1")
        sheets = {}
        for size in sizes:
            (tmp / str(size)).mkdir()
            sheets[size] = write_sheet(tmp / str(size), image, size)
        common = ["--configfile", str(ensemble_config(tmp, args.members))] if args.members else []
        variants = {"-n": []}
        if args.quiet:
            variants["-n --quiet"] = ["--quiet"]
        if args.alternation:
            variants["-n altern."] = ["--snakefile", str(alternation_snakefile(tmp / "alternation"))]
        timings = {(variant, size): [] for variant in variants for size in sizes}
        cpu = {key: [] for key in timings}
        jobs = {}
        # Sizes interleaved within each repeat, so that machine load drifts alike over all of them.
        for _ in range(args.repeats):
            for variant, extra in variants.items():
                for size in sizes:
                    seconds, cpu_seconds, planned = dry_run(sheets[size], tmp / f"results{size}", [*common, *extra])
                    timings[variant, size].append(seconds)
                    cpu[variant, size].append(cpu_seconds)
                    jobs[size] = planned or jobs.get(size, 0)
    baseline = {variant: statistics.median(timings[variant, 10]) for variant in variants}
    print(f"snakemake dry run with config/profiles/slurm, {args.members} segmentation members, "
          f"median of {args.repeats}")
    print(f"{'variant':<12} {'subjects':>8} {'jobs':>6} {'wall s':>7} {'min s':>6} {'CPU s':>6} "
          f"{'ms/subject':>10} {'x 10 subj.':>10} {'x -n':>6}")
    for (variant, size), values in timings.items():
        median = statistics.median(values)
        print(f"{variant:<12} {size:>8} {jobs[size]:>6} {median:>7.2f} {min(values):>6.2f} "
              f"{statistics.median(cpu[variant, size]):>6.2f} {1000 * median / size:>10.1f} "
              f"{median / baseline[variant]:>10.2f} {median / statistics.median(timings['-n', size]):>6.2f}")


if __name__ == "__main__":
    main()
