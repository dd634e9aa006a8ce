"""Command line: one subcommand per step; each parses its arguments and calls the step's function."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .cohort import MODALITIES, Subject, find_subject, load_cohort, validate_subject_id
from .errors import BratsflowError

log = logging.getLogger("bratsflow")


def _add_modality_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    for modality in MODALITIES:
        parser.add_argument(f"--{modality}", type=Path, required=required, metavar="PATH",
                            help=f"{modality} image (NIfTI file or DICOM series folder)")


def cmd_synth(args: argparse.Namespace) -> None:
    from .synth import SynthParams, generate_cohort, montage

    params = SynthParams(resolution_mm=args.resolution, convention=args.convention)
    subjects = generate_cohort(args.out, args.subjects, args.seed, params, only=args.only)
    if args.montage:
        montage(args.out, (args.only or subjects)[0], args.montage)


def cmd_ingest(args: argparse.Namespace) -> None:
    from .ingest import ingest_subject

    explicit = {m: getattr(args, m) for m in MODALITIES if getattr(args, m) is not None}
    if args.samples or args.bids:
        if explicit:
            raise BratsflowError("give either --samples/--bids or the four image paths, not both")
        subject = find_subject(load_cohort(samples=args.samples, bids=args.bids), args.subject)
    else:
        missing = [m for m in MODALITIES if m not in explicit]
        if missing:
            raise BratsflowError(f"missing --{' --'.join(missing)} (or give --samples / --bids)")
        validate_subject_id(args.subject)
        subject = Subject(args.subject, explicit)
    ingest_subject(subject, args.out, orientation=args.orientation,
                   spacing_range_mm=(args.min_spacing, args.max_spacing))


def limit_threads(threads: int) -> None:
    """Pin every thread pool to the rule's `threads:`, so runs are reproducible and do not oversubscribe."""
    import SimpleITK as sitk
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)  # ANTs reads it when it starts ITK


def cmd_ingest_table(args: argparse.Namespace) -> None:
    from .ingest import cohort_table

    args.out.parent.mkdir(parents=True, exist_ok=True)
    cohort_table(args.records).to_csv(args.out, sep="\t", index=False)


def cmd_coregister(args: argparse.Namespace) -> None:
    from .coregister import CoregisterParams, coregister

    images = {m: getattr(args, m) for m in MODALITIES if getattr(args, m) is not None}
    params = CoregisterParams(atlas=args.atlas, atlas_mask=args.atlas_mask, atlas_transform=args.atlas_transform,
                              centre=args.centre, centre_fallback=args.centre_fallback,
                              interpolation=args.interpolation, fill_value=args.fill_value, min_nmi=args.min_nmi,
                              seed=args.seed)
    coregister(images, args.out, params, subject=args.subject, threads=args.threads)


def cmd_to_native(args: argparse.Namespace) -> None:
    from .coregister import to_native

    to_native(args.image, args.coregister_dir, args.modality, args.out, reference=args.reference,
              labels=args.labels)


def cmd_atlas(args: argparse.Namespace) -> None:
    from . import atlas

    if args.action == "fetch":
        print(atlas.fetch(args.name, url=args.url, sha256=args.sha256, force=args.force))
    else:
        for name in atlas.BUILTIN:
            print(f"{name}\tbuilt in")
        for name, entry in atlas.DOWNLOADS.items():
            path = atlas.cached_path(name)
            print(f"{name}\t{'cached at ' + str(path) if path.is_file() else 'not fetched'}\t{entry.description}")


def cmd_fuse(args: argparse.Namespace) -> None:
    from .fusion import SimpleParams, fuse_files

    simple = SimpleParams(alpha=args.simple_alpha, max_iterations=args.simple_max_iterations,
                          min_members=args.simple_min_members, weight_power=args.simple_weight_power)
    fuse_files(args.segmentations, args.out, record=args.record, names=args.names, probabilities=args.probabilities,
               method=args.method, weights=args.weights, mode=args.mode, convention=args.convention, simple=simple,
               subject=args.subject, threads=args.threads)


