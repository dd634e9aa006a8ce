"""Command line: one subcommand per step; each parses its arguments and calls the step's function."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from . import __version__, commands as command_modules
from .errors import BratsflowError, OutputError


def limit_threads(threads: int) -> None:
    """Pin every thread pool to the rule's `threads:`, so runs are reproducible and do not oversubscribe."""
    import SimpleITK as sitk
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)  # ANTs reads it when it starts ITK
    # numexpr (under pandas) sizes its pool from these when a step first loads pandas, after this call; left
    # unset, it takes every core and logs that it did, a line in front of a user error's one line.
    os.environ["NUMEXPR_MAX_THREADS"] = os.environ["NUMEXPR_NUM_THREADS"] = str(threads)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bratsflow", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bratsflow {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for numerical libraries (BLAS, ITK); results are reproducible per count")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Every module of bratsflow.commands adds its subcommands: a new step's command needs no edit here.
    for found in pkgutil.iter_modules(command_modules.__path__):
        importlib.import_module(f"{command_modules.__name__}.{found.name}").add_commands(commands)
    return parser


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
