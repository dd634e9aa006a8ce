"""`bratsflow coregister` (every modality onto the centre one and the atlas) and `bratsflow to-native`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..coregister import INPUT_KINDS, CoregisterParams
from ..modalities import MODALITIES
from . import add_step_parser, given_images


def add_commands(commands) -> None:
    defaults = CoregisterParams()
    coreg = add_step_parser(commands, "coregister", "register all modalities to the centre one and to the atlas")
    coreg.add_argument("--atlas", default=defaults.atlas, help="mni152 (built in), sri24 (fetched) or a NIfTI path")
    coreg.add_argument("--atlas-mask", type=Path, default=defaults.atlas_mask,
                       help="brain mask of an atlas file (restricts the metric)")
    coreg.add_argument("--atlas-transform", default=defaults.atlas_transform, choices=["rigid", "affine"],
                       help="mapping of the centre modality onto the atlas: rigid (default), or rigid then affine")
    coreg.add_argument("--centre", default=defaults.centre, choices=MODALITIES,
                       help=f"centre modality (default {defaults.centre})")
    coreg.add_argument("--centre-fallback", default=defaults.centre_fallback, choices=MODALITIES,
                       help=f"centre when the centre modality is missing (default {defaults.centre_fallback})")
    coreg.add_argument("--interpolation", default=defaults.interpolation, choices=["linear", "bspline"])
    coreg.add_argument("--fill-value", type=float, default=defaults.fill_value,
                       help=f"value of out-of-view voxels (default {defaults.fill_value:g})")
    coreg.add_argument("--inputs", default=defaults.inputs, choices=INPUT_KINDS,
                       help="coregistered: the images are aligned on one grid already (kept as given); native: "
                            "register every image; auto (default): keep those that are")
    coreg.add_argument("--min-overlap", type=float, default=defaults.min_overlap,
                       help="refuse a registration whose field of view covers less of the target's foreground")
    coreg.add_argument("--min-coverage", type=float, default=defaults.min_coverage,
                       help="refuse a registration whose foreground covers less of the target's foreground")
    coreg.add_argument("--max-offset-mm", type=float, default=defaults.max_offset_mm,
                       help="refuse a registration whose similarity optimum lies farther along an axis (mm)")
    coreg.add_argument("--max-offset-deg", type=float, default=defaults.max_offset_deg,
                       help="refuse a registration whose similarity optimum lies farther about an axis (degrees)")
    coreg.add_argument("--min-nmi", type=float, default=defaults.min_nmi,
                       help="refuse a co-registration whose normalised mutual information stays below this")
    coreg.add_argument("--min-nmi-atlas", type=float, default=defaults.min_nmi_atlas,
                       help="refuse a registration to the atlas whose normalised mutual information stays below this")
    coreg.add_argument("--seed", type=int, default=defaults.seed, help="seed of ANTs' metric sampling")
    coreg.set_defaults(func=run_coregister)

    native = commands.add_parser("to-native", help="map an atlas-space image or label map to a native space")
    native.add_argument("image", type=Path, help="atlas-space image")
    native.add_argument("--coregister-dir", type=Path, required=True, help="the subject's coregister output")
    native.add_argument("--modality", required=True, choices=MODALITIES, help="native space to map into")
    native.add_argument("--reference", type=Path, help="native grid (default: the modality's registered input)")
    native.add_argument("--labels", action="store_true", help="a label map: label-aware interpolation, uint8")
    native.add_argument("--out", type=Path, required=True)
    native.set_defaults(func=run_to_native)


def run_coregister(args: argparse.Namespace) -> None:
    from ..coregister import coregister

    params = CoregisterParams(atlas=args.atlas, atlas_mask=args.atlas_mask, atlas_transform=args.atlas_transform,
                              inputs=args.inputs, centre=args.centre, centre_fallback=args.centre_fallback,
                              interpolation=args.interpolation, fill_value=args.fill_value,
                              min_overlap=args.min_overlap, min_coverage=args.min_coverage,
                              max_offset_mm=args.max_offset_mm, max_offset_deg=args.max_offset_deg,
                              min_nmi=args.min_nmi, min_nmi_atlas=args.min_nmi_atlas, seed=args.seed)
    coregister(given_images(args), args.out, params, subject=args.subject, threads=args.threads)


def run_to_native(args: argparse.Namespace) -> None:
    from ..coregister import to_native

    to_native(args.image, args.coregister_dir, args.modality, args.out, reference=args.reference,
              labels=args.labels)
