"""Versions, parameters, checksums and timings recorded next to every output."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from contextlib import contextmanager
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import __version__
from .errors import InputError

# Distributions whose versions change results; those not installed are recorded as null.
TRACKED = ("numpy", "scipy", "nibabel", "SimpleITK", "nilearn", "pydicom", "dcm2niix", "pandas", "antspyx",
           "nnunetv2", "hd-bet", "pyradiomics", "torch", "snakemake")


def _installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    source = Path(__file__).resolve().parent
    try:
        result = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10,
                                check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the bratsflow source tree when it runs from a git checkout (editable installs)."""
    return _git("rev-parse", "HEAD") or None


@lru_cache(maxsize=1)
def git_dirty() -> bool | None:
    """Whether tracked files differ from that commit (then the commit alone does not say what ran)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def environment() -> dict:
    return {
        "bratsflow": __version__,
        "bratsflow_git_commit": git_commit(),
        "bratsflow_git_dirty": git_dirty(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _installed(name) for name in TRACKED},
    }


class Timer:
    """Wall-clock seconds per named phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


def gather(subject: str, records: list[str | Path], *, containers: dict[str, str] | None = None,
           containers_used: bool = False) -> dict:
    """One subject's provenance from its steps' records (`<step>/<step>.json`, `segment/<member>.json`, …).

    The records are kept whole under `steps` (keyed by their path below the subject's folder); the summary above
    them collects, from the keys every record has (bratsflow.step.RECORD_KEYS), what a reader looks for first: the
    input checksums, software versions (one value when every step agrees, else the value each step ran with),
    models and atlases with their checksums, container images, and each step's time."""
    from .step import read_record

    steps = {}
    for path in records:
        path = Path(path)
        record = read_record(path, subject)
        if record["subject"] not in (None, subject):
            raise InputError(f"the record belongs to subject {record['subject']}", subject=subject, file=path)
        steps[f"{path.parent.name}/{path.stem}"] = record

    ingest = next((r for r in steps.values() if r["step"] == "ingest"), None)
    inputs = {m: {k: entry.get(k) for k in ("path", "format", "sha256")}
              for m, entry in (ingest["inputs"] if ingest else {}).items()}
    fused = next((r for r in steps.values() if r["step"] == "fuse"), None)
    return {
        "subject": subject,
        "inputs": inputs,
        # missing_modalities: run-available: what this subject ran without, and the members that skipped it.
        "missing_modalities": ingest.get("missing_modalities", []) if ingest else [],
        "skipped_members": fused.get("skipped_members", {}) if fused else {},
        "software": _agreed({key: record["environment"] for key, record in steps.items()}),
        "models": {name: model for record in steps.values() for name, model in record["models"].items()},
        "atlases": {name: atlas for record in steps.values() for name, atlas in record["atlases"].items()},
        "containers": {"images": dict(containers or {}), "used": containers_used},
        "timings_s": {key: round(sum(record["timings_s"].values()), 3) for key, record in steps.items()},
        "steps": steps,
    }


def _agreed(environments: dict[str, dict]) -> dict:
    """Each step's environment flattened; a value every step shares stays a value, others map value -> steps."""
    by_name: dict[str, dict[str | None, list[str]]] = {}
    for step, env in environments.items():
        flat = {**{k: v for k, v in env.items() if k != "packages"}, **env.get("packages", {})}
        for name, value in flat.items():
            by_name.setdefault(name, {}).setdefault(value, []).append(step)
    return {name: next(iter(values)) if len(values) == 1
            else {value if isinstance(value, str) else json.dumps(value): steps for value, steps in values.items()}
            for name, values in by_name.items()}
