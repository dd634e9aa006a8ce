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

from ..availability import absent
from ..errors import ConfigError, InputError, ModelError
from ..io import check_image, label_image_like, load_image, require_same_grid
from ..labels import DEFAULT_CONVENTION, convert, require_exact_mapping
from ..modalities import MODALITIES, MODALITY_NAMES
from ..paths import StepFiles
from ..step import StepRun

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

    @property
    def writes_probabilities(self) -> bool:
        """Container members write only a label map; nnU-Net members also their probabilities (`mean` fusion)."""
        return self.kind == "nnunetv2" and self.probabilities

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


def required_modalities(member: Member) -> tuple[str, ...]:
    """The modalities a member reads: a container the four files of the BraTS interface; an nnU-Net model its
    input channels (the member's `channels`, else the channel names of its dataset.json)."""
    if member.kind == "container":
        return MODALITIES
    if member.channels:
        return member.channels
    import json

    from .. import models
    from .nnunet import channel_modalities

    folder = models.locate(member.model)
    dataset = folder / "dataset.json"
    if not dataset.is_file():
        raise ModelError(f"member {member.name}: the model has no dataset.json to read its input channels from",
                         file=folder)
    return tuple(channel_modalities(json.loads(dataset.read_text()), folder=folder))


def segment(images: dict[str, str | Path], member: Member, out_dir: str | Path, *, convention: str = DEFAULT_CONVENTION,
            subject: str | None = None, threads: int = 1) -> dict:
    """Run one member on one subject's atlas-space images and write `<name>.nii.gz` (+ probabilities, record)."""
    # Before the model runs: a member of another task would cost its prediction and then fail.
    require_exact_mapping(member.labels, convention, member=member.name)
    files = StepFiles(out_dir, "segment")
    run = StepRun("segment", subject, files.member_record(member.name), parameters=asdict(member))
    with run.phase("load"):
        loaded = {m: check_image(load_image(p, subject=subject, modality=m), subject=subject, modality=m, file=p,
                                 spacing_range_mm=None) for m, p in images.items()}
        reference = next(iter(loaded.values()))
        for modality, img in loaded.items():
            require_same_grid(img, reference, "the grid of the first image",
                              why="the four images must share one grid (skull stripping's outputs)", subject=subject,
                              modality=MODALITY_NAMES[modality], file=images[modality])
    with run.phase("predict"):
        if member.kind == "nnunetv2":
            from .nnunet import predict
        else:
            from .container import predict
        labels, probabilities, details = predict({m: Path(p) for m, p in images.items()}, member,
                                                 subject=subject, threads=threads, workdir=files.folder)
    if labels.shape != reference.shape:
        raise InputError(f"member {member.name} returned a label map of shape {labels.shape}, expected "
                         f"{reference.shape}", subject=subject)
    labels = convert(labels, member.labels, convention)

    run.add_inputs(images)
    with run.phase("write"):
        run.save_image("labels", label_image_like(labels, reference), files.member(member.name))
        if probabilities is not None and member.writes_probabilities:
            run.save_probabilities("probabilities", probabilities, files.member_probabilities(member.name))
    run.add_model(member.name, **{k: v for k, v in details.items() if k in MODEL_KEYS})
    return run.finish(
        convention=convention,
        missing_modalities=absent(images),
        method=details,
        volumes_ml={str(int(v)): round(float(np.count_nonzero(labels == v)) * _voxel_ml(reference), 3)
                    for v in np.unique(labels) if v},
    )


# What identifies a member's model in its `method` details (the rest are run settings).
MODEL_KEYS = ("model", "checkpoints", "image", "image_id", "runtime", "device")


def _voxel_ml(img) -> float:
    return float(np.prod(img.header.get_zooms()[:3])) / 1000
