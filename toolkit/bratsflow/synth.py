"""Synthetic BraTS-like cohort built on real anatomy (nilearn's MNI152 2009 templates, shipped offline).

Per subject, in this order:
1. anatomy: the atlas tissue maps (GM, WM, CSF, brain) and a synthetic head (CSF rim, skull with diploë,
   muscle, scalp fat, skin; layers defined by the distance to the brain) are pulled through a smooth random
   B-spline deformation plus a tumour mass effect, with the least-squares affine part of the total displacement
   over the brain removed, so the best rigid registration of the subject to the atlas is the identity;
2. tumour: one main lesion (and sometimes a satellite) with irregular nested boundaries: necrotic core (NETC)
   inside an enhancing rim (ET) inside oedema (SNFH) that spreads preferentially along white matter;
3. contrasts: T1, T1c, T2 and FLAIR from tissue and tumour intensity tables with partial volume and texture;
4. acquisition, per modality: its own rigid pose (rotation ≤ `max_rotation_deg`, shift ≤ `max_shift_mm`),
   voxel size, slice thickness (box slice profile), orientation code, smooth bias field and Rician noise.

All geometry is in millimetres in RAS+ world coordinates. The "subject frame" is the atlas grid: the truth in
atlas space is the tumour/brain mask in that frame, and a modality's native world point y maps to atlas world
x = R y + t (`native_to_atlas`), the exact answer a perfect rigid registration gives.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from . import __version__
from .io import label_image, save_image, save_json
from .labels import get_convention
from .modalities import MODALITIES
from .paths import TruthFiles, bids_image_path, truth_dataset
from .synth_params import SynthParams

log = logging.getLogger(__name__)

# Head layers outside the brain, as (tissue, inner, outer) distance from the brain surface in mm.
HEAD_LAYERS = (
    ("csf", 0.0, 1.5),
    ("bone", 1.5, 3.0),
    ("marrow", 3.0, 5.5),
    ("bone", 5.5, 7.0),
    ("muscle", 7.0, 9.0),
    ("fat", 9.0, 13.0),
    ("skin", 13.0, 14.5),
)
PAD_MM = 24.0

# Relative signal of each tissue per contrast (white matter on T1 ≈ 1). Typical 1.5–3 T appearances:
# CSF dark on T1/FLAIR and bright on T2; oedema bright on T2/FLAIR; enhancing rim bright only on T1c;
# necrosis fluid-like (bright T2, dark T1, intermediate FLAIR); cortical bone dark; fat and marrow bright on T1.
INTENSITY = {
    #         gm    wm    csf   bone  marrow muscle fat   skin  netc  et    snfh
    "t1":    (0.68, 1.00, 0.28, 0.04, 0.85, 0.50, 1.15, 0.70, 0.32, 0.60, 0.50),
    "t1c":   (0.70, 1.00, 0.33, 0.04, 0.88, 0.55, 1.15, 0.75, 0.30, 1.45, 0.58),
    "t2":    (0.80, 0.58, 1.55, 0.04, 0.75, 0.35, 0.90, 0.60, 1.45, 0.95, 1.40),
    "flair": (0.88, 0.66, 0.14, 0.04, 0.80, 0.45, 0.90, 0.65, 0.55, 1.05, 1.40),
}
# Oedema is tissue soaked with water: this fraction of its signal is oedema, the rest the underlying tissue.
OEDEMA_WATER = 0.8
TISSUES = ("gm", "wm", "csf", "bone", "marrow", "muscle", "fat", "skin", "netc", "et", "snfh")

# Acquisition protocols a modality is drawn from: (in-plane mm, slice mm, slice plane), at 1 mm atlas resolution.
PROTOCOLS = {
    "t1": ((1.0, 1.0, "sagittal"), (1.0, 1.0, "axial"), (0.9, 1.2, "axial")),
    "t1c": ((1.0, 1.0, "axial"), (1.0, 1.0, "sagittal"), (0.9, 1.0, "coronal")),
    "t2": ((0.9, 3.0, "axial"), (1.0, 2.0, "axial"), (1.0, 1.0, "sagittal")),
    "flair": ((1.0, 3.0, "axial"), (0.9, 4.0, "axial"), (1.0, 3.0, "coronal"), (1.0, 1.0, "sagittal")),
}
SLICE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}
AXIS_LETTERS = (("R", "L"), ("A", "P"), ("S", "I"))


@dataclass(frozen=True)
class HeadModel:
    """Atlas tissue maps on a grid padded by PAD_MM, so a synthetic head fits around the brain."""

    resolution_mm: float
    affine: np.ndarray  # padded grid voxel -> atlas world
    atlas_shape: tuple[int, int, int]
    pad: int  # voxels of padding on each side
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray
    distance_mm: np.ndarray  # distance outside the brain (0 inside)
    brain_depth_mm: np.ndarray  # distance inside the brain (0 outside)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.gm.shape

    @property
    def atlas_affine(self) -> np.ndarray:
        return self.affine @ _translation(np.full(3, self.pad))

    def crop(self, volume: np.ndarray) -> np.ndarray:
        p = self.pad
        nx, ny, nz = self.atlas_shape
        return volume[p:p + nx, p:p + ny, p:p + nz]


@dataclass
class Acquisition:
    modality: str
    image: nib.Nifti1Image
    native_to_atlas: np.ndarray
    protocol: dict


@dataclass
class SyntheticSubject:
    acquisitions: dict[str, Acquisition]
    labels_atlas: nib.Nifti1Image
    brain_atlas: nib.Nifti1Image
    labels_t1c: nib.Nifti1Image
    truth: dict
    bspline_coefficients: np.ndarray


def _translation(offset) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, 3] = offset
    return matrix


def _rotation(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1 - np.cos(angle_rad)) * (k @ k)


@lru_cache(maxsize=2)
def load_head_model(resolution_mm: float = 1.0) -> HeadModel:
    """Build the padded atlas head model at `resolution_mm` (1 mm is the templates' native resolution)."""
    from nilearn import datasets

    templates = {
        "gm": datasets.load_mni152_gm_template(resolution=1),
        "wm": datasets.load_mni152_wm_template(resolution=1),
        "brain": datasets.load_mni152_brain_mask(resolution=1),
    }
    affine = templates["brain"].affine
    if not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3]))) or np.any(np.diag(affine)[:3] <= 0):
        raise RuntimeError("expected the MNI152 templates on an axis-aligned RAS grid")
    maps = {name: np.asarray(img.dataobj, dtype=np.float32) for name, img in templates.items()}
    if resolution_mm != 1.0:
        maps, affine = _resample_maps(maps, affine, resolution_mm)
    brain = maps["brain"] > 0.5
    gm = np.where(brain, maps["gm"], 0.0).astype(np.float32)
    wm = np.where(brain, maps["wm"], 0.0).astype(np.float32)
    csf = np.where(brain, np.clip(1.0 - gm - wm, 0.0, 1.0), 0.0).astype(np.float32)

    pad = int(round(PAD_MM / resolution_mm))
    # The template stops at the medulla; letting the brain continue through the bottom padding (edge mode)
    # gives a spinal canal instead of a skull cap under the brainstem.
    bottom = ((pad, pad), (pad, pad), (pad, 0))
    top = ((0, 0), (0, 0), (0, pad))

    def padded(volume: np.ndarray) -> np.ndarray:
        return np.pad(np.pad(volume, bottom, mode="edge"), top, mode="constant")

    x_edge = np.zeros_like(brain)
    x_edge[[0, -1], :, :] = x_edge[:, [0, -1], :] = True
    if np.any(brain & x_edge):
        raise RuntimeError("the template brain touches the side of its grid")
    brain_p = padded(brain.astype(np.float32)) > 0.5
    pad_affine = affine @ _translation(-np.full(3, pad))
    distance = ndi.distance_transform_edt(~brain_p, sampling=resolution_mm).astype(np.float32)
    depth = ndi.distance_transform_edt(brain_p, sampling=resolution_mm).astype(np.float32)
    return HeadModel(resolution_mm, pad_affine, brain.shape, pad, padded(gm), padded(wm), padded(csf),
                     brain_p.astype(np.float32), distance, depth)


