"""Command line: one subcommand per step; each parses its arguments and calls the step's function."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .cohort import MODALITIES, Subject, find_subject, load_cohort, validate_subject_id
from .errors import BratsflowError, OutputError

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
    from .io import save_table

    save_table(cohort_table(args.records), args.out)


def cmd_provenance(args: argparse.Namespace) -> None:
    import json

    from .io import save_json
    from .provenance import gather

    containers = json.loads(args.containers) if args.containers else {}
    save_json(gather(args.subject, args.records, containers=containers, containers_used=args.containers_used),
              args.out)


def cmd_manifest(args: argparse.Namespace) -> None:
    from . import manifest

    path, count = manifest.write(args.results)
    print(f"{path}: {count} files")


def cmd_verify(args: argparse.Namespace) -> int:
    from . import manifest

    report = manifest.verify(args.results, args.manifest)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def cmd_coregister(args: argparse.Namespace) -> None:
    from .coregister import CoregisterParams, coregister

    images = {m: getattr(args, m) for m in MODALITIES if getattr(args, m) is not None}
    params = CoregisterParams(atlas=args.atlas, atlas_mask=args.atlas_mask, atlas_transform=args.atlas_transform,
                              inputs=args.inputs, centre=args.centre, centre_fallback=args.centre_fallback,
                              interpolation=args.interpolation, fill_value=args.fill_value,
                              min_overlap=args.min_overlap, min_coverage=args.min_coverage,
                              max_offset_mm=args.max_offset_mm, max_offset_deg=args.max_offset_deg,
                              min_nmi=args.min_nmi, min_nmi_atlas=args.min_nmi_atlas, seed=args.seed)
    coregister(images, args.out, params, subject=args.subject, threads=args.threads)


def cmd_to_native(args: argparse.Namespace) -> None:
    from .coregister import to_native

    to_native(args.image, args.coregister_dir, args.modality, args.out, reference=args.reference,
              labels=args.labels)


def cmd_skullstrip(args: argparse.Namespace) -> None:
    from .skullstrip import SkullstripParams, skullstrip

    images = {m: getattr(args, m) for m in MODALITIES if getattr(args, m) is not None}
    params = SkullstripParams(backend=args.backend, modality=args.modality, fallback=args.fallback,
                              volume_range_ml=tuple(args.volume_range_ml), fill_value=args.fill_value,
                              input=args.input, background=args.background, atlas=args.atlas, atlas_mask=args.atlas_mask, seed=args.seed, model=args.model,
                              device=args.device, tta=args.tta)
    skullstrip(images, args.out, params, subject=args.subject, threads=args.threads)


def cmd_deface(args: argparse.Namespace) -> None:
    from .deface import deface_file

    deface_file(args.image, args.mask, args.out, buffer_mm=args.buffer_mm, subject=args.subject)


def cmd_segment(args: argparse.Namespace) -> None:
    import json

    import yaml

    from .errors import ConfigError
    from .segment import Member, segment

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
    images = {m: getattr(args, m) for m in MODALITIES if getattr(args, m) is not None}
    segment(images, Member.from_config(spec), args.out, convention=args.convention, subject=args.subject,
            threads=args.threads)


def cmd_models(args: argparse.Namespace) -> None:
    from . import models

    if args.action == "list":
        installed = dict(models.installed())
        for name, folder in installed.items():
            print(f"{name}\tinstalled at {folder}\tfrom {models.manifest(folder)['source']}")
        for name, release in models.RELEASES.items():
            if name not in installed:
                print(f"{name}\tnot installed (bratsflow models fetch {name})\t{release.description}")
        return
    if args.action == "train-demo":
        from .training.demo import train_demo

        given = {"seed": args.seed, "n_subjects": args.subjects, "members": args.members and tuple(args.members)}
        for folder in train_demo(args.out, work=args.work, threads=args.threads,
                                 **{k: v for k, v in given.items() if v is not None}):
            print(folder)
        return
    if not args.name:
        raise BratsflowError(f"models {args.action} needs a model name")
    if args.action == "install":
        if not args.source:
            raise BratsflowError("models install needs a SOURCE: a model folder, a zip file or a URL")
        print(models.install(args.name, args.source, sha256=args.sha256, force=args.force))
    elif args.action == "fetch":
        print(models.fetch(args.name, sha256=args.sha256, url=args.source, force=args.force))
    else:
        folder = models.resolve(args.name)
        print(f"{args.name}: {len(models.manifest(folder)['files'])} files match their checksums ({folder})")


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
               subject=args.subject)


def cmd_metrics(args: argparse.Namespace) -> None:
    import pandas as pd

    from .metrics import evaluate_files

    table = evaluate_files(args.pred, args.gt, args.convention, out=args.out, lesions_out=args.lesions)
    if args.out is None:
        with pd.option_context("display.width", 200, "display.max_columns", None):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def cmd_radiomics(args: argparse.Namespace) -> None:
    from .radiomics import load_params, radiomics_image, radiomics_subject

    images = {m: getattr(args, m) for m in MODALITIES if getattr(args, m) is not None}
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


def cmd_cohort_table(args: argparse.Namespace) -> None:
    from .radiomics import cohort_tables

    cohort_tables(args.tables, args.long, args.wide)


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

    prov = commands.add_parser("provenance", help="gather one subject's step records into provenance.json")
    prov.add_argument("records", nargs="+", type=Path, help="the subject's step records (<step>/<step>.json, …)")
    prov.add_argument("--subject", required=True, help="subject id")
    prov.add_argument("--out", type=Path, required=True, help="output JSON (RESULTS/<subject>/provenance.json)")
    prov.add_argument("--containers", help="the configured container images as JSON (step -> image)")
    prov.add_argument("--containers-used", action="store_true", help="the steps ran inside those images")
    prov.set_defaults(func=cmd_provenance)

    manifest = commands.add_parser("manifest", help="write RESULTS/manifest.tsv: SHA-256 of every result file",
                                   description="Lists images, label maps, masks, probability maps, transforms and "
                                               "tables; leaves out logs, benchmarks and JSON records (timings).")
    manifest.add_argument("results", type=Path, metavar="RESULTS", help="results folder")
    manifest.set_defaults(func=cmd_manifest)

    verify = commands.add_parser("verify", help="re-check a results folder against its manifest (exit 1 on a "
                                                "missing, changed or unlisted file)")
    verify.add_argument("results", type=Path, metavar="RESULTS", help="results folder")
    verify.add_argument("--manifest", type=Path,
                        help="check against this manifest instead (e.g. another run's, to compare two runs)")
    verify.set_defaults(func=cmd_verify)

    from .coregister import INPUT_KINDS, CoregisterParams

    coreg_defaults = CoregisterParams()
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
    coreg.add_argument("--inputs", default=coreg_defaults.inputs, choices=INPUT_KINDS,
                       help="coregistered: the images are aligned on one grid already (kept as given); native: "
                            "register every image; auto (default): keep those that are")
    coreg.add_argument("--min-overlap", type=float, default=coreg_defaults.min_overlap,
                       help="refuse a registration whose field of view covers less of the target's foreground")
    coreg.add_argument("--min-coverage", type=float, default=coreg_defaults.min_coverage,
                       help="refuse a registration whose foreground covers less of the target's foreground")
    coreg.add_argument("--max-offset-mm", type=float, default=coreg_defaults.max_offset_mm,
                       help="refuse a registration whose similarity optimum lies farther along an axis (mm)")
    coreg.add_argument("--max-offset-deg", type=float, default=coreg_defaults.max_offset_deg,
                       help="refuse a registration whose similarity optimum lies farther about an axis (degrees)")
    coreg.add_argument("--min-nmi", type=float, default=coreg_defaults.min_nmi,
                       help="refuse a co-registration whose normalised mutual information stays below this")
    coreg.add_argument("--min-nmi-atlas", type=float, default=coreg_defaults.min_nmi_atlas,
                       help="refuse a registration to the atlas whose normalised mutual information stays below this")
    coreg.add_argument("--seed", type=int, default=coreg_defaults.seed, help="seed of ANTs' metric sampling")
    coreg.set_defaults(func=cmd_coregister)

    native = commands.add_parser("to-native", help="map an atlas-space image or label map to a native space")
    native.add_argument("image", type=Path, help="atlas-space image")
    native.add_argument("--coregister-dir", type=Path, required=True, help="the subject's coregister output")
    native.add_argument("--modality", required=True, choices=MODALITIES, help="native space to map into")
    native.add_argument("--reference", type=Path, help="native grid (default: the modality's registered input)")
    native.add_argument("--labels", action="store_true", help="a label map: label-aware interpolation, uint8")
    native.add_argument("--out", type=Path, required=True)
    native.set_defaults(func=cmd_to_native)

    _add_skullstrip_commands(commands)

    seg = commands.add_parser("segment", help="run one ensemble member on skull-stripped atlas-space images")
    _add_modality_arguments(seg, required=False)
    seg.add_argument("--member", required=True, help="member name (writes OUT/NAME.nii.gz)")
    seg.add_argument("--spec", help="the member's settings as JSON (keys as in segment.members); default: "
                                    "looked up by name in --config")
    seg.add_argument("--config", type=Path, default=Path("config/config.yaml"), help="config file with the member")
    seg.add_argument("--convention", choices=["brats2023", "brats2021"], default="brats2023",
                     help="label convention of the written map (default brats2023)")
    seg.add_argument("--out", type=Path, required=True, help="output folder")
    seg.add_argument("--subject", help="subject id, for messages and records")
    seg.set_defaults(func=cmd_segment)

    store = commands.add_parser("models", help="the model store: list, install, fetch or verify trained models",
                                description="Models live in $BRATSFLOW_MODELS (default ~/.cache/bratsflow/models); "
                                            "every file's SHA-256 is recorded at installation and checked before "
                                            "a checkpoint is loaded.")
    store.add_argument("action", choices=["list", "install", "fetch", "verify", "train-demo"])
    store.add_argument("name", nargs="?", help="model name in the store (verify: also a folder)")
    store.add_argument("source", nargs="?",
                       help="install: model folder, zip or URL; fetch: another address for the known release")
    store.add_argument("--sha256", help="expected SHA-256 of the zip or download (required for URLs)")
    store.add_argument("--force", action="store_true", help="replace an installed model of that name")
    demo = store.add_argument_group("train-demo", "train the demo ensemble on synthetic subjects (CPU; about an "
                                                  "hour with --threads 2); never use these models on patients")
    demo.add_argument("--out", type=Path, default=Path("models/demo"), help="folder for the model folders")
    demo.add_argument("--seed", type=int, help="seed of the training cohort and the training (default: the seed "
                                               "the shipped demo models were trained with)")
    demo.add_argument("--subjects", type=int, help="training subjects to synthesise (default: as for the shipped "
                                                   "models)")
    demo.add_argument("--work", type=Path, help="keep the cohort and nnU-Net's folders here (default: temporary)")
    demo.add_argument("--members", nargs="+", metavar="MEMBER",
                      help="train only these demo members (default: all; each seeds itself, so the models are "
                           "the same)")
    store.set_defaults(func=cmd_models)

    atlas = commands.add_parser("atlas", help="list atlases or fetch one into the user cache")
    atlas.add_argument("action", choices=["list", "fetch"])
    atlas.add_argument("name", nargs="?", default="sri24")
    atlas.add_argument("--url", help="download from this address instead of the registered one")
    atlas.add_argument("--sha256", help="expected SHA-256 of the download (required when none is pinned)")
    atlas.add_argument("--force", action="store_true", help="replace a cached file that does not match")
    atlas.set_defaults(func=cmd_atlas)
    _add_fusion_commands(commands)
    _add_radiomics_commands(commands)
    return parser


def _add_radiomics_commands(commands) -> None:
    from .labels import CONVENTIONS
    from .radiomics import FILTERS

    radiomics = commands.add_parser(
        "radiomics", help="pyradiomics features per tumour region x modality (or of one image inside one mask)",
        description="Subject mode: --segmentation, the modality images and --brain-mask; writes features.parquet, "
                    "features.csv and radiomics.json into --out. One-image mode: --image, --mask [--label N]; "
                    "writes the table --out (.csv or .parquet).")
    for modality in MODALITIES:
        radiomics.add_argument(f"--{modality}", type=Path, metavar="PATH",
                               help=f"subject mode: the {modality} image (NIfTI) on the segmentation's grid")
    radiomics.add_argument("--segmentation", type=Path, help="subject mode: the tumour label map")
    radiomics.add_argument("--convention", choices=sorted(CONVENTIONS), default="brats2023",
                           help="label convention of the segmentation (default brats2023)")
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
    radiomics.set_defaults(func=cmd_radiomics)

    table = commands.add_parser("cohort-table", help="gather subjects' feature tables into the cohort's tables")
    table.add_argument("--long", type=Path, required=True, help="long table of every subject (.parquet)")
    table.add_argument("--wide", type=Path, required=True, help="wide table, one row per subject (.csv)")
    table.add_argument("tables", nargs="+", type=Path, help="the subjects' features.parquet files")
    table.set_defaults(func=cmd_cohort_table)


def _add_skullstrip_commands(commands) -> None:
    from .skullstrip import BACKENDS, INPUT_KINDS, SkullstripParams

    defaults = SkullstripParams()
    strip = commands.add_parser("skullstrip", help="brain mask of atlas-space images, applied to all four")
    _add_modality_arguments(strip, required=False)
    strip.add_argument("--out", type=Path, required=True, help="output folder")
    strip.add_argument("--subject", help="subject id, for messages and records")
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
    strip.add_argument("--atlas-mask", help="brain mask of an atlas file (atlas backend)")
    strip.add_argument("--seed", type=int, default=defaults.seed, help="seed of ANTs' metric sampling")
    strip.add_argument("--model", default=defaults.model,
                       help=f"hdbet backend: model-store name or model folder (default {defaults.model})")
    strip.add_argument("--device", choices=["auto", "cpu", "cuda"], default=defaults.device,
                       help="hdbet backend: auto (cuda when available), cpu or cuda")
    strip.add_argument("--tta", action=argparse.BooleanOptionalAction, default=defaults.tta,
                       help="hdbet backend: test-time augmentation by mirroring")
    strip.set_defaults(func=cmd_skullstrip)

    deface = commands.add_parser("deface", help="remove the face (quickshear-like) for data sharing")
    deface.add_argument("image", type=Path, help="whole-head image")
    deface.add_argument("--mask", type=Path, required=True, help="brain mask on the image's grid")
    deface.add_argument("--out", type=Path, required=True, help="defaced image")
    deface.add_argument("--buffer-mm", type=float, default=10.0,
                        help="distance kept between the brain and the cutting plane (default 10 mm)")
    deface.add_argument("--subject", help="subject id, for messages")
    deface.set_defaults(func=cmd_deface)


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
        return args.func(args) or 0
    except BratsflowError as exc:
        if isinstance(exc, OutputError):
            # A failing write knows its file; the command knows the subject.
            exc.subject = exc.subject or getattr(args, "subject", None)
        print(f"bratsflow {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
