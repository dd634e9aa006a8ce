"""Reference atlases: the built-in MNI152 2009 template (ships with nilearn, offline), atlases downloaded once
into a user cache with a SHA-256 check (`bratsflow atlas fetch`), or any user-provided file.

Atlases are never downloaded while the pipeline runs and never written into site-packages.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import ConfigError, InputError
from .io import download, require_same_grid, sha256_file

CACHE_ENV = "BRATSFLOW_ATLASES"


@dataclass(frozen=True)
class Atlas:
    name: str
    image: nib.Nifti1Image
    # Brain mask of the atlas: registration of whole-head images to a brain-only template is restricted to it.
    mask: nib.Nifti1Image | None
    source: str
    sha256: str | None


@dataclass(frozen=True)
class Download:
    """An atlas file to fetch; the cache keeps it as `filename`."""

    url: str
    filename: str
    sha256: str | None
    description: str = ""


# BraTS reference space: SRI24 as distributed with the BraTS challenges (240×240×155, 1 mm). The file key and its
# SHA-256 could not be verified from the machine this was written on (no network); until a maintainer pins the
# checksum here, `bratsflow atlas fetch sri24` asks for one with --sha256.
DOWNLOADS: dict[str, Download] = {
    "sri24": Download(
        url="https://zenodo.org/records/15236131/files/brats_sri24.nii?download=1",
        filename="sri24.nii",
        sha256=None,
        description="SRI24 in BraTS space (240×240×155, 1 mm), from BrainLes' atlas record",
    ),
}
BUILTIN = ("mni152",)


def cache_dir() -> Path:
    """$BRATSFLOW_ATLASES, else the per-user cache ($XDG_CACHE_HOME or ~/.cache)/bratsflow/atlases."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "bratsflow" / "atlases"


def cached_path(name: str) -> Path:
    return cache_dir() / name / DOWNLOADS[name].filename


# nilearn's MNI152 2009 template (1 mm) and the brain mask nilearn derives from it (load_mni152_template: the
# voxels as float32 divided by their maximum; load_mni152_brain_mask: above 0.2), read here from nilearn's package
# data: importing nilearn.datasets loads pandas and scikit-learn for its fetchers, 2 s of the report step's 12.
# tests/test_coregister.py checks that both stay equal to nilearn's.
MNI152_FILE = ("datasets", "data", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
MNI152_MASK_THRESHOLD = 0.2


def _mni152() -> Atlas:
    from importlib.util import find_spec

    source = nib.load(Path(find_spec("nilearn").origin).parent.joinpath(*MNI152_FILE))
    template = np.asanyarray(source.dataobj).astype(np.float32)
    template /= template.max()
    image = nib.Nifti1Image(template, source.affine)
    mask = nib.Nifti1Image((template > MNI152_MASK_THRESHOLD).astype(np.uint8), source.affine)
    return Atlas("mni152", image, mask, "nilearn MNI152 2009 (1 mm, brain only)", None)


def load_atlas(spec: str, mask: str | Path | None = None) -> Atlas:
    """`spec` is a built-in name (mni152), a fetched atlas name (sri24) or a NIfTI path."""
    if spec in BUILTIN:
        if mask:
            raise ConfigError(f"atlas {spec} brings its own brain mask; --atlas-mask is for atlas files")
        return _mni152()
    if spec in DOWNLOADS:
        path = cached_path(spec)
        if not path.is_file():
            raise ConfigError(
                f"atlas {spec} is not in the cache: run `bratsflow atlas fetch {spec}` where there is a network, "
                f"or put the file at {path} (or set {CACHE_ENV}), or pass the atlas file's path instead")
        return _from_file(path, mask, name=spec)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"atlas {spec!r} is neither a known atlas ({', '.join([*BUILTIN, *DOWNLOADS])}) nor a file")
    return _from_file(path, mask, name=path.name)


def _from_file(path: Path, mask: str | Path | None, name: str) -> Atlas:
    from .io import check_image, load_image

    image = check_image(load_image(path), file=path, spacing_range_mm=None)
    mask_img = None
    if mask:
        mask_img = check_image(load_image(mask), file=mask, spacing_range_mm=None)
        require_same_grid(mask_img, image, f"the grid of atlas {path}", why="an atlas mask must share it",
                          file=mask)
    return Atlas(name, image, mask_img, str(path), sha256_file(path))


def fetch(name: str, *, url: str | None = None, sha256: str | None = None, force: bool = False) -> Path:
    """Download an atlas into the cache, verify its SHA-256 before it is moved into place, and return its path."""
    if name not in DOWNLOADS:
        raise ConfigError(f"no download is known for atlas {name!r}; known: {', '.join(DOWNLOADS)}")
    entry = DOWNLOADS[name]
    expected = (sha256 or entry.sha256 or "").lower()
    if not expected:
        raise ConfigError(f"no SHA-256 is pinned for atlas {name}; give the published checksum with --sha256 "
                          f"(bratsflow never installs an unverified atlas)")
    target = cached_path(name)
    if target.is_file() and not force:
        if sha256_file(target) == expected:
            return target
        raise InputError(f"cached atlas does not match SHA-256 {expected}; rerun with --force to replace it",
                         file=target)
    target.parent.mkdir(parents=True, exist_ok=True)
    source = url or entry.url
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        partial = Path(tmp) / "download"
        digest = download(source, partial, f"put it at {target}, or pass the atlas file's path")
        if digest != expected:
            raise InputError(f"downloaded file has SHA-256 {digest}, expected {expected}; nothing was installed",
                             file=source)
        os.replace(partial, target)
    return target
