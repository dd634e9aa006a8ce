"""`bratsflow skullstrip`: one brain mask of the atlas-space images, applied to all four."""

from __future__ import annotations

import argparse

from ..modalities import MODALITIES
from ..skullstrip import BACKENDS, INPUT_KINDS, SkullstripParams
from . import add_step_parser, given_images


def add_commands(commands) -> None:
    defaults = SkullstripParams()
    strip = add_step_parser(commands, "skullstrip", "brain mask of atlas-space images, applied to all four")
    strip.add_argument("--backend", choices=BACKENDS, default=defaults.backend,
                       help="atlas (default; CPU, no downloaded weights) or hdbet (HD-BET v2 weights)")
    strip.add_argument("--modality", choices=MODALITIES, default=defaults.modality,
                       help=f"modality the mask is computed on (default {defaults.modality})")
    strip.add_argument("--fallback", choices=MODALITIES, default=defaults.fallback,
                       help=f"modality used when that one is missing (default {defaults.fallback})")
    strip.add_argument("--volume-range-ml", type=float, nargs=2, default=defaults.volume_range_ml,
                       metavar=("MIN", "MAX"), help="plausible brain volume; a mask outside fails the subject")
    strip.add_argument("--fill-value", type=float, default=defaults.fill_value, help="value outside the brain")
    strip.add_argument("--input", choices=INPUT_KINDS, default=defaults.input,
                       help="are the images skull-stripped already? auto (decide from the images; default), "
                            "stripped or skull (declared, checked against the images)")
    strip.add_argument("--background", type=float, default=defaults.background,
                       help="value of the images' out-of-view voxels (co-registration's fill value; default "
                            f"{defaults.background:g})")
    strip.add_argument("--atlas", default=defaults.atlas,
                       help="atlas of the co-registration (atlas backend; mni152, sri24 or a NIfTI path)")
    strip.add_argument("--atlas-mask", default=defaults.atlas_mask, help="brain mask of an atlas file (atlas backend)")
    strip.add_argument("--seed", type=int, default=defaults.seed, help="seed of ANTs' metric sampling")
    strip.add_argument("--model", default=defaults.model,
                       help=f"hdbet backend: model-store name or model folder (default {defaults.model})")
    strip.add_argument("--device", choices=["auto", "cpu", "cuda"], default=defaults.device,
                       help="hdbet backend: auto (cuda when available), cpu or cuda")
    strip.add_argument("--tta", action=argparse.BooleanOptionalAction, default=defaults.tta,
                       help="hdbet backend: test-time augmentation by mirroring")
    strip.set_defaults(func=run_skullstrip)


def run_skullstrip(args: argparse.Namespace) -> None:
    from ..skullstrip import skullstrip

    params = SkullstripParams(backend=args.backend, modality=args.modality, fallback=args.fallback,
                              volume_range_ml=tuple(args.volume_range_ml), fill_value=args.fill_value,
                              input=args.input, background=args.background, atlas=args.atlas,
                              atlas_mask=args.atlas_mask, seed=args.seed, model=args.model, device=args.device,
                              tta=args.tta)
    skullstrip(given_images(args), args.out, params, subject=args.subject, threads=args.threads)
