"""`bratsflow metrics`: BraTS 2023 metrics of a label map against the ground truth, or the BraTS 2024-2025
official scorer's (`--official TASK`, the `official` extra)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..labels import CONVENTIONS, DEFAULT_CONVENTION
from ..official import TASKS


def add_commands(commands) -> None:
    metrics = commands.add_parser("metrics", help="BraTS 2023 metrics of a label map against the ground truth")
    metrics.add_argument("pred", type=Path, metavar="PRED", help="predicted label map (NIfTI)")
    metrics.add_argument("gt", type=Path, metavar="GT", help="ground-truth label map (NIfTI)")
    metrics.add_argument("--convention", choices=sorted(CONVENTIONS), default=DEFAULT_CONVENTION,
                         help=f"label convention (default {DEFAULT_CONVENTION})")
    metrics.add_argument("--out", type=Path, metavar="CSV", help="write the table here instead of printing it")
    metrics.add_argument("--lesions", type=Path, metavar="CSV", help="also write the per-lesion rows")
    metrics.add_argument("--official", choices=TASKS, metavar="TASK",
                         help="score with the BraTS 2024-2025 official scorer's config for TASK instead "
                              f"({', '.join(TASKS)}; its label groups must be the label set's regions; needs "
                              "`pip install 'bratsflow[official]'`)")
    metrics.set_defaults(func=run_metrics)


def run_metrics(args: argparse.Namespace) -> None:
    import pandas as pd

    from ..metrics import evaluate_files

    if args.official is None:
        table = evaluate_files(args.pred, args.gt, args.convention, out=args.out, lesions_out=args.lesions)
    else:
        from ..official import evaluate_official

        if args.lesions is not None:
            raise ConfigError("--lesions writes bratsflow's 2023 lesions; the official scorer's per-lesion results "
                              "are not tabled")
        table = evaluate_official(args.pred, args.gt, args.convention, args.official)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(args.out, index=False)
    if args.out is None:
        with pd.option_context("display.width", 200, "display.max_columns", None):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
