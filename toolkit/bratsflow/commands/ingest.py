"""`bratsflow ingest` (one subject's images checked, converted, reoriented) and `bratsflow ingest-table`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..availability import DEFAULT_POLICY, POLICIES, Need
from ..dicom_study import DEFAULT_TIE, TIE_POLICIES
from ..errors import BratsflowError
from ..ingest import DEFAULT_ORIENTATION, DEFAULT_SPACING_RANGE_MM
from ..modalities import MODALITIES
from . import add_modality_arguments, given_images


def add_commands(commands) -> None:
    ingest = commands.add_parser("ingest", help="validate, convert and reorient one subject's images")
    ingest.add_argument("--subject", required=True, help="subject id")
    source = ingest.add_mutually_exclusive_group()
    source.add_argument("--samples", type=Path, help="sample sheet (TSV) that lists the subject")
    source.add_argument("--bids", type=Path, help="BIDS root that holds the subject")
    add_modality_arguments(ingest)
    ingest.add_argument("--dicom", type=Path, metavar="FOLDER",
                        help="a DICOM study folder: the modalities not given as paths come from its series")
    ingest.add_argument("--dicom-rules", type=Path, metavar="YAML",
                        help="rules that sort a study's series into modalities (default: bratsflow's, "
                             "config/dicom_rules.yaml)")
    ingest.add_argument("--dicom-tie", choices=TIE_POLICIES, default=DEFAULT_TIE,
                        help="two equally preferred series for one modality: fail (default) or take the latest")
    ingest.add_argument("--out", type=Path, required=True, help="output folder for the subject's ingest step")
    ingest.add_argument("--orientation", default=DEFAULT_ORIENTATION,
                        help=f"axis codes of the output (default {DEFAULT_ORIENTATION})")
    ingest.add_argument("--min-spacing", type=float, default=DEFAULT_SPACING_RANGE_MM[0],
                        help="smallest plausible voxel size, mm")
    ingest.add_argument("--max-spacing", type=float, default=DEFAULT_SPACING_RANGE_MM[1],
                        help="largest plausible voxel size, mm")
    ingest.add_argument("--missing-modalities", choices=POLICIES, default=DEFAULT_POLICY,
                        help="fail (default): a subject needs all four modalities; run-available: go on with "
                             "the modalities that have an image")
    ingest.add_argument("--need", type=Need.parse, action="append", default=[], metavar="STEP=MOD[,MOD]",
                        help="run-available: a step that needs one of these modalities (repeatable; e.g. "
                             "coregister=t1c,t1)")
    ingest.set_defaults(func=run_ingest)

    table = commands.add_parser("ingest-table", help="gather ingest.json records into one cohort table (TSV)")
    table.add_argument("--out", type=Path, required=True, help="output TSV")
    table.add_argument("records", nargs="+", type=Path, help="ingest.json files")
    table.set_defaults(func=run_ingest_table)


def run_ingest(args: argparse.Namespace) -> None:
    from ..cohort import Subject, find_subject, load_cohort, validate_subject_id
    from ..ingest import ingest_subject

    explicit = given_images(args)
    if args.samples or args.bids:
        if explicit or args.dicom:
            raise BratsflowError("give either --samples/--bids or the image paths (--dicom), not both")
        subject = find_subject(load_cohort(samples=args.samples, bids=args.bids), args.subject)
    elif args.dicom:
        validate_subject_id(args.subject)
        subject = Subject(args.subject, explicit, study=args.dicom)
    else:
        missing = [m for m in MODALITIES if m not in explicit]
        if missing and args.missing_modalities == "fail":
            raise BratsflowError(f"missing --{' --'.join(missing)} (or give --samples / --bids, or "
                                 f"--missing-modalities run-available)")
        validate_subject_id(args.subject)
        subject = Subject(args.subject, explicit, {m: f"no --{m} given" for m in missing}, frozenset(missing))
    ingest_subject(subject, args.out, orientation=args.orientation,
                   spacing_range_mm=(args.min_spacing, args.max_spacing), policy=args.missing_modalities,
                   needs=tuple(args.need), dicom_rules=args.dicom_rules, dicom_tie=args.dicom_tie)


def run_ingest_table(args: argparse.Namespace) -> None:
    from ..ingest import cohort_table
    from ..io import save_table

    save_table(cohort_table(args.records), args.out)