def _resample_maps(maps: dict[str, np.ndarray], affine: np.ndarray, resolution_mm: float):
    scale = resolution_mm / float(affine[0, 0])
    shape = tuple(int(np.floor((n - 1) / scale)) + 1 for n in next(iter(maps.values())).shape)
    sigma = max(0.0, 0.4 * (scale - 1.0))  # anti-aliasing before point sampling
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1) * scale
    out = {}
    for name, volume in maps.items():
        smooth = ndi.gaussian_filter(volume, sigma) if sigma > 0 else volume
        out[name] = ndi.map_coordinates(smooth, grid, order=1, mode="nearest").reshape(shape).astype(np.float32)
    new_affine = affine.copy()
    new_affine[:3, :3] *= scale
    return out, new_affine


def _bspline_matrix(n_points: int, node_spacing: float) -> np.ndarray:
    """Cubic B-spline basis sampled at points 0..n-1 (voxel units) for nodes every `node_spacing` voxels,
    with nodes extending one spacing beyond both ends so the field has no boundary artefacts."""
    n_nodes = int(np.ceil((n_points - 1) / node_spacing)) + 3
    t = np.arange(n_points)[:, None] / node_spacing - (np.arange(n_nodes)[None, :] - 1)
    a = np.abs(t)
    return np.where(a < 1, 2 / 3 - a**2 + a**3 / 2, np.where(a < 2, (2 - a) ** 3 / 6, 0.0))


