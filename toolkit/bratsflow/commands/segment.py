"""`bratsflow segment`: one ensemble member on the skull-stripped atlas-space images."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..labels import CONVENTIONS, DEFAULT_CONVENTION
from . import add_step_parser, given_images


def add_commands(commands) -> None:
    seg = add_step_parser(commands, "segment", "run one ensemble member on skull-stripped atlas-space images")
    seg.add_argument("--member", required=True, help="member name (writes OUT/NAME.nii.gz)")
    seg.add_argument("--spec", help="the member's settings as JSON (keys as in segment.members); default: "
                                    "looked up by name in --config")
    seg.add_argument("--config", type=Path, default=Path("config/config.yaml"), help="config file with the member")
    seg.add_argument("--convention", choices=list(CONVENTIONS), default=DEFAULT_CONVENTION,
                     help=f"label convention of the written map (default {DEFAULT_CONVENTION})")
    seg.set_defaults(func=run_segment)


def run_segment(args: argparse.Namespace) -> None:
    import json

    import yaml

    from ..errors import ConfigError
    from ..segment import Member, segment

    if args.spec:
        spec = {**json.loads(args.spec), "name": args.member}
    else:
        if not args.config.is_file():
            raise ConfigError(f"no --spec given and no config file {args.config} to find member {args.member} in")
        members = (yaml.safe_load(args.config.read_text()) or {}).get("segment", {}).get("members", [])
        found = [m for m in members if m.get("name") == args.member]
        if not found:
            raise ConfigError(f"member {args.member} is not among segment.members in {args.config}: "
                              f"{[m.get('name') for m in members]}")
        spec = found[0]
    segment(given_images(args), Member.from_config(spec), args.out, convention=args.convention,
            subject=args.subject, threads=args.threads)
