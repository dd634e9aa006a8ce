"""HD-BET v2 brain extraction: its network is an nnU-Net v2 model folder, run here through `nnUNetPredictor` with
HD-BET's own settings (tile step 0.5, Gaussian weighting, mirroring as test-time augmentation, fold 'all').

The `hd-bet` package is not needed to run it: its predictor factory only knows a hard-coded folder under the home
directory that its command line downloads into on every start. Here the folder comes from the model store (or
the config), and its checksums are verified before the checkpoint is unpickled.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from . import models
from .errors import ConfigError

log = logging.getLogger(__name__)

FOLD = "all"
CHECKPOINT = "checkpoint_final.pth"


def device_for(choice: str):
    import torch

    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but torch sees no CUDA GPU (use auto or cpu)")
    return torch.device(choice)


def load_predictor(model: str | Path, device: str = "auto", tta: bool = True, threads: int = 1):
    """An nnUNetPredictor on a verified model folder, with HD-BET's inference settings; and the folder."""
    import torch

    folder = models.resolve(model)  # checksums first: nothing is unpickled before this returns
    os.environ.setdefault("nnUNet_compile", "F")
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch_device = device_for(device)
    if torch_device.type == "cpu":
        torch.set_num_threads(max(1, threads))
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=tta,
                                perform_everything_on_device=torch_device.type == "cuda", device=torch_device,
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=(FOLD,), checkpoint_name=CHECKPOINT)
    log.info("HD-BET model %s on %s (TTA %s)", folder, torch_device, "on" if tta else "off")
    return predictor, folder


def predict_mask(predictor, image_file: str | Path) -> np.ndarray:
    """Brain mask (voxel order of the NIfTI file) of one image, read by nnU-Net's own reader so it sees the
    arrays exactly as in training."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    data, properties = SimpleITKIO().read_images([str(image_file)])
    segmentation = predictor.predict_single_npy_array(data, properties, None, None, False)
    # SimpleITK arrays are (z, y, x); NIfTI voxel arrays (x, y, z).
    return np.asarray(segmentation).transpose(2, 1, 0) > 0


def hdbet_brain_mask(image: nib.Nifti1Image, params, workdir: Path, threads: int = 1) -> tuple[np.ndarray, dict]:
    image_file = workdir / "image.nii.gz"
    nib.save(image, image_file)
    predictor, folder = load_predictor(params.model, params.device, params.tta, threads)
    details = {"model": str(folder), "checkpoint_sha256": models.manifest(folder)["files"][f"fold_{FOLD}/{CHECKPOINT}"],
               "device": str(predictor.device), "tta": params.tta}
    return predict_mask(predictor, image_file), details