def _bspline_field(coefficients: np.ndarray, shape, node_spacing: float) -> np.ndarray:
    bx, by, bz = (_bspline_matrix(n, node_spacing) for n in shape)
    return np.einsum("ai,bj,ck,ijk->abc", bx, by, bz, coefficients, optimize=True).astype(np.float32)


def _coefficient_shape(shape, node_spacing: float) -> tuple[int, ...]:
    return tuple(int(np.ceil((n - 1) / node_spacing)) + 3 for n in shape)


def smooth_noise(rng: np.random.Generator, shape, scale_vox: float) -> np.ndarray:
    """A smooth random field with zero mean and unit standard deviation, correlation length ~ `scale_vox`."""
    node_spacing = max(scale_vox, 1.0)
    coefficients = rng.standard_normal(_coefficient_shape(shape, node_spacing))
    values = _bspline_field(coefficients, shape, node_spacing)
    return (values - values.mean()) / max(float(values.std()), 1e-6)


def _ramp(x: np.ndarray, width: float) -> np.ndarray:
    return np.clip(x / width + 0.5, 0.0, 1.0)


@dataclass(frozen=True)
class Lesion:
    centre_vox: np.ndarray
    radius_wt_mm: float
    radius_tc_mm: float
    radius_necrosis_mm: float
    enhancing: bool
    irregularity: float


def _draw_lesion(rng: np.random.Generator, head: HeadModel, main: bool) -> Lesion:
    radius_wt = rng.uniform(18.0, 34.0) if main else rng.uniform(8.0, 14.0)
    radius_tc = radius_wt * rng.uniform(0.38, 0.62)
    enhancing = rng.random() > (0.12 if main else 0.3)
    necrotic = rng.random() > 0.2
    radius_n = radius_tc * rng.uniform(0.3, 0.72) if necrotic else 0.0
    if enhancing:
        radius_n = min(radius_n, radius_tc - 2.0)
    irregularity = rng.uniform(0.12, 0.25)
    # Centre in cerebral white matter, deep enough for the whole core to stay inside the brain.
    depth_needed = radius_tc * (1 + irregularity) + 4.0
    zmin = head.pad + int(0.33 * head.atlas_shape[2])  # above the cerebellum and brainstem
    candidates = np.argwhere((head.wm > 0.6) & (head.brain_depth_mm > depth_needed))
    candidates = candidates[candidates[:, 2] >= zmin]
    if len(candidates) == 0:
        raise RuntimeError("no white-matter voxel is deep enough for the drawn tumour")
    centre = candidates[rng.integers(len(candidates))].astype(np.float64) + rng.uniform(-0.5, 0.5, 3)
    return Lesion(centre, radius_wt, radius_tc, max(radius_n, 0.0), enhancing, irregularity)


