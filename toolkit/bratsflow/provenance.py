"""Versions, parameters, checksums and timings recorded next to every output."""

from __future__ import annotations

import platform
import subprocess
import time
from contextlib import contextmanager
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import __version__

# Distributions whose versions change results; those not installed are recorded as null.
TRACKED = ("numpy", "scipy", "nibabel", "SimpleITK", "nilearn", "pydicom", "dcm2niix", "pandas", "antspyx",
           "nnunetv2", "hd-bet", "pyradiomics", "torch", "snakemake")


def _installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the bratsflow source tree when it runs from a git checkout (editable installs)."""
    source = Path(__file__).resolve().parent
    try:
        result = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def environment() -> dict:
    return {
        "bratsflow": __version__,
        "bratsflow_git_commit": git_commit(),
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
