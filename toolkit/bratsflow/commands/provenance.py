"""`bratsflow provenance`: one subject's step records gathered into provenance.json."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(commands) -> None:
    prov = commands.add_parser("provenance", help="gather one subject's step records into provenance.json")
    prov.add_argument("records", nargs="+", type=Path, help="the subject's step records (<step>/<step>.json, …)")
    prov.add_argument("--subject", required=True, help="subject id")
    prov.add_argument("--out", type=Path, required=True, help="output JSON (RESULTS/<subject>/provenance.json)")
    prov.add_argument("--containers", help="the configured container images as JSON (step -> image)")
    prov.add_argument("--containers-used", action="store_true", help="the steps ran inside those images")
    prov.set_defaults(func=run_provenance)


def run_provenance(args: argparse.Namespace) -> None:
    import json

    from ..io import save_json
    from ..provenance import gather

    containers = json.loads(args.containers) if args.containers else {}
    save_json(gather(args.subject, args.records, containers=containers, containers_used=args.containers_used),
              args.out)
