"""The command line's subcommands, one module per step: `add_commands(commands)` adds the step's subparsers, and
each subparser's `func` runs it.

A module loads at import only what its parsers show (defaults, choices); the step itself, with its heavy
libraries (ANTs, torch, nnU-Net, SimpleITK, pandas, pyradiomics), loads when a command runs, so building the
parser (`bratsflow --help`, and every command's start) does not pay for all of them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..modalities import MODALITIES


def add_modality_arguments(parser: argparse.ArgumentParser) -> None:
    for modality in MODALITIES:
        parser.add_argument(f"--{modality}", type=Path, metavar="PATH",
                            help=f"{modality} image (NIfTI file or DICOM series folder)")


def add_step_parser(commands, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand that runs a step on one subject's four images and writes into the step's folder (--out)."""
    parser = commands.add_parser(name, help=help)
    add_modality_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--subject", help="subject id, for messages and records")
    return parser


def given_images(args: argparse.Namespace) -> dict[str, Path]:
    """The modality images given on the command line, by modality."""
    return {m: getattr(args, m) for m in MODALITIES if getattr(args, m) is not None}
