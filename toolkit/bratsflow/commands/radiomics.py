"""`bratsflow radiomics` (pyradiomics features per tumour region × modality, or of one image in one mask) and
`bratsflow cohort-table`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BratsflowError
from ..labels import CONVENTIONS, DEFAULT_CONVENTION
from ..modalities import MODALITIES
from ..radiomics_filters import FILTERS
from . import given_images


def add_commands(commands) -> None:
    radiomics = commands.add_parser(
        "radiomics", help="pyradiomics features per tumour region x modality (or of one image inside one mask)",
        description="Subject mode: --segmentation, the modality images and --brain-mask; writes features.parquet, "
                    "features.csv and radiomics.json into --out. One-image mode: --image, --mask [--label N]; "
                    "writes the table --out (.csv or .parquet).")
    for modality in MODALITIES:
        radiomics.add_argument(f"--{modality}", type=Path, metavar="PATH",
                               help=f"subject mode: the {modality} image (NIfTI) on the segmentation's grid")
    radiomics.add_argument("--segmentation", type=Path, help="subject mode: the tumour label map")
    radiomics.add_argument("--convention", choices=sorted(CONVENTIONS), default=DEFAULT_CONVENTION,
                           help=f"label convention of the segmentation (default {DEFAULT_CONVENTION})")
    radiomics.add_argument("--image", type=Path, help="one-image mode: the image")
    radiomics.add_argument("--mask", type=Path, help="one-image mode: the mask")
    radiomics.add_argument("--label", type=int, help="one-image mode: the mask's label (default: every non-zero voxel)")
    radiomics.add_argument("--modality", default="image", help="one-image mode: the modality column (default image)")
    radiomics.add_argument("--record", type=Path, metavar="JSON", help="one-image mode: also write a record")
    radiomics.add_argument("--brain-mask", type=Path,
                           help="normalise intensities inside this mask (default: over the whole image)")
    radiomics.add_argument("--params", type=Path, metavar="YAML",
                           help="pyradiomics parameter file (default: bratsflow's, config/radiomics.yaml)")
    radiomics.add_argument("--filters", nargs="+", default=[], choices=sorted(FILTERS),
                           help="add LoG and/or wavelet images to the parameter file's image types")
    radiomics.add_argument("--subject", help="subject id, for the table, messages and records")
    radiomics.add_argument("--out", type=Path, required=True,
                           help="subject mode: output folder; one-image mode: the table (.csv or .parquet)")
    radiomics.set_defaults(func=run_radiomics)

    table = commands.add_parser("cohort-table", help="gather subjects' feature tables into the cohort's tables")
    table.add_argument("--long", type=Path, required=True, help="long table of every subject (.parquet)")
    table.add_argument("--wide", type=Path, required=True, help="wide table, one row per subject (.csv)")
    table.add_argument("tables", nargs="+", type=Path, help="the subjects' features.parquet files")
    table.set_defaults(func=run_cohort_table)


def run_radiomics(args: argparse.Namespace) -> None:
    from ..radiomics import load_params, radiomics_image, radiomics_subject

    images = given_images(args)
    if args.image is not None:
        extra = [f"--{m}" for m in images] + (["--segmentation"] if args.segmentation else [])
        if extra:
            raise BratsflowError(f"--image (one image and mask) does not combine with {' '.join(extra)}")
        if args.mask is None:
            raise BratsflowError("--image needs --mask")
        radiomics_image(args.image, args.mask, args.out, params=load_params(args.params, args.filters),
                        label=args.label, brain_mask=args.brain_mask, modality=args.modality,
                        subject=args.subject or "", record=args.record, threads=args.threads)
        return
    if args.segmentation is None or not images:
        raise BratsflowError("give --segmentation with the images (--t1 --t1c --t2 --flair), or --image and --mask")
    single = [flag for flag, value in (("--mask", args.mask), ("--label", args.label), ("--record", args.record))
              if value is not None]
    if single:
        raise BratsflowError(f"{' '.join(single)} belong(s) to the one-image mode (--image)")
    radiomics_subject(images, args.segmentation, args.out, brain_mask=args.brain_mask,
                      params=load_params(args.params, args.filters), convention=args.convention,
                      subject=args.subject or "", threads=args.threads)


def run_cohort_table(args: argparse.Namespace) -> None:
    from ..radiomics import cohort_tables

    cohort_tables(args.tables, args.long, args.wide)
