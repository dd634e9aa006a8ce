"""`bratsflow models`: the model store (list, install, fetch, verify) and training the demo ensemble."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BratsflowError


def add_commands(commands) -> None:
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
    store.set_defaults(func=run_models)


def run_models(args: argparse.Namespace) -> None:
    from .. import models

    if args.action == "list":
        installed = dict(models.installed())
        for name, folder in installed.items():
            print(f"{name}\tinstalled at {folder}\tfrom {models.manifest(folder)['source']}")
        for name, release in models.RELEASES.items():
            if name not in installed:
                print(f"{name}\tnot installed (bratsflow models fetch {name})\t{release.description}")
        return
    if args.action == "train-demo":
        from ..training.demo import train_demo

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
