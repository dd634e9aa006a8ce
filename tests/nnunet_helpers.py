"""Tiny nnU-Net v2 model folders in the exact layout of a real one (dataset.json, plans.json,
fold_all/checkpoint_final.pth), so the real loading and inference code runs in tests. tests/make_tiny_models.py
trains the ones the tests ship.

The network is the architecture nnU-Net builds from the plans (PlainConvUNet, shrunk); training is a plain torch
loop on whole volumes normalised as nnU-Net's ZScoreNormalization does, not nnU-Net's trainer (minutes per epoch
on CPU).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np

CONFIGURATION = "3d_fullres"
TRAIN = ("sub-001", "sub-003")  # the tiny cohort's sub-002 stays unseen
# The label model lists its channels in another order than the pipeline, under other names.
LABEL_CHANNELS = {"0": "FLAIR", "1": "T1", "2": "T1Gd", "3": "T2"}
REGION_CHANNELS = {"0": "t1n", "1": "t1c", "2": "t2w", "3": "t2f"}  # BraTS 2023 file names




def plans(shape_zyx, spacing_zyx, channels: int, stages: int = 3, features: int = 4) -> dict:
    divisor = 2 ** (stages - 1)
    patch = [int(np.ceil(s / divisor) * divisor) for s in shape_zyx]
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    return {
        "dataset_name": "Dataset900_Tiny",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(spacing_zyx),
        "original_median_shape_after_transp": list(shape_zyx),
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {CONFIGURATION: {
            "data_identifier": "nnUNetPlans_3d_fullres",
            "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 1,
            "patch_size": patch,
            "median_image_size_in_voxels": list(shape_zyx),
            "spacing": list(spacing_zyx),
            "normalization_schemes": ["ZScoreNormalization"] * channels,
            "use_mask_for_norm": [False] * channels,
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": resampling,
            "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {**resampling, "order": 1},
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {
                    "n_stages": stages,
                    "features_per_stage": [features * 2**i for i in range(stages)],
                    "conv_op": "torch.nn.modules.conv.Conv3d",
                    "kernel_sizes": [[3, 3, 3]] * stages,
                    "strides": [[1, 1, 1]] + [[2, 2, 2]] * (stages - 1),
                    "n_conv_per_stage": [1] * stages,
                    "n_conv_per_stage_decoder": [1] * (stages - 1),
                    "conv_bias": True,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                    "dropout_op": None,
                    "dropout_op_kwargs": None,
                    "nonlin": "torch.nn.LeakyReLU",
                    "nonlin_kwargs": {"inplace": True},
                },
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
            },
            "batch_dice": False,
        }},
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(c): {"max": 1.0, "mean": 0.0, "median": 0.0, "min": 0.0, "percentile_00_5": 0.0,
                     "percentile_99_5": 1.0, "std": 1.0} for c in range(channels)},
    }


def _nonzero_box(image: np.ndarray) -> tuple[slice, ...]:
    where = np.argwhere(np.any(image != 0, axis=0))
    return tuple(slice(a, b + 1) for a, b in zip(where.min(axis=0), where.max(axis=0)))


def _soft_dice_loss(probabilities, target):
    axes = (0, 2, 3, 4)
    intersection = (probabilities * target).sum(axes)
    return 1 - ((2 * intersection + 1) / (probabilities.sum(axes) + target.sum(axes) + 1)).mean()


def train_tiny_model(folder: Path, images: list[np.ndarray], labels: list[np.ndarray], spacing_zyx,
                     label_names: dict[str, int | list[int]], channel_names: dict[str, str], steps: int = 150,
                     seed: int = 0, regions_class_order: list[int] | None = None) -> Path:
    """Train on whole volumes (arrays (channels, z, y, x) as SimpleITK reads them) and write the model folder.

    With `regions_class_order`, a region-based model (nnU-Net's BraTS setting): `label_names` maps each region to
    its label values, one sigmoid output per region."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    torch.manual_seed(seed)
    channels = images[0].shape[0]
    plan = plans(images[0].shape[1:], spacing_zyx, channels)
    manager = PlansManager(plan)
    configuration = manager.get_configuration(CONFIGURATION)
    regions = [np.atleast_1d(v) for k, v in label_names.items() if k != "background"] if regions_class_order \
        else None
    outputs = len(regions) if regions else len(label_names)
    network = nnUNetTrainer.build_network_architecture(manager, configuration, channels, outputs,
                                                       enable_deep_supervision=False)
    patch = configuration.patch_size

    def padded(volume: np.ndarray) -> np.ndarray:
        pad = [(0, 0)] * (volume.ndim - 3) + [(0, p - s) for p, s in zip(patch, volume.shape[-3:])]
        return np.pad(volume, pad)

    # As nnU-Net's preprocessing: crop to the non-zero bounding box, z-score each channel there, pad with zeros.
    boxes = [_nonzero_box(x) for x in images]
    images = [x[(slice(None), *box)] for x, box in zip(images, boxes)]
    labels = [y[box] for y, box in zip(labels, boxes)]
    normalised = [(x - x.mean(axis=(1, 2, 3), keepdims=True)) / x.std(axis=(1, 2, 3), keepdims=True)
                  for x in images]
    inputs = torch.from_numpy(np.stack([padded(x) for x in normalised]).astype(np.float32))
    # nnU-Net's loss: cross-entropy plus soft Dice over the foreground outputs (small tumours need the Dice).
    if regions:
        targets = torch.from_numpy(np.stack([padded(np.stack([np.isin(y, r) for r in regions]))
                                             for y in labels]).astype(np.float32))

        def loss_function(logits, target):
            probabilities = torch.sigmoid(logits)
            return torch.nn.functional.binary_cross_entropy_with_logits(logits, target) + \
                _soft_dice_loss(probabilities, target)
    else:
        targets = torch.from_numpy(np.stack([padded(y) for y in labels]).astype(np.int64))

        def loss_function(logits, target):
            one_hot = torch.nn.functional.one_hot(target, outputs).movedim(-1, 1).float()
            return torch.nn.functional.cross_entropy(logits, target) + \
                _soft_dice_loss(torch.softmax(logits, 1)[:, 1:], one_hot[:, 1:])
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-2)
    network.train()
    for step in range(steps):
        index = step % len(images)
        optimiser.zero_grad()
        loss = loss_function(network(inputs[index:index + 1]), targets[index:index + 1])
        loss.backward()
        optimiser.step()
    network.eval()

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plan, indent=2))
    dataset = {"channel_names": channel_names, "labels": label_names, "numTraining": len(images),
               "file_ending": ".nii.gz"}
    if regions_class_order:
        dataset["regions_class_order"] = regions_class_order
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    (folder / "fold_all").mkdir(exist_ok=True)
    torch.save({"network_weights": network.state_dict(), "init_args": {"configuration": CONFIGURATION},
                "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2)},
               folder / "fold_all" / "checkpoint_final.pth")
    return folder


def atlas_space_subject(cohort, sid):
    """Four skull-stripped atlas-space images (nib, through the true transforms) and the atlas-space truth labels."""
    from bratsflow import paths, synth

    truth = paths.TruthFiles(cohort, sid)
    brain = np.asarray(nib.load(truth.brain_mask).dataobj) > 0
    labels = nib.load(truth.labels)
    images = {m: nib.Nifti1Image(np.where(brain, data, 0).astype(np.float32), labels.affine)
              for m, data in synth.resample_native_to_atlas(cohort, sid).items()}
    return images, np.asarray(labels.dataobj)


def train_on_tiny_cohort(cohort, folder, channels, **kwargs):
    """A member trained on the tiny cohort's TRAIN subjects, its channels the modalities `channels` names, in that
    order."""
    from bratsflow.segment.nnunet import channel_modalities

    order = [channel_modalities({"channel_names": channels})[int(k)] for k in sorted(channels)]
    arrays, targets = [], []
    for sid in TRAIN:
        images, labels = atlas_space_subject(cohort, sid)
        arrays.append(np.stack([images[m].get_fdata(dtype=np.float32).transpose(2, 1, 0) for m in order]))
        targets.append(labels.transpose(2, 1, 0))
    spacing = tuple(float(s) for s in images["t1"].header.get_zooms()[:3][::-1])
    return train_tiny_model(folder, arrays, targets, spacing, channel_names=channels, steps=120, **kwargs)


def atlas_space_t1(cohort, sid) -> tuple[nib.Nifti1Image, np.ndarray]:
    """A subject's atlas-space T1 with its skull (through the true transforms) and its true brain mask."""
    from bratsflow import paths, synth

    truth = nib.load(paths.TruthFiles(cohort, sid).brain_mask)
    t1 = synth.resample_native_to_atlas(cohort, sid)["t1"].astype(np.float32)
    return nib.Nifti1Image(t1, truth.affine), np.asarray(truth.dataobj) > 0


def train_tiny_hdbet(cohort, folder: Path) -> Path:
    """A one-channel brain-extraction model in HD-BET's folder layout, trained on the tiny cohort's TRAIN subjects."""
    images, labels = [], []
    for sid in TRAIN:
        t1, mask = atlas_space_t1(cohort, sid)
        # SimpleITK's array order, as nnU-Net reads training images.
        images.append(t1.get_fdata(dtype=np.float32).transpose(2, 1, 0)[None])
        labels.append(mask.transpose(2, 1, 0).astype(np.uint8))
    spacing = tuple(float(s) for s in t1.header.get_zooms()[:3][::-1])
    return train_tiny_model(folder, images, labels, spacing, {"background": 0, "brain": 1}, {"0": "T1"}, steps=100)


def train_tiny_models(cohort, root: Path) -> dict[str, Path]:
    """Every tiny model of the tests, trained on the tiny cohort: the label-based and region-based members and the
    HD-BET model."""
    return {
        "labels": train_on_tiny_cohort(cohort, root / "labels", LABEL_CHANNELS,
                                       label_names={"background": 0, "NETC": 1, "SNFH": 2, "ET": 3}),
        "regions": train_on_tiny_cohort(cohort, root / "regions", REGION_CHANNELS,
                                        label_names={"background": 0, "whole_tumor": [1, 2, 3],
                                                     "tumor_core": [1, 3], "enhancing_tumor": 3},
                                        regions_class_order=[2, 1, 3]),
        "hdbet": train_tiny_hdbet(cohort, root / "hdbet"),
    }


def training_inputs_sha256(cohort) -> dict[str, str]:
    """SHA-256 of what the tiny models learn from, per TRAIN subject: its atlas-space images (to 0.01, so that a
    last-bit difference of a resampling does not count) and its true labels and brain mask."""
    from bratsflow import paths, synth

    digests = {}
    for sid in TRAIN:
        truth = paths.TruthFiles(cohort, sid)
        arrays = [np.round(image, 2).astype(np.float32)
                  for _, image in sorted(synth.resample_native_to_atlas(cohort, sid).items())]
        arrays += [np.asarray(nib.load(file).dataobj) for file in (truth.labels, truth.brain_mask)]
        digest = hashlib.sha256()
        for array in arrays:
            digest.update(np.ascontiguousarray(array).tobytes())
        digests[sid] = digest.hexdigest()
    return digests