def _subject_mapping(rng: np.random.Generator, head: HeadModel, params: SynthParams, mass: Lesion):
    """Pull-back coordinates (padded-grid voxel units) for every voxel of the subject frame."""
    res = head.resolution_mm
    shape = head.shape
    node_spacing = params.deformation_spacing_mm / res
    coefficients = rng.standard_normal((3, *_coefficient_shape(shape, node_spacing))) * (
        params.deformation_sd_mm / res)
    displacement = np.stack([_bspline_field(c, shape, node_spacing) for c in coefficients])

    # Mass effect: tissue at radius r came from radius (r³ − R0³)^(1/3): a volume-preserving expansion of a
    # sphere of radius R0 at the lesion centre; weighted by the brain so the skull does not move.
    grid = np.indices(shape, dtype=np.float32)
    offset = grid - mass.centre_vox[:, None, None, None].astype(np.float32)
    r = np.sqrt((offset**2).sum(axis=0)) * res
    r0 = 0.75 * mass.radius_tc_mm * (1 - mass.irregularity)
    source_r = np.cbrt(np.maximum(r**3 - r0**3, 0.0))
    weight = ndi.gaussian_filter(head.brain, 3.0 / res)
    scale = np.where(r > 0, source_r / np.maximum(r, 1e-6), 0.0) - 1.0
    displacement += offset * (scale * weight)[None]
    del offset, r, source_r, scale, weight

    # Remove the affine part of the displacement over the brain: subjects differ only non-linearly.
    sample = np.zeros(shape, dtype=bool)
    sample[::2, ::2, ::2] = head.brain[::2, ::2, ::2] > 0.5
    design = np.hstack([np.argwhere(sample), np.ones((int(sample.sum()), 1))])
    coeffs, *_ = np.linalg.lstsq(design, displacement[:, sample].T.astype(np.float64), rcond=None)
    linear, shift = coeffs[:3].T, coeffs[3]  # voxel units
    correction = np.einsum("ij,j...->i...", linear.astype(np.float32), grid) + shift[:, None, None, None]
    coords = grid + displacement - correction.astype(np.float32)
    removed = {"matrix": linear.tolist(), "translation_vox": shift.tolist()}
    return coords, coefficients, removed


