"""`bratsflow manifest` (SHA-256 of every result file) and `bratsflow verify` (a results folder against it)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(commands) -> None:
    manifest = commands.add_parser("manifest", help="write RESULTS/manifest.tsv: SHA-256 of every result file",
                                   description="Lists images, label maps, masks, probability maps, transforms and "
                                               "tables; leaves out logs, benchmarks and JSON records (timings).")
    manifest.add_argument("results", type=Path, metavar="RESULTS", help="results folder")
    manifest.set_defaults(func=run_manifest)

    verify = commands.add_parser("verify", help="re-check a results folder against its manifest (exit 1 on a "
                                                "missing, changed or unlisted file)")
    verify.add_argument("results", type=Path, metavar="RESULTS", help="results folder")
    verify.add_argument("--manifest", type=Path,
                        help="check against this manifest instead (e.g. another run's, to compare two runs)")
    verify.set_defaults(func=run_verify)


def run_manifest(args: argparse.Namespace) -> None:
    from .. import manifest

    path, count = manifest.write(args.results)
    print(f"{path}: {count} files")


def run_verify(args: argparse.Namespace) -> int:
    from .. import manifest

    report = manifest.verify(args.results, args.manifest)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1
