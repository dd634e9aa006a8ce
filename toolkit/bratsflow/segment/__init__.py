"""Segmentation ensemble members. Each member turns the four skull-stripped atlas-space images into a label map
in the pipeline's label convention and, where it can, class or region probabilities (for `mean` fusion).

Kinds: `nnunetv2` (a trained nnU-Net v2 model folder from the model store, see `nnunet.py`) and `container`
(a BraTS challenge algorithm image with MLCube-style folders, see `container.py`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ..cohort import MODALITIES, MODALITY_NAMES
from ..errors import ConfigError, InputError
from ..io import (PROBABILITY_SUFFIX, check_image, label_image_like, load_image, require_same_grid, save_image,
                  save_json, save_probabilities, sha256_file)
from ..labels import convert
from ..provenance import Timer, environment

log = logging.getLogger(__name__)

KINDS = ("nnunetv2", "container")


@dataclass(frozen=True)
class Member:
    """One ensemble member, as declared under `segment.members` in the config."""

    name: str
    kind: str = "nnunetv2"
    # nnunetv2: a model-store name or an installed model folder; container: the image reference.
    model: str = ""
    # Optional pin of the checkpoint's (nnunetv2) or image's (container) SHA-256, on top of the store's record.
    sha256: str | None = None
    folds: tuple[str, ...] = ("all",)
    checkpoint: str = "checkpoint_final.pth"
    tta: bool = False
    device: str = "auto"
    step_size: float = 0.5
    # Label convention of the values the model writes (converted to the pipeline's convention).
    labels: str = "brats2023"
    # Modality of each input channel; empty: read from the model's dataset.json channel names.
    channels: tuple[str, ...] = ()
    weight: float = 1.0
    probabilities: bool = True
    # container: the runtime that runs the image, and the arguments after the image name.
    runtime: str = "podman"
    args: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, spec: dict) -> "Member":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ConfigError(f"segment member {spec.get('name')!r}: unknown key(s) {unknown}; known {sorted(known)}")
        values = dict(spec)
        for key in ("folds", "channels", "args"):
            if key in values:
                values[key] = tuple(str(v) for v in values[key])
        member = cls(**values)
        if member.kind not in KINDS:
            raise ConfigError(f"segment member {member.name}: kind must be one of {list(KINDS)}, not {member.kind!r}")
        if not member.model:
            raise ConfigError(f"segment member {member.name}: `model` is required (model-store name, folder or image)")
        bad = [c for c in member.channels if c not in MODALITIES]
        if bad:
            raise ConfigError(f"segment member {member.name}: channels {bad} are not modalities {list(MODALITIES)}")
        return member


def segment(images: dict[str, str | Path], member: Member, out_dir: str | Path, *, convention: str = "brats2023",
            subject: str | None = None, threads: int = 1) -> dict:
    """Run one member on one subject's atlas-space images and write `<name>.nii.gz` (+ probabilities, record)."""
    timer = Timer()
    out_dir = Path(out_dir)
    with timer.phase("load"):
        loaded = {m: check_image(load_image(p, subject=subject, modality=m), subject=subject, modality=m, file=p,
                                 spacing_range_mm=None) for m, p in images.items()}
        reference = next(iter(loaded.values()))
        for modality, img in loaded.items():
            require_same_grid(img, reference, "the grid of the first image",
                              why="the four images must share one grid (skull stripping's outputs)", subject=subject,
                              modality=MODALITY_NAMES[modality], file=images[modality])
    with timer.phase("predict"):
        if member.kind == "nnunetv2":
            from .nnunet import predict
        else:
            from .container import predict
        labels, probabilities, details = predict({m: Path(p) for m, p in images.items()}, member,
                                                 subject=subject, threads=threads, workdir=out_dir)
    if labels.shape != reference.shape:
        raise InputError(f"member {member.name} returned a label map of shape {labels.shape}, expected "
                         f"{reference.shape}", subject=subject)
    labels = convert(labels, member.labels, convention)

    with timer.phase("write"):
        label_file = save_image(label_image_like(labels, reference), out_dir / f"{member.name}.nii.gz")
        outputs = {"labels": {"path": label_file.name, "sha256": sha256_file(label_file)}}
        if probabilities is not None and member.probabilities:
            prob_file = save_probabilities(probabilities, out_dir / f"{member.name}{PROBABILITY_SUFFIX}")
            outputs["probabilities"] = {"path": prob_file.name, "sha256": sha256_file(prob_file)}
    record = {
        "step": "segment",
        "subject": subject,
        "member": asdict(member),
        "convention": convention,
        "method": details,
        "inputs": {m: {"path": str(p), "sha256": sha256_file(p)} for m, p in images.items()},
        "outputs": outputs,
        "volumes_ml": {str(int(v)): round(float(np.count_nonzero(labels == v)) * _voxel_ml(reference), 3)
                       for v in np.unique(labels) if v},
        "timings_s": timer.seconds,
        "environment": environment(),
    }
    save_json(record, out_dir / f"{member.name}.json")
    return record


def _voxel_ml(img) -> float:
    return float(np.prod(img.header.get_zooms()[:3])) / 1000
