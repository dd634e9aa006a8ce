"""Realistic degradations of an MR image, for robustness tests and benchmarks on the few real scans there are:
coarser voxels and thick slices (as a scanner averages them), a field of view that stops short of the top of the
head, a bias field with Rician noise, motion-like blur and ghosting. Each keeps the image's own orientation.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi


def slice_axis(img: nib.Nifti1Image) -> int:
    """The axis with the largest voxel size (the slice direction of a 2-D acquisition)."""
    return int(np.argmax(img.header.get_zooms()[:3]))


def block_average(img: nib.Nifti1Image, factors: tuple[int, int, int]) -> nib.Nifti1Image:
    """Voxels `factors` times larger, each the mean of the voxels it covers (partial volume, as acquired)."""
    data = img.get_fdata(dtype=np.float32)
    data = data[tuple(slice(0, n // f * f) for n, f in zip(data.shape, factors))]
    shape = [x for n, f in zip(data.shape, factors) for x in (n // f, f)]
    data = data.reshape(shape).mean(axis=(1, 3, 5))
    affine = img.affine.copy()
    for axis, factor in enumerate(factors):
        # A new voxel's centre lies at the middle of the voxels it averages.
        affine[:3, 3] += affine[:3, axis] * (factor - 1) / 2
        affine[:3, axis] *= factor
    return nib.Nifti1Image(data, affine)


def coarsen(img: nib.Nifti1Image, voxel_mm: float) -> nib.Nifti1Image:
    """Block-average every axis to about `voxel_mm` (axes already coarser stay)."""
    zooms = img.header.get_zooms()[:3]
    return block_average(img, tuple(max(1, int(round(voxel_mm / z))) for z in zooms))


def thick_slices(img: nib.Nifti1Image, slice_mm: float = 5.0) -> nib.Nifti1Image:
    """Slices about `slice_mm` thick along the image's slice axis."""
    factors = [1, 1, 1]
    axis = slice_axis(img)
    factors[axis] = max(1, int(round(slice_mm / img.header.get_zooms()[axis])))
    return block_average(img, tuple(factors))


def crop_top(img: nib.Nifti1Image, top_mm: float = 30.0) -> nib.Nifti1Image:
    """The field of view stops `top_mm` below the top of the head (the highest non-zero point): the voxels above
    are removed from the grid, as a scan that did not cover them."""
    data = img.get_fdata(dtype=np.float32)
    height = nib.affines.apply_affine(img.affine, np.argwhere(data > 0))[:, 2]
    limit = height.max() - top_mm
    # Which array axis runs most along superior, and in which sense.
    axis = int(np.argmax(np.abs(img.affine[2, :3])))
    centres = nib.affines.apply_affine(img.affine, np.eye(3)[axis] * np.arange(img.shape[axis])[:, None])[:, 2]
    kept = np.flatnonzero(centres <= limit)
    index = [slice(None)] * 3
    index[axis] = slice(kept.min(), kept.max() + 1)
    return img.slicer[tuple(index)]


def bias_noise(img: nib.Nifti1Image, rng: np.random.Generator, bias: float = 0.3,
               noise: float = 0.04) -> nib.Nifti1Image:
    """A smooth multiplicative field (within ± `bias` in log) and Rician noise of `noise` × the 99th percentile of
    the object, everywhere (also where a stripped image was zero)."""
    data = img.get_fdata(dtype=np.float32)
    coarse = rng.normal(size=(4, 4, 4))
    field = ndi.zoom(coarse, np.array(data.shape) / 4, order=3)
    field = np.exp(bias * field / max(np.abs(field).max(), 1e-6))
    sigma = noise * np.percentile(data[data > 0], 99)
    noisy = np.hypot(data * field + rng.normal(0, sigma, data.shape), rng.normal(0, sigma, data.shape))
    return nib.Nifti1Image(noisy.astype(np.float32), img.affine)


def motion(img: nib.Nifti1Image, blur_mm: float = 2.0, ghost: float = 0.15) -> nib.Nifti1Image:
    """Motion-like: blur along the in-plane phase-encoding axis (taken as the second) and a ghost shifted by a
    quarter of the field of view along it."""
    data = img.get_fdata(dtype=np.float32)
    sigma = np.zeros(3)
    sigma[1] = blur_mm / img.header.get_zooms()[1]
    blurred = ndi.gaussian_filter(data, sigma)
    ghosted = blurred + ghost * np.roll(blurred, data.shape[1] // 4, axis=1)
    return nib.Nifti1Image(ghosted.astype(np.float32), img.affine)


def upside_down(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """The voxels reversed along the third axis inside an unchanged header: no header check can see it."""
    return nib.Nifti1Image(np.asarray(img.dataobj)[:, :, ::-1], img.affine, img.header)


def slab(img: nib.Nifti1Image, slices: int = 3) -> nib.Nifti1Image:
    """Only `slices` slices through the middle along the slice axis, on the whole grid (the rest zero)."""
    data = np.asarray(img.dataobj)
    axis = slice_axis(img)
    middle = data.shape[axis] // 2
    index = [slice(None)] * 3
    index[axis] = slice(middle, middle + slices)
    kept = np.zeros_like(data)
    kept[tuple(index)] = data[tuple(index)]
    return nib.Nifti1Image(kept, img.affine, img.header)
