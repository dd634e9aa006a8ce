"""`bratsflow deface`: the face removed from an image, for data sharing."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..deface import DEFAULT_BUFFER_MM


def add_commands(commands) -> None:
    deface = commands.add_parser("deface", help="remove the face (quickshear-like) for data sharing")
    deface.add_argument("image", type=Path, help="whole-head image")
    deface.add_argument("--mask", type=Path, required=True, help="brain mask on the image's grid")
    deface.add_argument("--out", type=Path, required=True, help="defaced image")
    deface.add_argument("--buffer-mm", type=float, default=DEFAULT_BUFFER_MM,
                        help="distance kept between the brain and the cutting plane "
                             f"(default {DEFAULT_BUFFER_MM:g} mm)")
    deface.add_argument("--subject", help="subject id, for messages")
    deface.set_defaults(func=run_deface)


def run_deface(args: argparse.Namespace) -> None:
    from ..deface import deface_file

    deface_file(args.image, args.mask, args.out, buffer_mm=args.buffer_mm, subject=args.subject)
