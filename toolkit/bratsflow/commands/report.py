"""`bratsflow report` (one subject's ensemble uncertainty, QC flags and QC figures), `bratsflow report-cohort` (the
cohort's volume and QC tables) and `bratsflow report-html` (the cohort's HTML report)."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from ..labels import CONVENTIONS, DEFAULT_CONVENTION
from ..modalities import MODALITIES
from ..qc import QCParams, ReportImages


def add_commands(commands) -> None:
    defaults = QCParams()
    report = commands.add_parser("report", help="ensemble uncertainty maps, QC flags and QC figures of one subject")
    report.add_argument("--segmentation", type=Path, required=True, help="the fused segmentation")
    report.add_argument("--members", type=Path, nargs="+", required=True, metavar="SEG",
                        help="the members' label maps")
    report.add_argument("--names", nargs="+", metavar="NAME", help="member names (default: the file names)")
    report.add_argument("--probabilities", nargs="*", metavar="NAME=NPZ",
                        help="the probability files of the members that write one: the entropy of their mean "
                             "probability (report/probability_entropy.nii.gz); given with none, the map is written "
                             "as NaN (the subject's members that write probabilities were all skipped)")
    report.add_argument("--brain-mask", type=Path, required=True, help="skull stripping's brain mask")
    report.add_argument("--convention", choices=sorted(CONVENTIONS), default=DEFAULT_CONVENTION)
    figures = report.add_argument_group("QC figures", "drawn when both image folders are given")
    figures.add_argument("--skullstrip-dir", type=Path, help="skull stripping's folder (its atlas-space images)")
    figures.add_argument("--coregister-dir", type=Path, help="co-registration's folder (its atlas-space images)")
    figures.add_argument("--atlas", default=ReportImages.atlas, help="the co-registration's atlas (mni152, sri24 "
                         f"or a NIfTI path; default {ReportImages.atlas})")
    figures.add_argument("--atlas-mask", default=ReportImages.atlas_mask, help="brain mask of an atlas file")
    report.add_argument("--coregister-record", type=Path, help="co-registration's record (flags marginal or retried "
                                                               "registrations)")
    report.add_argument("--skullstrip-record", type=Path, help="skull stripping's record (flags the brain volume and "
                                                               "a brain cut by the field of view)")
    report.add_argument("--truth", type=Path, help="a ground-truth label map on the atlas grid: the BraTS metrics of "
                                                   "the members and the fused segmentation")
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

    site = commands.add_parser("report-html", help="the cohort's HTML report, RESULTS/report/index.html and a page "
                                                   "per subject")
    site.add_argument("results", type=Path, help="the results folder")
    site.add_argument("--subjects", nargs="+", metavar="ID",
                      help="subjects to show (default: every subject with a report record)")
    site.set_defaults(func=run_report_html)


def run_report(args: argparse.Namespace) -> None:
    from ..errors import ConfigError
    from ..qc import report_subject

    names = args.names or [path.name.removesuffix(".nii.gz") for path in args.members]
    if len(names) != len(args.members):
        raise ConfigError(f"{len(names)} names for {len(args.members)} members")
    if (args.skullstrip_dir is None) != (args.coregister_dir is None):
        raise ConfigError("the figures need both --skullstrip-dir and --coregister-dir")
    probabilities = None if args.probabilities is None else _probability_files(args.probabilities, names)
    params = QCParams(**{field.name: getattr(args, field.name) for field in fields(QCParams)})
    report_subject(args.segmentation, dict(zip(names, args.members)), args.brain_mask, args.out,
                   convention=args.convention, params=params, images=_images(args), subject=args.subject,
                   missing_modalities=args.missing_modalities, coregister_record=args.coregister_record,
                   skullstrip_record=args.skullstrip_record, truth=args.truth, probabilities=probabilities)


def _probability_files(pairs: list[str], names: list[str]) -> dict[str, Path]:
    from ..errors import ConfigError

    files = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not path:
            raise ConfigError(f"--probabilities {pair!r}: expected NAME=NPZ, a member name and its probability file")
        if name not in names:
            raise ConfigError(f"--probabilities {pair!r}: {name!r} is not one of the members {names}")
        if name in files:
            raise ConfigError(f"--probabilities names member {name!r} twice")
        files[name] = Path(path)
    return files


def _images(args: argparse.Namespace) -> ReportImages | None:
    from ..paths import StepFiles

    if args.skullstrip_dir is None:
        return None
    stripped, coregistered = StepFiles(args.skullstrip_dir, "skullstrip"), StepFiles(args.coregister_dir, "coregister")
    present = [m for m in MODALITIES if m not in args.missing_modalities]
    return ReportImages({m: stripped.image(m) for m in present}, {m: coregistered.image(m) for m in present},
                        atlas=args.atlas, atlas_mask=args.atlas_mask or None)


def run_report_cohort(args: argparse.Namespace) -> None:
    from ..io import save_table
    from ..qc import cohort_tables

    volumes, qc = cohort_tables(args.records)
    save_table(volumes, args.volumes)
    save_table(qc, args.qc)


def run_report_html(args: argparse.Namespace) -> None:
    from ..cohort_report import build

    build(args.results, args.subjects)
