"""`bratsflow export`: the fused segmentation as a DICOM Segmentation object on the source T1c series, and its
volumes as a DICOM SR."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..dicom_export import DEFAULT_SERIES_DESCRIPTION, DEFAULT_SERIES_NUMBER
from ..labels import CONVENTIONS, DEFAULT_CONVENTION


def add_commands(commands) -> None:
    export = commands.add_parser(
        "export",
        help="write the fused segmentation as DICOM SEG onto the T1c series it came from, its volumes as DICOM SR",
        description="Reads the segmentation in native T1c space and the T1c series named in ingest.json; writes "
                    "segmentation.dcm, measurements.dcm and export.json into --out (README, DICOM out).")
    export.add_argument("--subject", required=True, help="subject id, for messages and the record")
    export.add_argument("--segmentation", type=Path, required=True,
                        help="the fused label map in native T1c space (RESULTS/<subject>/native/...)")
    export.add_argument("--ingest-record", type=Path, required=True, help="the subject's ingest.json")
    export.add_argument("--fuse-record", type=Path, required=True, help="the subject's fuse.json (the members)")
    export.add_argument("--convention", choices=sorted(CONVENTIONS), default=DEFAULT_CONVENTION,
                        help=f"label convention of the segmentation (default {DEFAULT_CONVENTION})")
    export.add_argument("--series-number", type=int, default=DEFAULT_SERIES_NUMBER,
                        help=f"SeriesNumber of the segmentation's series, the report's is the next (default "
                             f"{DEFAULT_SERIES_NUMBER})")
    export.add_argument("--series-description", default=DEFAULT_SERIES_DESCRIPTION,
                        help=f"SeriesDescription of the new series (default {DEFAULT_SERIES_DESCRIPTION!r})")
    export.add_argument("--out", type=Path, required=True, help="output folder (RESULTS/<subject>/export)")
    export.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> None:
    from ..dicom_export import export_subject

    export_subject(args.subject, args.segmentation, args.ingest_record, args.fuse_record, args.out,
                   convention=args.convention, series_number=args.series_number,
                   series_description=args.series_description)
