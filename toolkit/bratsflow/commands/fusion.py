"""`bratsflow fuse`: an ensemble's label maps fused into one segmentation."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..fusion import DEFAULT_METHOD, DEFAULT_MODE, METHODS, MODES, SimpleParams
from ..labels import CONVENTIONS, DEFAULT_CONVENTION


def add_commands(commands) -> None:
    defaults = SimpleParams()
    fuse = commands.add_parser("fuse", help="fuse an ensemble's label maps into one segmentation",
                               description="Fuse label maps (see the README, section Fusion, for the tie rules).")
    fuse.add_argument("segmentations", nargs="*", type=Path, metavar="SEG", help="member label maps (NIfTI)")
    fuse.add_argument("-o", "--out", type=Path, required=True, help="fused label map (NIfTI, uint8)")
    fuse.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                      help=f"fusion method (default {DEFAULT_METHOD})")
    fuse.add_argument("--mode", choices=MODES, default=DEFAULT_MODE,
                      help="fuse nested regions WT/TC/ET (default) or the labels directly")
    fuse.add_argument("--convention", choices=sorted(CONVENTIONS), default=DEFAULT_CONVENTION,
                      help=f"label convention (default {DEFAULT_CONVENTION})")
    fuse.add_argument("--weights", type=float, nargs="+", metavar="W",
                      help="one weight per member (methods weighted, simple, mean)")
    fuse.add_argument("--probabilities", type=Path, nargs="+", metavar="NPZ",
                      help="one <member>_probabilities.npz per member (method mean)")
    fuse.add_argument("--names", nargs="+", metavar="NAME", help="member names (default: the file names)")
    fuse.add_argument("--record", type=Path, metavar="JSON", help="also write a provenance record")
    fuse.add_argument("--subject", help="subject id, for messages and the record")
    fuse.add_argument("--skipped", nargs="+", default=[], metavar="MEMBER=MOD[,MOD]",
                      help="members that did not run for lack of these modalities (recorded; with no SEG, the "
                           "error names them)")
    fuse.add_argument("--simple-alpha", type=float, default=defaults.alpha,
                      help=f"SIMPLE drops members scoring below mean - alpha·sd (default {defaults.alpha})")
    fuse.add_argument("--simple-max-iterations", type=int, default=defaults.max_iterations,
                      help=f"SIMPLE iteration limit (default {defaults.max_iterations})")
    fuse.add_argument("--simple-min-members", type=int, default=defaults.min_members,
                      help=f"SIMPLE never keeps fewer members (default {defaults.min_members})")
    fuse.add_argument("--simple-weight-power", type=float, default=defaults.weight_power,
                      help=f"SIMPLE weights members by score ** power (default {defaults.weight_power})")
    fuse.set_defaults(func=run_fuse)


def run_fuse(args: argparse.Namespace) -> None:
    from ..availability import parse_skipped
    from ..fusion import fuse_files

    simple = SimpleParams(alpha=args.simple_alpha, max_iterations=args.simple_max_iterations,
                          min_members=args.simple_min_members, weight_power=args.simple_weight_power)
    fuse_files(args.segmentations, args.out, record=args.record, names=args.names, probabilities=args.probabilities,
               method=args.method, weights=args.weights, mode=args.mode, convention=args.convention, simple=simple,
               subject=args.subject, skipped=parse_skipped(args.skipped))
