"""The model store: trained nnU-Net v2 model folders installed once into a user cache, with the SHA-256 of every
file recorded at installation and checked again before any checkpoint is loaded.

Checkpoints are pickles (`torch.load(..., weights_only=False)` in nnU-Net): unpickling one runs code, so a file
that does not match its record is never opened. Models are installed from a folder, a zip (the
`nnUNetv2_export_model_to_zip` layout, or a release zip such as HD-BET's) or a URL (only with a SHA-256), never
into site-packages and never while the pipeline runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import ConfigError, ModelError
from .io import download, save_json, sha256_file

STORE_ENV = "BRATSFLOW_MODELS"
MANIFEST = "bratsflow-model.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Release:
    url: str
    # None until a maintainer with a network pins it: until then `models fetch` asks for --sha256.
    sha256: str | None
    description: str


RELEASES: dict[str, Release] = {
    # HD-BET v2's weights: the address its own package downloads from (HD_BET/paths.py, hd-bet 2.0.1).
    "hd-bet": Release(
        url="https://zenodo.org/records/14445620/files/release_v1.5.0.zip?download=1",
        sha256=None,
        description="HD-BET v2 brain extraction (MIC-DKFZ): nnU-Net v2 model folder, fold 'all', one input channel",
    ),
}


def store_dir() -> Path:
    """$BRATSFLOW_MODELS, else the per-user cache ($XDG_CACHE_HOME or ~/.cache)/bratsflow/models."""
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bratsflow" / "models"


def model_dir(name: str) -> Path:
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"model name {name!r} is not allowed (letters, digits, '.', '_', '-')")
    return store_dir() / name


def _is_url(source: str) -> bool:
    return bool(re.match(r"^(https?|file)://", source))


def _safe_extract(archive: Path, destination: Path) -> None:
    """Unzip, refusing members that would land outside `destination` (absolute paths, '..')."""
    try:
        with zipfile.ZipFile(archive) as handle:
            root = destination.resolve()
            for member in handle.namelist():
                if not (destination / member).resolve().is_relative_to(root):
                    raise ModelError(f"zip member {member!r} points outside the model folder; refused", file=archive)
            handle.extractall(destination)
    except zipfile.BadZipFile as exc:
        raise ModelError(f"not a readable zip file ({exc})", file=archive) from None


def _find_model_folder(root: Path, source: str) -> Path:
    """The one folder under `root` that holds an nnU-Net v2 model: dataset.json, plans.json, fold_*/."""
    found = sorted(plans.parent for plans in root.rglob("plans.json")
                   if (plans.parent / "dataset.json").is_file() and any(plans.parent.glob("fold_*/checkpoint_*.pth")))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise ModelError(f"{what} nnU-Net v2 model folders (dataset.json, plans.json, fold_*/checkpoint_*.pth) "
                         f"found; expected exactly one", file=source)
    return found[0]


def _checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def install(name: str, source: str | Path, *, sha256: str | None = None, force: bool = False) -> Path:
    """Install a model from a folder, a zip or a URL into the store and record its files' checksums.

    `sha256` is the expected checksum of the zip or download; it is required for URLs."""
    target = model_dir(name)
    if target.exists() and not force:
        raise ModelError(f"model {name} is already installed at {target}; use --force to replace it")
    source_text = str(source)
    expected = (sha256 or "").lower() or None
    if _is_url(source_text) and not expected:
        raise ConfigError(f"no SHA-256 given for {source_text}: bratsflow never installs an unverified download "
                          f"(give the published checksum with --sha256)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".install-{name}-") as tmp:
        staging = Path(tmp)
        archive = None
        if _is_url(source_text):
            archive = staging / "download.zip"
            download(source_text, archive, f"install it from the local copy: bratsflow models install {name} FILE.zip")
        elif Path(source_text).is_file():
            archive = Path(source_text)
        elif not Path(source_text).is_dir():
            raise ModelError("neither a model folder, a zip file nor a URL", file=source_text)
        source_sha256 = sha256_file(archive) if archive else None
        if expected and source_sha256 != expected:
            raise ModelError(f"SHA-256 is {source_sha256}, expected {expected}; nothing was installed",
                             file=source_text)
        if archive:
            _safe_extract(archive, staging / "unpacked")
            folder = _find_model_folder(staging / "unpacked", source_text)
        else:
            folder = _find_model_folder(Path(source_text), source_text)
        staged = staging / "model"
        shutil.copytree(folder, staged, ignore=shutil.ignore_patterns(MANIFEST))
        write_manifest(staged, name, source_text, source_sha256)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    return target


def write_manifest(folder: Path, name: str, source: str, source_sha256: str | None = None) -> Path:
    """Record the SHA-256 of every file of a model folder (done by `install`; also for models the project ships)."""
    return save_json({"name": name, "source": source, "source_sha256": source_sha256,
                      "installed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "format": "nnunetv2", "files": _checksums(folder)}, folder / MANIFEST)


def fetch(name: str, *, sha256: str | None = None, url: str | None = None, force: bool = False) -> Path:
    """Download a known release (e.g. hd-bet) into the store, checked against its SHA-256."""
    if name not in RELEASES:
        raise ConfigError(f"no release is known for model {name!r}; known: {', '.join(RELEASES)} "
                          f"(install other models with `bratsflow models install NAME FOLDER|ZIP|URL`)")
    release = RELEASES[name]
    expected = sha256 or release.sha256
    if not expected:
        raise ConfigError(f"no SHA-256 is pinned for model {name}; give the published checksum with --sha256 "
                          f"(bratsflow never installs unverified weights)")
    return install(name, url or release.url, sha256=expected, force=force)


def manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise ModelError(f"no checksum record ({MANIFEST}): install the model with `bratsflow models install NAME "
                         f"{folder}` so its files can be verified before loading", file=folder)
    return json.loads(path.read_text())


def verify(folder: str | Path) -> dict:
    """Recompute every recorded checksum; any missing, changed or unrecorded checkpoint fails the model."""
    folder = Path(folder)
    record = manifest(folder)
    recorded = record["files"]
    problems = [f"{rel}: missing" for rel in recorded if not (folder / rel).is_file()]
    problems += [f"{rel}: SHA-256 differs from the record" for rel, digest in recorded.items()
                 if (folder / rel).is_file() and sha256_file(folder / rel) != digest]
    problems += [f"{p.relative_to(folder)}: not in the record" for p in folder.rglob("*.pth")
                 if str(p.relative_to(folder)) not in recorded]
    if problems:
        raise ModelError("model files do not match their checksum record: " + "; ".join(problems), file=folder)
    return record


def locate(spec: str | Path) -> Path:
    """The model folder a store name or folder path names, not verified: for reading what the model declares
    (dataset.json) before anything is loaded; `resolve` verifies it."""
    spec_text = str(spec)
    if NAME_PATTERN.match(spec_text) and model_dir(spec_text).is_dir():
        folder = model_dir(spec_text)
    elif Path(spec_text).is_dir():
        folder = Path(spec_text)
    else:
        hint = f"`bratsflow models fetch {spec_text}`" if spec_text in RELEASES else \
            f"`bratsflow models install {spec_text} FOLDER|ZIP|URL`"
        raise ModelError(f"model {spec_text!r} is neither installed in {store_dir()} (set {STORE_ENV} to use "
                         f"another store) nor a folder; install it with {hint}")
    return folder


def resolve(spec: str | Path) -> Path:
    """A verified model folder from a store name or a folder path (which must carry a checksum record)."""
    folder = locate(spec)
    verify(folder)
    return folder


def installed() -> list[tuple[str, Path]]:
    root = store_dir()
    return sorted((p.name, p) for p in root.iterdir() if (p / MANIFEST).is_file()) if root.is_dir() else []