def _paint_lesions(rng, lesions: list[Lesion], wm: np.ndarray, parenchyma: np.ndarray, res: float,
                   convention: str) -> np.ndarray:
    values = get_convention(convention).labels
    shape = wm.shape
    labels = np.zeros(shape, dtype=np.uint8)
    for lesion in lesions:
        reach = int(np.ceil(lesion.radius_wt_mm * (1.6 + lesion.irregularity) / res)) + 2
        lo = np.maximum(np.floor(lesion.centre_vox).astype(int) - reach, 0)
        hi = np.minimum(np.ceil(lesion.centre_vox).astype(int) + reach + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        box_shape = tuple(b - a for a, b in zip(lo, hi))
        offset = np.indices(box_shape, dtype=np.float32) + lo[:, None, None, None] - lesion.centre_vox[
            :, None, None, None].astype(np.float32)
        r = np.sqrt((offset**2).sum(axis=0)) * res
        # Each boundary gets its own smooth wobble so rims are irregular, as in real glioblastoma.
        wobble = [1 + lesion.irregularity * np.clip(smooth_noise(rng, box_shape, 7.0 / res), -2.5, 2.5)
                  for _ in range(3)]
        core = r / wobble[1] < lesion.radius_tc_mm
        necrosis = (r / wobble[0] < lesion.radius_necrosis_mm) & core
        # Oedema reaches further along white matter than through grey matter (finger-like spread).
        reach_wt = lesion.radius_wt_mm * (0.5 + 0.7 * wm[box])
        whole = ((r / wobble[2] < reach_wt) & (parenchyma[box] > 0.3)) | core
        # Oedema is contiguous with its lesion: drop islands that the white-matter spread left behind.
        components, _ = ndi.label(whole)
        whole = np.isin(components, np.unique(components[core]))
        sub = labels[box]
        sub[whole & (sub == 0)] = values["SNFH"]
        if lesion.enhancing:
            sub[core & ~necrosis] = values["ET"]
            sub[necrosis] = values["NETC"]
        else:
            sub[core] = values["NETC"]
    return labels


def _layer_fractions(distance_mm: np.ndarray, res: float) -> dict[str, np.ndarray]:
    fractions: dict[str, np.ndarray] = {}
    outside = distance_mm > 0
    for tissue, inner, outer in HEAD_LAYERS:
        frac = np.minimum(_ramp(distance_mm - inner, res), _ramp(outer - distance_mm, res)) * outside
        fractions[tissue] = fractions.get(tissue, 0) + frac
    return fractions


def _synthesize_contrasts(rng, tissue: dict[str, np.ndarray], tumour: dict[str, np.ndarray],
                          texture: np.ndarray) -> dict[str, np.ndarray]:
    jitter = {m: 1 + rng.normal(0, 0.04, len(TISSUES)) for m in MODALITIES}
    tumour_any = tumour["netc"] + tumour["et"] + tumour["snfh"]
    images = {}
    for modality in MODALITIES:
        means = dict(zip(TISSUES, np.asarray(INTENSITY[modality]) * jitter[modality]))
        healthy = sum(tissue[name] * means[name] for name in tissue)
        healthy *= 1 + 0.03 * texture
        # Tumour compartments replace tissue; oedema keeps part of the tissue it soaks.
        lesion_texture = 1 + 0.10 * texture
        image = (healthy * (1 - tumour["netc"] - tumour["et"] - OEDEMA_WATER * tumour["snfh"])
                 + tumour["netc"] * means["netc"] * lesion_texture
                 + tumour["et"] * means["et"] * (1 + 0.15 * texture)
                 + tumour["snfh"] * OEDEMA_WATER * means["snfh"] * lesion_texture)
        images[modality] = np.where(tumour_any > 0, image, healthy).astype(np.float32)
    return images


def _orientation_code(rng: np.random.Generator, plane: str) -> str:
    slice_axis = SLICE_AXIS[plane]
    in_plane = [a for a in range(3) if a != slice_axis]
    rng.shuffle(in_plane)
    return "".join(AXIS_LETTERS[a][int(rng.integers(2))] for a in [*in_plane, slice_axis])


def _random_pose(rng: np.random.Generator, centre_world: np.ndarray, params: SynthParams) -> np.ndarray:
    """Native world -> atlas world: a rotation about the brain centre and a shift, both uniform in size."""
    axis = rng.normal(size=3)
    angle = np.deg2rad(rng.uniform(0, params.max_rotation_deg))
    direction = rng.normal(size=3)
    shift = direction / np.linalg.norm(direction) * rng.uniform(0, params.max_shift_mm)
    rotation = _rotation(axis, angle)
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = centre_world - rotation @ centre_world + shift
    return pose


def _acquire(rng, modality: str, subject_image: np.ndarray, labels: np.ndarray | None, head: HeadModel,
             head_mask: np.ndarray, brain_centre_world: np.ndarray, params: SynthParams, noise_reference: float):
    """Sample one modality in its own native space; returns the image, native->atlas pose, protocol and
    (for the T1c) the labels sampled at the native voxel centres."""
    res = head.resolution_mm
    in_plane, thickness, plane = PROTOCOLS[modality][rng.integers(len(PROTOCOLS[modality]))]
    slice_axis = SLICE_AXIS[plane]
    spacing = np.full(3, in_plane * res)
    spacing[slice_axis] = thickness * res
    pose = _random_pose(rng, brain_centre_world, params)

    # Field of view: the head's bounding box in the scanner frame, plus a margin.
    corners = np.argwhere(head_mask)
    hull = np.vstack([corners.min(axis=0), corners.max(axis=0)])
    box = np.array([[hull[i, 0], hull[j, 1], hull[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    scanner = nib.affines.apply_affine(np.linalg.inv(pose) @ head.affine, box)
    lo, hi = scanner.min(axis=0) - 4.0, scanner.max(axis=0) + 4.0
    shape = np.ceil((hi - lo) / spacing).astype(int) + 1
    native_affine = np.diag([*spacing, 1.0])
    native_affine[:3, 3] = lo

    to_padded_voxel = np.linalg.inv(head.affine) @ pose @ native_affine
    index = np.indices(tuple(shape), dtype=np.float32).reshape(3, -1)
    base = (to_padded_voxel[:3, :3] @ index + to_padded_voxel[:3, 3:4]).astype(np.float32)
    # Box slice profile: average sub-samples spread across the slice thickness.
    n_sub = max(1, round(thickness))  # thickness is in atlas voxels: sub-samples one voxel apart
    offsets = (np.arange(n_sub) + 0.5) / n_sub - 0.5
    image = np.zeros(index.shape[1], dtype=np.float32)
    for offset in offsets:
        step = to_padded_voxel[:3, slice_axis] * offset
        image += ndi.map_coordinates(subject_image, base + step[:, None].astype(np.float32), order=1,
                                     mode="constant", cval=0.0, output=np.float32)
    image = image.reshape(tuple(shape)) / n_sub
    native_labels = None
    if labels is not None:
        native_labels = ndi.map_coordinates(labels, base, order=0, mode="constant", cval=0).reshape(tuple(shape))
    del base, index

    # Smooth multiplicative bias field (quadratic in normalised scanner coordinates) and Rician noise.
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    xx, yy, zz = np.meshgrid(*axes, indexing="ij", sparse=True)
    terms = [xx, yy, zz, xx * yy, xx * zz, yy * zz, xx**2, yy**2, zz**2]
    weights = rng.normal(0, 1, len(terms))
    weights *= params.bias_amplitude / np.sqrt((weights**2).sum())
    bias = np.exp(sum(w * t for w, t in zip(weights, terms))).astype(np.float32)
    image *= bias
    sigma = rng.uniform(*params.noise_fraction) * noise_reference
    image = np.sqrt((image + rng.normal(0, sigma, image.shape).astype(np.float32)) ** 2
                    + rng.normal(0, sigma, image.shape).astype(np.float32) ** 2)
    data = np.clip(np.rint(image), 0, np.iinfo(np.int16).max).astype(np.int16)

    code = _orientation_code(rng, plane)
    img = _with_orientation(data, native_affine, code, np.int16)
    labels_img = None if native_labels is None else _with_orientation(
        native_labels.astype(np.uint8), native_affine, code, np.uint8)
    protocol = {"in_plane_mm": float(in_plane * res), "slice_thickness_mm": float(thickness * res),
                "slice_plane": plane, "orientation": code, "shape": [int(s) for s in img.shape],
                "noise_sigma": float(sigma), "bias_coefficients": weights.tolist()}
    return img, pose, protocol, labels_img


def _with_orientation(data: np.ndarray, ras_affine: np.ndarray, code: str, dtype) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, ras_affine)
    transform = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"),
                                                nib.orientations.axcodes2ornt(tuple(code)))
    img = img.as_reoriented(transform)
    img = nib.Nifti1Image(np.asarray(img.dataobj, dtype=dtype), img.affine)
    img.set_qform(img.affine, code=1)  # scanner-based
    img.set_sform(img.affine, code=1)
    img.header.set_xyzt_units("mm")
    return img


def synthesize_subject(rng: np.random.Generator, params: SynthParams = SynthParams()) -> SyntheticSubject:
    head = load_head_model(params.resolution_mm)
    res = head.resolution_mm
    lesions = [_draw_lesion(rng, head, main=True)]
    if rng.random() < 0.25:
        lesions.append(_draw_lesion(rng, head, main=False))

    coords, coefficients, removed_affine = _subject_mapping(rng, head, params, lesions[0])

    def warp(volume: np.ndarray) -> np.ndarray:
        return ndi.map_coordinates(volume, coords, order=1, mode="nearest", output=np.float32)

    gm, wm, csf, brain = warp(head.gm), warp(head.wm), warp(head.csf), warp(head.brain)
    distance = warp(head.distance_mm)
    del coords
    # Per-subject skull and scalp thickness, varying smoothly over the head.
    thickness = rng.uniform(0.85, 1.2) * (1 + 0.2 * np.clip(smooth_noise(rng, head.shape, 20.0 / res), -2, 2))
    layers = _layer_fractions(distance / thickness, res)
    head_mask = (distance / thickness) < HEAD_LAYERS[-1][2]
    outside = 1.0 - brain
    tissue = {"gm": gm, "wm": wm, "csf": csf + layers.pop("csf") * outside}
    tissue.update({name: frac * outside for name, frac in layers.items()})

    labels = _paint_lesions(rng, lesions, wm, gm + wm, res, params.convention)
    conv = get_convention(params.convention).labels
    partial = {name: ndi.gaussian_filter((labels == conv[key]).astype(np.float32), 0.5)
               for name, key in (("netc", "NETC"), ("et", "ET"), ("snfh", "SNFH"))}
    texture = smooth_noise(rng, head.shape, 1.5 / res)
    contrasts = _synthesize_contrasts(rng, tissue, partial, texture)
    gain = rng.uniform(700, 1300)
    for name in contrasts:
        contrasts[name] *= gain

    acquisitions = {}
    labels_t1c = None
    brain_centre_world = nib.affines.apply_affine(head.affine, np.argwhere(head.brain > 0.5).mean(axis=0))
    for modality in MODALITIES:
        img, pose, protocol, native_labels = _acquire(
            rng, modality, contrasts[modality], labels if modality == "t1c" else None, head, head_mask,
            brain_centre_world, params, noise_reference=gain)
        acquisitions[modality] = Acquisition(modality, img, pose, protocol)
        if native_labels is not None:
            labels_t1c = native_labels

    brain_mask = (brain > 0.5) | (labels > 0)
    atlas_affine = head.atlas_affine
    labels_atlas = head.crop(labels)
    truth = {
        "lesions": [{"centre_atlas_mm": nib.affines.apply_affine(head.affine, l.centre_vox).tolist(),
                     "radius_wt_mm": l.radius_wt_mm, "radius_tc_mm": l.radius_tc_mm,
                     "radius_necrosis_mm": l.radius_necrosis_mm, "enhancing": l.enhancing,
                     "irregularity": l.irregularity} for l in lesions],
        "volumes_ml": {name: float(np.count_nonzero(labels_atlas == value) * res**3 / 1000)
                       for name, value in conv.items()},
        "deformation": {"kind": "cubic B-spline pull-back displacement + mass effect, affine part removed",
                        "node_spacing_mm": params.deformation_spacing_mm,
                        "coefficient_sd_mm": params.deformation_sd_mm,
                        "removed_affine_voxel_units": removed_affine},
    }
    return SyntheticSubject(
        acquisitions=acquisitions,
        labels_atlas=label_image(labels_atlas, atlas_affine, aligned_to_atlas=True),
        brain_atlas=label_image(head.crop(brain_mask), atlas_affine, aligned_to_atlas=True),
        labels_t1c=labels_t1c,
        truth=truth,
        bspline_coefficients=coefficients.astype(np.float32),
    )


def _ras_to_lps(matrix: np.ndarray) -> np.ndarray:
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ matrix @ flip


def write_itk_transform(atlas_to_native_ras: np.ndarray, path: Path) -> None:
    """ITK/ANTs convention: the file maps points of the fixed space (atlas) to the moving space (native), LPS."""
    lps = _ras_to_lps(atlas_to_native_ras)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(lps[:3, :3].ravel().tolist())
    transform.SetTranslation(lps[:3, 3].tolist())
    sitk.WriteTransform(transform, str(path))


def subject_id(index: int) -> str:
    return f"sub-{index + 1:03d}"


def write_subject(subject: SyntheticSubject, root: Path, sid: str, seed: int, params: SynthParams) -> None:
    truth = TruthFiles(root, sid)
    truth.folder.mkdir(parents=True, exist_ok=True)
    for modality, acq in subject.acquisitions.items():
        save_image(acq.image, bids_image_path(root, sid, modality))
        write_itk_transform(np.linalg.inv(acq.native_to_atlas), truth.transform(modality))
    save_image(subject.labels_atlas, truth.labels)
    save_image(subject.brain_atlas, truth.brain_mask)
    save_image(subject.labels_t1c, truth.labels_t1c)
    np.savez_compressed(truth.deformation, coefficients=subject.bspline_coefficients)
    save_json({
        "subject": sid,
        "generator": f"bratsflow {__version__}",
        "seed": seed,
        "parameters": params.__dict__,
        "label_convention": params.convention,
        "labels": get_convention(params.convention).labels,
        "convention_of_transforms": (
            "native_to_atlas maps a point in the modality's RAS+ world (mm) to the atlas RAS+ world (mm); "
            "the ITK files map atlas (fixed) points to native (moving) points in LPS, as ANTs/ITK resample."),
        "transforms": {m: {"native_to_atlas": a.native_to_atlas.tolist(),
                           "atlas_to_native": np.linalg.inv(a.native_to_atlas).tolist(),
                           "protocol": a.protocol}
                       for m, a in subject.acquisitions.items()},
        **subject.truth,
    }, truth.record)


def write_bids_metadata(root: Path, n_subjects: int, seed: int) -> None:
    save_json({"Name": "bratsflow synthetic BraTS-like cohort", "BIDSVersion": "1.9.0", "DatasetType": "raw",
               "GeneratedBy": [{"Name": "bratsflow synth", "Version": __version__}],
               "seed": seed, "subjects": n_subjects}, root / "dataset_description.json")
    save_json({"Name": "ground truth of the synthetic cohort", "BIDSVersion": "1.9.0",
               "DatasetType": "derivative", "GeneratedBy": [{"Name": "bratsflow synth", "Version": __version__}]},
              truth_dataset(root) / "dataset_description.json")


def write_sample_sheet(root: Path, subjects: list[str]) -> Path:
    """Sample sheet with paths relative to the sheet's own folder (how bratsflow resolves relative paths)."""
    path = root / "subjects.tsv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["subject_id", *MODALITIES])
        for sid in subjects:
            writer.writerow([sid, *(bids_image_path(Path("."), sid, m).as_posix() for m in MODALITIES)])
    return path


def generate_cohort(out: str | Path, n_subjects: int, seed: int, params: SynthParams = SynthParams(),
                    only: list[str] | None = None) -> list[str]:
    """Write `n_subjects` subjects (or the `only` ones among them) as BIDS under `out`, with ground truth.

    Subject k depends only on (seed, k): generating one subject alone gives the same files as the whole cohort.
    """
    root = Path(out)
    subjects = [subject_id(i) for i in range(n_subjects)]
    unknown = sorted(set(only or []) - set(subjects))
    if unknown:
        raise ValueError(f"--only names subjects outside the cohort of {n_subjects}: {unknown}")
    root.mkdir(parents=True, exist_ok=True)
    write_bids_metadata(root, n_subjects, seed)
    write_sample_sheet(root, subjects)
    for index, sid in enumerate(subjects):
        if only and sid not in only:
            continue
        log.info("synthesising %s (seed %d, %g mm)", sid, seed, params.resolution_mm)
        rng = np.random.default_rng([seed, index])
        write_subject(synthesize_subject(rng, params), root, sid, seed, params)
    return subjects


def load_truth(root: str | Path, sid: str) -> dict:
    return json.loads(TruthFiles(root, sid).record.read_text())


def resample_native_to_atlas(root: str | Path, sid: str, order: int = 1) -> dict[str, np.ndarray]:
    """Every modality resampled into the atlas frame through its true transform (a check of the truth)."""
    from nibabel.processing import resample_from_to

    truth = load_truth(root, sid)
    reference = nib.load(TruthFiles(root, sid).labels)
    out = {}
    for modality in MODALITIES:
        native = nib.load(bids_image_path(root, sid, modality))
        in_atlas_world = nib.Nifti1Image(np.asarray(native.dataobj, dtype=np.float32),
                                         np.asarray(truth["transforms"][modality]["native_to_atlas"])
                                         @ native.affine)
        out[modality] = np.asarray(resample_from_to(in_atlas_world, reference, order=order).dataobj)
    return out


def montage(root: str | Path, sid: str, out: str | Path) -> Path:
    from .figures import overlay_montage

    truth = load_truth(root, sid)
    reference = nib.load(TruthFiles(root, sid).labels)
    images = resample_native_to_atlas(root, sid)
    return overlay_montage(images, np.asarray(reference.dataobj), out, convention=truth["label_convention"],
                           affine=reference.affine,
                           title=f"{sid}: native images through the true transforms, atlas-space truth")
