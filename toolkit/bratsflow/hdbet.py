"""HD-BET v2 brain extraction: its network is an nnU-Net v2 model folder, run here through `nnUNetPredictor` with
HD-BET's own settings (tile step 0.5, Gaussian weighting, mirroring as test-time augmentation, fold 'all').

The `hd-bet` package is not needed to run it: its predictor factory only knows a hard-coded folder under the home
directory that its command line downloads into on every start. Here the folder comes from the model store, and
its checksums are verified before the checkpoint is unpickled.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from . import models
from .segment.nnunet import load_predictor, read_channels, to_voxel_order

FOLD = "all"
CHECKPOINT = "checkpoint_final.pth"


def hdbet_brain_mask(image: nib.Nifti1Image, params, workdir: Path, threads: int = 1) -> tuple[np.ndarray, dict]:
    image_file = workdir / "image.nii.gz"
    nib.save(image, image_file)
    predictor, folder = load_predictor(params.model, device=params.device, tta=params.tta, threads=threads,
                                       folds=(FOLD,), checkpoint=CHECKPOINT, step_size=0.5)
    data, properties = read_channels([image_file])
    segmentation = predictor.predict_single_npy_array(data, properties, None, None, False)
    details = {"model": str(folder), "checkpoint_sha256": models.manifest(folder)["files"][f"fold_{FOLD}/{CHECKPOINT}"],
               "device": str(predictor.device), "tta": params.tta}
    return to_voxel_order(np.asarray(segmentation)) > 0, details
