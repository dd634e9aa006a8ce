"""nnU-Net v2 inference on a verified model folder: ensemble members (`predict`) and HD-BET share it.

The subject's files are handed to nnU-Net's own reader in the model's channel order (no renamed `_0000` copies),
so the arrays are exactly as nnU-Net saw them in training.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from .. import models
from ..errors import ConfigError, InputError, ModelError
from ..labels import BACKGROUND, REGIONS, SUBREGIONS, get_convention
from ..modalities import MODALITIES

log = logging.getLogger(__name__)

# Channel names found in dataset.json files of BraTS models (nnU-Net's examples, challenge submissions).
CHANNEL_ALIASES = {
    "t1": ("t1", "t1n", "t1w", "t1native", "nativet1", "t1pre"),
    "t1c": ("t1c", "t1ce", "t1gd", "t1wce", "t1post", "t1contrast", "t1cgd"),
    "t2": ("t2", "t2w"),
    "flair": ("flair", "t2f", "t2flair"),
}


def device_for(choice: str):
    import torch

    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but torch sees no CUDA GPU (use auto or cpu)")
    return torch.device(choice)


def load_predictor(model: str | Path, *, device: str = "auto", tta: bool = False, threads: int = 1,
                   folds: tuple[str, ...] = ("all",), checkpoint: str = "checkpoint_final.pth",
                   step_size: float = 0.5, sha256: str | None = None):
    """An nnUNetPredictor on a model folder whose files match their checksum record; and the folder.

    Nothing is unpickled before `models.resolve` has verified every recorded file and the requested fold
    checkpoints are known to the record (and match `sha256`, when given)."""
    import torch

    folder = models.resolve(model)
    recorded = models.manifest(folder)["files"]
    for fold in folds:
        name = f"fold_{fold}/{checkpoint}"
        if name not in recorded:
            raise ModelError(f"{name} is not part of the model (folds there: "
                             f"{sorted({k.split('/')[0] for k in recorded if k.startswith('fold_')})})", file=folder)
        if sha256 and recorded[name] != sha256.lower():
            raise ModelError(f"{name} has SHA-256 {recorded[name]}, the config pins {sha256}", file=folder)
    os.environ.setdefault("nnUNet_compile", "F")
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch_device = device_for(device)
    if torch_device.type == "cpu":
        torch.set_num_threads(max(1, threads))
    predictor = nnUNetPredictor(tile_step_size=step_size, use_gaussian=True, use_mirroring=tta,
                                perform_everything_on_device=torch_device.type == "cuda", device=torch_device,
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(
        str(folder), use_folds=tuple(f if f == "all" else int(f) for f in folds), checkpoint_name=checkpoint)
    log.info("nnU-Net model %s, folds %s, on %s (TTA %s)", folder, list(folds), torch_device, "on" if tta else "off")
    return predictor, folder


def read_channels(files: list[Path]):
    """Images as nnU-Net's SimpleITK reader gives them: (channels, z, y, x) and its properties."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    return SimpleITKIO().read_images([str(f) for f in files])


def to_voxel_order(array: np.ndarray) -> np.ndarray:
    """SimpleITK's (…, z, y, x) back to NIfTI's (…, x, y, z)."""
    return np.moveaxis(array, (-3, -1), (-1, -3))


def channel_modalities(dataset: dict, override: tuple[str, ...] = (), *, folder: Path | None = None) -> list[str]:
    """The modality of each input channel, from dataset.json's channel names or the member's `channels`."""
    names = [name for _, name in sorted(dataset["channel_names"].items(), key=lambda item: int(item[0]))]
    if override:
        if len(override) != len(names):
            raise ConfigError(f"channels lists {len(override)} modalities, the model takes {len(names)} ({names})")
        return list(override)
    order = []
    for name in names:
        key = re.sub(r"[^a-z0-9]", "", str(name).lower())
        matches = [m for m, aliases in CHANNEL_ALIASES.items() if key in aliases]
        if not matches:
            raise ConfigError(f"channel name {name!r} of the model is not a known modality name; give the member's "
                              f"`channels` (modalities {list(MODALITIES)} in the model's channel order)", file=folder)
        order.append(matches[0])
    if len(set(order)) != len(order):
        raise ConfigError(f"channel names {names} map to repeated modalities {order}; give the member's `channels`",
                          file=folder)
    return order


def probability_maps(probabilities: np.ndarray, label_manager, convention: str) -> dict[str, np.ndarray]:
    """nnU-Net's per-channel probabilities as the pipeline's probability keys (see io.save_probabilities).

    Region models give one sigmoid per region in `foreground_regions` order; label models one softmax channel
    per label value in `all_labels` order. Both are named through the member's label convention."""
    conv = get_convention(convention)
    if label_manager.has_regions:
        by_values = {tuple(sorted(conv.region_labels(r))): r for r in REGIONS}
        maps = {}
        for channel, region in enumerate(label_manager.foreground_regions):
            values = tuple(sorted(np.atleast_1d(region).tolist()))
            if values not in by_values:
                raise ModelError(f"model region {list(values)} is none of WT/TC/ET in convention {convention}")
            maps[by_values[values]] = probabilities[channel]
        return maps
    names = {0: BACKGROUND, **{conv.labels[name]: name for name in SUBREGIONS}}
    unknown = [v for v in label_manager.all_labels if v not in names]
    if unknown:
        raise ModelError(f"model labels {unknown} are not part of convention {convention}")
    return {names[v]: probabilities[channel] for channel, v in enumerate(label_manager.all_labels)}


def predict(images: dict[str, Path], member, *, subject: str | None = None, threads: int = 1,
            workdir: Path | None = None) -> tuple[np.ndarray, dict[str, np.ndarray] | None, dict]:
    """One member on one subject: label map (values of the member's convention), probabilities, details."""
    predictor, folder = load_predictor(member.model, device=member.device, tta=member.tta, threads=threads,
                                       folds=member.folds, checkpoint=member.checkpoint,
                                       step_size=member.step_size, sha256=member.sha256)
    dataset = json.loads((folder / "dataset.json").read_text())
    order = channel_modalities(dataset, member.channels, folder=folder)
    missing = [m for m in order if m not in images]
    if missing:
        raise InputError(f"member {member.name} needs {missing}, which the subject lacks", subject=subject)
    data, properties = read_channels([images[m] for m in order])
    segmentation, probabilities = predictor.predict_single_npy_array(data, properties, None, None, True)
    maps = probability_maps(to_voxel_order(np.asarray(probabilities)), predictor.label_manager, member.labels)
    details = {"model": str(folder), "channels": order, "device": str(predictor.device),
               "checkpoints": {f: models.manifest(folder)["files"][f"fold_{f}/{member.checkpoint}"]
                               for f in member.folds},
               "regions": bool(predictor.label_manager.has_regions)}
    return to_voxel_order(np.asarray(segmentation)).astype(np.uint8), maps, details
