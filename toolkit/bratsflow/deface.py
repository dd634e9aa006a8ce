"""Face removal for data sharing, after Quickshear (Schimke & Hale, 2011): the brain mask is projected onto the
sagittal plane, the edge of its convex hull that runs from the lowest brain point towards the front gives a
cutting plane, and everything beyond that plane (moved `buffer_mm` away from the brain) is set to zero.

Works in world coordinates (RAS), so images in any voxel orientation are cut along the same anatomy.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.spatial import ConvexHull

from .errors import InputError
from .io import check_image, load_image, require_same_grid, save_image

# Distance of the cutting plane from the brain (config `deface.buffer_mm`).
DEFAULT_BUFFER_MM = 10.0
# The config keys whose defaults these are (tests/test_defaults.py checks config.yaml and the schema agree).
CONFIG_DEFAULTS = {"deface.buffer_mm": DEFAULT_BUFFER_MM}


def cutting_plane(mask: np.ndarray, affine: np.ndarray,
                  buffer_mm: float = DEFAULT_BUFFER_MM) -> tuple[np.ndarray, float]:
    """(normal, offset) in the sagittal (anterior, superior) plane: a point p is cut when normal·p > offset."""
    voxels = np.argwhere(mask)
    if len(voxels) < 4:
        raise InputError("the brain mask is empty: cannot place the face cut")
    points = np.unique(np.round(nib.affines.apply_affine(affine, voxels)[:, 1:], 1), axis=0)
    hull = points[ConvexHull(points).vertices]  # counter-clockwise in (anterior, superior)
    lowest = int(np.lexsort((-hull[:, 0], hull[:, 1]))[0])
    # Counter-clockwise from the lowest point is towards the front: that edge lies under the face.
    direction = hull[(lowest + 1) % len(hull)] - hull[lowest]
    normal = np.array([direction[1], -direction[0]]) / np.linalg.norm(direction)
    return normal, float(normal @ hull[lowest]) + buffer_mm


def deface(image: nib.Nifti1Image, mask: np.ndarray, buffer_mm: float = DEFAULT_BUFFER_MM) -> nib.Nifti1Image:
    """`image` with the voxels in front of and below the cutting plane set to zero."""
    normal, offset = cutting_plane(mask, image.affine, buffer_mm)
    grid = np.indices(image.shape[:3], dtype=np.float32).reshape(3, -1).T
    sagittal = nib.affines.apply_affine(image.affine, grid)[:, 1:]
    cut = (sagittal @ normal > offset).reshape(image.shape[:3])
    data = np.asanyarray(image.dataobj).copy()
    data[cut] = 0
    return nib.Nifti1Image(data, image.affine, image.header)


def deface_file(image: str | Path, mask: str | Path, out: str | Path, *, buffer_mm: float = DEFAULT_BUFFER_MM,
                subject: str | None = None) -> Path:
    img = check_image(load_image(image, subject=subject), subject=subject, file=image, spacing_range_mm=None)
    mask_img = load_image(mask, subject=subject)
    require_same_grid(mask_img, img, f"the grid of {image}", why="the brain mask must be on the image's grid",
                      subject=subject, file=mask)
    try:
        defaced = deface(img, np.asarray(mask_img.dataobj) > 0, buffer_mm)
    except InputError as exc:
        exc.subject, exc.file = subject, str(mask)
        raise
    return save_image(defaced, out)