def cmd_metrics(args: argparse.Namespace) -> None:
    import pandas as pd

    from .metrics import evaluate_files

    table = evaluate_files(args.pred, args.gt, args.convention, out=args.out, lesions_out=args.lesions)
    if args.out is None:
        with pd.option_context("display.width", 200, "display.max_columns", None):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bratsflow", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bratsflow {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for numerical libraries (BLAS, ITK); results are reproducible per count")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser("synth", help="generate a synthetic BraTS-like cohort (BIDS + ground truth)")
    synth.add_argument("--out", type=Path, required=True, help="output BIDS root")
    synth.add_argument("--subjects", type=int, default=3, help="number of subjects (default 3)")
    synth.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    synth.add_argument("--resolution", type=float, default=1.0,
                       help="atlas resolution in mm; 1 is real size, 2–4 make small test volumes (default 1)")
    synth.add_argument("--convention", choices=["brats2023", "brats2021"], default="brats2023",
                       help="label convention of the ground truth (default brats2023)")
    synth.add_argument("--only", nargs="+", metavar="SUBJECT", help="generate only these subjects of the cohort")
    synth.add_argument("--montage", type=Path, metavar="PNG",
                       help="also save a QC montage of the first generated subject")
    synth.set_defaults(func=cmd_synth)

    ingest = commands.add_parser("ingest", help="validate, convert and reorient one subject's images")
    ingest.add_argument("--subject", required=True, help="subject id")
    source = ingest.add_mutually_exclusive_group()
    source.add_argument("--samples", type=Path, help="sample sheet (TSV) that lists the subject")
    source.add_argument("--bids", type=Path, help="BIDS root that holds the subject")
    _add_modality_arguments(ingest, required=False)
    ingest.add_argument("--out", type=Path, required=True, help="output folder for the subject's ingest step")
    ingest.add_argument("--orientation", default="RAS", help="axis codes of the output (default RAS)")
    ingest.add_argument("--min-spacing", type=float, default=0.2, help="smallest plausible voxel size, mm")
    ingest.add_argument("--max-spacing", type=float, default=8.0, help="largest plausible voxel size, mm")
    ingest.set_defaults(func=cmd_ingest)

    table = commands.add_parser("ingest-table", help="gather ingest.json records into one cohort table (TSV)")
    table.add_argument("--out", type=Path, required=True, help="output TSV")
    table.add_argument("records", nargs="+", type=Path, help="ingest.json files")
    table.set_defaults(func=cmd_ingest_table)

    coreg = commands.add_parser("coregister", help="register all modalities to the centre one and to the atlas")
    _add_modality_arguments(coreg, required=False)
    coreg.add_argument("--out", type=Path, required=True, help="output folder")
    coreg.add_argument("--subject", help="subject id, for messages and records")
    coreg.add_argument("--atlas", default="mni152", help="mni152 (built in), sri24 (fetched) or a NIfTI path")
    coreg.add_argument("--atlas-mask", type=Path, help="brain mask of an atlas file (restricts the metric)")
    coreg.add_argument("--atlas-transform", default="rigid", choices=["rigid", "affine"],
                       help="mapping of the centre modality onto the atlas: rigid (default), or rigid then affine")
    coreg.add_argument("--centre", default="t1c", choices=MODALITIES, help="centre modality (default t1c)")
    coreg.add_argument("--centre-fallback", default="t1", choices=MODALITIES,
                       help="centre when the centre modality is missing (default t1)")
    coreg.add_argument("--interpolation", default="linear", choices=["linear", "bspline"])
    coreg.add_argument("--fill-value", type=float, default=0.0, help="value of out-of-view voxels (default 0)")
    coreg.add_argument("--min-nmi", type=float, default=1.12,
                       help="refuse a registration whose normalised mutual information stays below this")
    coreg.add_argument("--seed", type=int, default=1, help="seed of ANTs' metric sampling")
    coreg.set_defaults(func=cmd_coregister)

    native = commands.add_parser("to-native", help="map an atlas-space image or label map to a native space")
    native.add_argument("image", type=Path, help="atlas-space image")
    native.add_argument("--coregister-dir", type=Path, required=True, help="the subject's coregister output")
    native.add_argument("--modality", required=True, choices=MODALITIES, help="native space to map into")
    native.add_argument("--reference", type=Path, help="native grid (default: the modality's registered input)")
    native.add_argument("--labels", action="store_true", help="a label map: label-aware interpolation, uint8")
    native.add_argument("--out", type=Path, required=True)
    native.set_defaults(func=cmd_to_native)

    atlas = commands.add_parser("atlas", help="list atlases or fetch one into the user cache")
    atlas.add_argument("action", choices=["list", "fetch"])
    atlas.add_argument("name", nargs="?", default="sri24")
    atlas.add_argument("--url", help="download from this address instead of the registered one")
    atlas.add_argument("--sha256", help="expected SHA-256 of the download (required when none is pinned)")
    atlas.add_argument("--force", action="store_true", help="replace a cached file that does not match")
    atlas.set_defaults(func=cmd_atlas)
    _add_fusion_commands(commands)
    return parser


