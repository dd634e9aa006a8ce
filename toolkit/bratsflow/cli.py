"""Command line: one subcommand per step; each parses its arguments and calls the step's function."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .cohort import MODALITIES, Subject, find_subject, load_cohort, validate_subject_id
from .errors import BratsflowError

log = logging.getLogger("bratsflow")


def _add_modality_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    for modality in MODALITIES:
        parser.add_argument(f"--{modality}", type=Path, required=required, metavar="PATH",
                            help=f"{modality} image (NIfTI file or DICOM series folder)")


def cmd_synth(args: argparse.Namespace) -> None:
    from .synth import SynthParams, generate_cohort, montage

    params = SynthParams(resolution_mm=args.resolution, convention=args.convention)
    subjects = generate_cohort(args.out, args.subjects, args.seed, params, only=args.only)
    if args.montage:
        montage(args.out, (args.only or subjects)[0], args.montage)


def cmd_ingest(args: argparse.Namespace) -> None:
    from .ingest import ingest_subject

    explicit = {m: getattr(args, m) for m in MODALITIES if getattr(args, m) is not None}
    if args.samples or args.bids:
        if explicit:
            raise BratsflowError("give either --samples/--bids or the four image paths, not both")
        subject = find_subject(load_cohort(samples=args.samples, bids=args.bids), args.subject)
    else:
        missing = [m for m in MODALITIES if m not in explicit]
        if missing:
            raise BratsflowError(f"missing --{' --'.join(missing)} (or give --samples / --bids)")
        validate_subject_id(args.subject)
        subject = Subject(args.subject, explicit)
    ingest_subject(subject, args.out, orientation=args.orientation,
                   spacing_range_mm=(args.min_spacing, args.max_spacing))


def limit_threads(threads: int) -> None:
    """Pin every thread pool to the rule's `threads:`, so runs are reproducible and do not oversubscribe."""
    import SimpleITK as sitk
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def cmd_ingest_table(args: argparse.Namespace) -> None:
    from .ingest import cohort_table

    args.out.parent.mkdir(parents=True, exist_ok=True)
    cohort_table(args.records).to_csv(args.out, sep="\t", index=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bratsflow", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bratsflow {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for numerical libraries (BLAS, ITK); results are reproducible per count")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser("synth", help="generate a synthetic BraTS-like cohort (BIDS + ground truth)")
    synth.add_argument("--out", type=Path, required=True, help="output BIDS root")
    synth.add_argument("--subjects", type=int, default=3, help="number of subjects (default 3)")
    synth.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    synth.add_argument("--resolution", type=float, default=1.0,
                       help="atlas resolution in mm; 1 is real size, 2–4 make small test volumes (default 1)")
    synth.add_argument("--convention", choices=["brats2023", "brats2021"], default="brats2023",
                       help="label convention of the ground truth (default brats2023)")
    synth.add_argument("--only", nargs="+", metavar="SUBJECT", help="generate only these subjects of the cohort")
    synth.add_argument("--montage", type=Path, metavar="PNG",
                       help="also save a QC montage of the first generated subject")
    synth.set_defaults(func=cmd_synth)

    ingest = commands.add_parser("ingest", help="validate, convert and reorient one subject's images")
    ingest.add_argument("--subject", required=True, help="subject id")
    source = ingest.add_mutually_exclusive_group()
    source.add_argument("--samples", type=Path, help="sample sheet (TSV) that lists the subject")
    source.add_argument("--bids", type=Path, help="BIDS root that holds the subject")
    _add_modality_arguments(ingest, required=False)
    ingest.add_argument("--out", type=Path, required=True, help="output folder for the subject's ingest step")
    ingest.add_argument("--orientation", default="RAS", help="axis codes of the output (default RAS)")
    ingest.add_argument("--min-spacing", type=float, default=0.2, help="smallest plausible voxel size, mm")
    ingest.add_argument("--max-spacing", type=float, default=8.0, help="largest plausible voxel size, mm")
    ingest.set_defaults(func=cmd_ingest)

    table = commands.add_parser("ingest-table", help="gather ingest.json records into one cohort table (TSV)")
    table.add_argument("--out", type=Path, required=True, help="output TSV")
    table.add_argument("records", nargs="+", type=Path, help="ingest.json files")
    table.set_defaults(func=cmd_ingest_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    limit_threads(args.threads)
    try:
        args.func(args)
    except BratsflowError as exc:
        print(f"bratsflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
