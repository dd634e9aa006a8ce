"""`bratsflow synth`: a synthetic BraTS-like cohort."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..labels import CONVENTIONS
from ..synth_params import SynthParams


def add_commands(commands) -> None:
    defaults = SynthParams()
    synth = commands.add_parser("synth", help="generate a synthetic BraTS-like cohort (BIDS + ground truth)")
    synth.add_argument("--out", type=Path, required=True, help="output BIDS root")
    synth.add_argument("--subjects", type=int, default=3, help="number of subjects (default 3)")
    synth.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    synth.add_argument("--resolution", type=float, default=defaults.resolution_mm,
                       help="atlas resolution in mm; 1 is real size, 2–4 make small test volumes "
                            f"(default {defaults.resolution_mm:g})")
    synth.add_argument("--convention", choices=list(CONVENTIONS), default=defaults.convention,
                       help=f"label convention of the ground truth (default {defaults.convention})")
    synth.add_argument("--only", nargs="+", metavar="SUBJECT", help="generate only these subjects of the cohort")
    synth.add_argument("--montage", type=Path, metavar="PNG",
                       help="also save a QC montage of the first generated subject")
    synth.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> None:
    from ..synth import generate_cohort, montage

    params = SynthParams(resolution_mm=args.resolution, convention=args.convention)
    subjects = generate_cohort(args.out, args.subjects, args.seed, params, only=args.only)
    if args.montage:
        montage(args.out, (args.only or subjects)[0], args.montage)