def _add_fusion_commands(commands) -> None:
    from .fusion import METHODS, MODES, SimpleParams
    from .labels import CONVENTIONS

    defaults = SimpleParams()
    fuse = commands.add_parser("fuse", help="fuse an ensemble's label maps into one segmentation",
                               description="Fuse label maps (see the README, section Fusion, for the tie rules).")
    fuse.add_argument("segmentations", nargs="+", type=Path, metavar="SEG", help="member label maps (NIfTI)")
    fuse.add_argument("-o", "--out", type=Path, required=True, help="fused label map (NIfTI, uint8)")
    fuse.add_argument("--method", choices=METHODS, default="majority", help="fusion method (default majority)")
    fuse.add_argument("--mode", choices=MODES, default="regions",
                      help="fuse nested regions WT/TC/ET (default) or the labels directly")
    fuse.add_argument("--convention", choices=sorted(CONVENTIONS), default="brats2023",
                      help="label convention (default brats2023)")
    fuse.add_argument("--weights", type=float, nargs="+", metavar="W",
                      help="one weight per member (methods weighted, simple, mean)")
    fuse.add_argument("--probabilities", type=Path, nargs="+", metavar="NPZ",
                      help="one <member>_probabilities.npz per member (method mean)")
    fuse.add_argument("--names", nargs="+", metavar="NAME", help="member names (default: the file names)")
    fuse.add_argument("--record", type=Path, metavar="JSON", help="also write a provenance record")
    fuse.add_argument("--subject", help="subject id, for messages and the record")
    fuse.add_argument("--simple-alpha", type=float, default=defaults.alpha,
                      help=f"SIMPLE drops members scoring below mean - alpha·sd (default {defaults.alpha})")
    fuse.add_argument("--simple-max-iterations", type=int, default=defaults.max_iterations,
                      help=f"SIMPLE iteration limit (default {defaults.max_iterations})")
    fuse.add_argument("--simple-min-members", type=int, default=defaults.min_members,
                      help=f"SIMPLE never keeps fewer members (default {defaults.min_members})")
    fuse.add_argument("--simple-weight-power", type=float, default=defaults.weight_power,
                      help=f"SIMPLE weights members by score ** power (default {defaults.weight_power})")
    fuse.set_defaults(func=cmd_fuse)

    metrics = commands.add_parser("metrics", help="BraTS 2023 metrics of a label map against the ground truth")
    metrics.add_argument("pred", type=Path, metavar="PRED", help="predicted label map (NIfTI)")
    metrics.add_argument("gt", type=Path, metavar="GT", help="ground-truth label map (NIfTI)")
    metrics.add_argument("--convention", choices=sorted(CONVENTIONS), default="brats2023",
                         help="label convention (default brats2023)")
    metrics.add_argument("--out", type=Path, metavar="CSV", help="write the table here instead of printing it")
    metrics.add_argument("--lesions", type=Path, metavar="CSV", help="also write the per-lesion rows")
    metrics.set_defaults(func=cmd_metrics)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    limit_threads(args.threads)
    try:
        args.func(args)
    except BratsflowError as exc:
        print(f"bratsflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
