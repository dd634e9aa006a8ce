"""Running the workflow from tests: Snakemake in a subprocess, a test configuration, the tiny ensemble's members."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def snakemake(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    # The rules call the `bratsflow` command: put this interpreter's scripts first on the PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    snakemake_bin = shutil.which("snakemake", path=env["PATH"])
    assert snakemake_bin, "snakemake is not installed"
    result = subprocess.run([snakemake_bin, "--nolock", *args], cwd=REPO, capture_output=True, text=True, env=env,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def write_config(tmp_path: Path, tiny_atlas=None, **extra) -> Path:
    config = {
        "results": str(tmp_path / "results"),
        "demo": {"root": str(tmp_path / "demo"), "subjects": 2, "seed": 7, "resolution_mm": 3.0},
        "ingest": {"spacing_range_mm": [0.2, 16.0]},
        # The demo ensemble (the default members) is for 1 mm subjects: the tiny cohort stops at skull stripping
        # unless a test names its own members.
        "segment": {"members": []},
        **extra,
    }
    if tiny_atlas:
        config["coregister"] = {"atlas": str(tiny_atlas[0]), "atlas_mask": str(tiny_atlas[1])}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def tiny_ensemble(tiny_members) -> dict:
    """Config keys of a two-member ensemble of the tiny nnU-Net models, fused by weighted mean."""
    members = [{"name": "tiny_labels", "model": str(tiny_members["labels"])},
               {"name": "tiny_regions", "model": str(tiny_members["regions"]), "weight": 2.0}]
    return {"segment": {"members": members}, "fuse": {"method": "mean"}, "threads": {"segment": 1}}


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table: rule -> number of jobs it ran."""
    block = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, flags=re.MULTILINE) if m[1] != "total"}
