"""`bratsflow report` (one subject's ensemble uncertainty and QC flags) and `bratsflow report-cohort` (the cohort's
volume and QC tables)."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from ..labels import CONVENTIONS, DEFAULT_CONVENTION
from ..modalities import MODALITIES
from ..qc import QCParams


def add_commands(commands) -> None:
    defaults = QCParams()
    report = commands.add_parser("report", help="ensemble uncertainty maps and QC flags of one subject")
    report.add_argument("--segmentation", type=Path, required=True, help="the fused segmentation")
    report.add_argument("--members", type=Path, nargs="+", required=True, metavar="SEG",
                        help="the members' label maps")
    report.add_argument("--names", nargs="+", metavar="NAME", help="member names (default: the file names)")
    report.add_argument("--brain-mask", type=Path, required=True, help="skull stripping's brain mask")
    report.add_argument("--convention", choices=sorted(CONVENTIONS), default=DEFAULT_CONVENTION)
    report.add_argument("--out", type=Path, required=True, help="output folder")
    report.add_argument("--subject", help="subject id, for messages and records")
    report.add_argument("--missing-modalities", nargs="*", default=[], choices=MODALITIES, metavar="MODALITY",
                        help="modalities the subject ran without (recorded; missing_modalities: run-available)")
    for field in fields(QCParams):
        default = getattr(defaults, field.name)
        report.add_argument(f"--{field.name.replace('_', '-')}", type=float, default=default,
                            help=f"QC threshold (config report.{field.name}; default {default:g})")
    report.set_defaults(func=run_report)

    cohort = commands.add_parser("report-cohort", help="gather the subjects' report records into cohort tables")
    cohort.add_argument("records", nargs="+", type=Path, help="the subjects' report/report.json")
    cohort.add_argument("--volumes", type=Path, required=True, help="volume table, one row per subject (.csv)")
    cohort.add_argument("--qc", type=Path, required=True, help="QC table, one row per subject (.tsv)")
    cohort.set_defaults(func=run_report_cohort)


def run_report(args: argparse.Namespace) -> None:
    from ..errors import ConfigError
    from ..qc import report_subject

    names = args.names or [path.name.removesuffix(".nii.gz") for path in args.members]
    if len(names) != len(args.members):
        raise ConfigError(f"{len(names)} names for {len(args.members)} members")
    params = QCParams(**{field.name: getattr(args, field.name) for field in fields(QCParams)})
    report_subject(args.segmentation, dict(zip(names, args.members)), args.brain_mask, args.out,
                   convention=args.convention, params=params, subject=args.subject,
                   missing_modalities=args.missing_modalities)


def run_report_cohort(args: argparse.Namespace) -> None:
    from ..io import save_table
    from ..qc import cohort_tables

    volumes, qc = cohort_tables(args.records)
    save_table(volumes, args.volumes)
    save_table(qc, args.qc)
