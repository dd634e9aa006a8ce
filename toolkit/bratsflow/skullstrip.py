"""Skull stripping in atlas space: one brain mask, computed on one modality, applied to all four.

Backends:
- `atlas` (default; CPU, no downloaded weights): the atlas brain mask is carried onto the subject by an affine
  registration of the atlas template (brain only) to the image, then corrected in a thin band around its boundary
  from the image's own intensities, and cleaned up morphologically.
- `hdbet`: HD-BET v2's network, an nnU-Net v2 model folder, run through `nnUNetPredictor` (see `hdbet.py`).

Either way the mask's volume must fall in a plausible range, or the subject fails and nothing is written.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from .atlas import load_atlas
from .cohort import MODALITY_NAMES
from .coregister import CoregisterParams, register_linear, single_threaded_pool, working_copy
from .errors import ConfigError, InputError
from .io import check_image, label_image_like, load_image, save_image, save_json, sha256_file, to_ants
from .provenance import Timer, environment

log = logging.getLogger(__name__)

BACKENDS = ("atlas", "hdbet")


@dataclass(frozen=True)
class SkullstripParams:
    backend: str = "atlas"
    # The mask is computed on this modality (atlas space), or on the fallback when it is missing.
    modality: str = "t1"
    fallback: str | None = "t1c"
    # A mask outside this volume (mL) is refused: an empty, partial or runaway mask must not pass on.
    volume_range_ml: tuple[float, float] = (600.0, 2500.0)
    # Value of the voxels outside the mask in the skull-stripped images.
    fill_value: float = 0.0
    # atlas backend
    atlas: str = "mni152"
    atlas_mask: str | None = None
    registration_mm: float = 2.0
    # The registration metric looks at the atlas brain mask dilated by this (the skull, not the face or neck).
    registration_margin_mm: float = 10.0
    # Voxels within this distance of the registered mask's boundary are decided by their intensity.
    band_mm: float = 2.0
    # Closing radius that puts sulcal CSF and dark lesion rims back into the mask.
    closing_mm: float = 3.0
    seed: int = 1
    # hdbet backend: a model-store name or a model folder; device auto (cuda when available), cpu or cuda.
    model: str = "hd-bet"
    device: str = "auto"
    tta: bool = True


def _distance(mask: np.ndarray, spacing) -> np.ndarray:
    """Distance in mm from each voxel outside `mask` to the mask (0 inside)."""
    return ndi.distance_transform_edt(~mask, sampling=spacing).astype(np.float32)


def dilate(mask: np.ndarray, radius_mm: float, spacing) -> np.ndarray:
    return _distance(mask, spacing) <= radius_mm


def erode(mask: np.ndarray, radius_mm: float, spacing) -> np.ndarray:
    return ~dilate(~mask, radius_mm, spacing)


def _crop_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    where = np.argwhere(mask)
    low = np.maximum(where.min(axis=0) - margin, 0)
    high = np.minimum(where.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(a, b) for a, b in zip(low, high))


def refine_mask(prior: np.ndarray, image: np.ndarray, spacing, band_mm: float = 2.0,
                closing_mm: float = 3.0) -> np.ndarray:
    """Correct a registered brain mask near its boundary from the image's intensities.

    Voxels within `band_mm` of the boundary join the brain when their intensity is nearer the brain's rim
    (the outer 4 mm of the mask) than the surroundings (1–3 mm outside it): in T1 the brain's edge is grey
    matter against dark CSF and bone, in T2 against bright CSF, so the rule needs no contrast-specific sign. The
    part connected to the mask's core is kept, then closed and filled, so that sulci and dark necrotic or
    cystic regions inside stay in the brain.
    """
    spacing = tuple(float(s) for s in spacing)
    margin = int(np.ceil((band_mm + closing_mm + 4) / min(spacing)))
    box = _crop_box(prior, margin)
    prior_box, values = prior[box], ndi.gaussian_filter(image[box].astype(np.float32), 0.5 / np.asarray(spacing))
    outside = _distance(prior_box, spacing)
    inside = _distance(~prior_box, spacing)
    rim = prior_box & (inside <= 4.0)
    surroundings = (outside > 1.0) & (outside <= 3.0)
    brain_level, outside_level = np.median(values[rim]), np.median(values[surroundings])
    core = inside > band_mm
    band = ~core & (outside <= band_mm)
    brain_like = np.abs(values - brain_level) < np.abs(values - outside_level)
    candidate = core | (band & brain_like)
    components, _ = ndi.label(candidate)
    counts = np.bincount(components[core])
    counts[0] = 0
    kept = components == np.argmax(counts)
    closed = erode(dilate(kept, closing_mm, spacing), closing_mm, spacing) if closing_mm > 0 else kept
    refined = np.zeros_like(prior)
    refined[box] = ndi.binary_fill_holes(closed | kept)
    return refined


def atlas_brain_mask(image: nib.Nifti1Image, params: SkullstripParams, workdir: Path) -> tuple[np.ndarray, dict]:
    """Brain mask of an atlas-space image by registering the atlas template onto it (see the module doc)."""
    import ants

    atlas = load_atlas(params.atlas, params.atlas_mask)
    if atlas.mask is None:
        raise ConfigError(f"the atlas backend needs the atlas' brain mask: give skullstrip.atlas_mask for "
                          f"{atlas.source}")
    if image.shape != atlas.image.shape or not np.allclose(image.affine, atlas.image.affine, atol=1e-3):
        raise InputError(f"the image is not on the atlas grid of {atlas.name} (shape {image.shape} vs "
                         f"{atlas.image.shape}): skull stripping takes the co-registration step's atlas-space "
                         f"images, registered with the same atlas")
    fixed, template = to_ants(image), to_ants(atlas.image)
    prior = to_ants(atlas.mask)
    res = max(params.registration_mm, *fixed.spacing)
    files = {name: str(workdir / f"{name}.nii") for name in ("image", "template", "region")}
    fixed_copy = working_copy(fixed, res)
    ants.image_write(fixed_copy, files["image"])
    ants.image_write(working_copy(template, res), files["template"])
    region = ants.resample_image_to_target(prior, fixed_copy, interp_type="nearestNeighbor")
    ants.image_write(ants.iMath(region, "MD", max(1, int(round(params.registration_margin_mm / res)))),
                     files["region"])
    schedule = CoregisterParams(seed=params.seed, level_resolutions_mm=(8.0, 4.0, res))
    # One registration, one ITK thread: multi-threaded ANTs is not bit-reproducible.
    with single_threaded_pool(1) as pool:
        transform, _ = pool.submit(register_linear, files["image"], files["template"], files["region"], "affine",
                                   schedule, str(workdir / "template-to-image")).result()
    carried = ants.apply_transforms(fixed, prior.astype("float32"), [transform], interpolator="linear")
    registered = carried.numpy() > 0.5
    details = {"atlas": atlas.name, "atlas_source": atlas.source, "atlas_sha256": atlas.sha256}
    if not registered.any():
        return registered, details
    return refine_mask(registered, image.get_fdata(dtype=np.float32), image.header.get_zooms()[:3],
                       params.band_mm, params.closing_mm), details


def brain_mask(image: nib.Nifti1Image, params: SkullstripParams, workdir: Path,
               threads: int = 1) -> tuple[np.ndarray, dict]:
    """The mask and what produced it (atlas, or model folder, checkpoint checksum and device)."""
    if params.backend == "atlas":
        return atlas_brain_mask(image, params, workdir)
    from .hdbet import hdbet_brain_mask

    return hdbet_brain_mask(image, params, workdir, threads)


def skullstrip(images: dict[str, str | Path], out_dir: str | Path, params: SkullstripParams = SkullstripParams(),
               subject: str | None = None, threads: int = 1) -> dict:
    """Compute the brain mask on one modality, apply it to every given modality and write the results."""
    if params.backend not in BACKENDS:
        raise ConfigError(f"skull-stripping backend must be one of {list(BACKENDS)}, not {params.backend!r}")
    low, high = params.volume_range_ml
    if not 0 <= low < high:
        raise ConfigError(f"volume_range_ml must be two increasing volumes, not {params.volume_range_ml}")
    timer = Timer()
    out_dir = Path(out_dir)
    with timer.phase("load"):
        loaded = {m: check_image(load_image(p, subject=subject, modality=m), subject=subject, modality=m, file=p,
                                 spacing_range_mm=None) for m, p in images.items()}
        source = params.modality if params.modality in loaded else params.fallback
        if source not in loaded:
            raise InputError(f"skull stripping needs {params.modality} (or {params.fallback}), which is missing",
                             subject=subject)
        reference = loaded[source]
        for modality, img in loaded.items():
            if img.shape != reference.shape or not np.allclose(img.affine, reference.affine, atol=1e-3):
                raise InputError(f"not on the grid of {source} (shape {img.shape} vs {reference.shape}): the four "
                                 f"images must come from one co-registration", subject=subject,
                                 modality=MODALITY_NAMES[modality], file=images[modality])
    with timer.phase("mask"), tempfile.TemporaryDirectory(prefix="bratsflow-skullstrip-") as tmp:
        try:
            mask, details = brain_mask(reference, params, Path(tmp), threads)
        except (InputError, ConfigError) as exc:
            exc.subject = exc.subject or subject
            exc.file = exc.file or str(images[source])
            raise
    voxel_ml = float(np.prod(reference.header.get_zooms()[:3])) / 1000
    volume_ml = float(np.count_nonzero(mask)) * voxel_ml
    if not low <= volume_ml <= high:
        raise InputError(f"the brain mask ({params.backend} backend) has {volume_ml:.0f} mL, outside the plausible "
                         f"range {low:g}–{high:g} mL (skullstrip.volume_range_ml): not passed on", subject=subject,
                         modality=MODALITY_NAMES[source], file=images[source])

    # Everything checked: only now write, so a failed subject leaves earlier outputs alone.
    outputs = {}
    with timer.phase("write"):
        path = save_image(label_image_like(mask, reference), out_dir / "brain_mask.nii.gz")
        outputs["brain_mask"] = {"path": path.name, "sha256": sha256_file(path)}
        for modality, img in loaded.items():
            data = np.where(mask, img.get_fdata(dtype=np.float32), np.float32(params.fill_value))
            stripped = nib.Nifti1Image(data.astype(np.float32), img.affine, img.header)
            stripped.set_data_dtype(np.float32)
            path = save_image(stripped, out_dir / f"{modality}.nii.gz")
            outputs[modality] = {"path": path.name, "sha256": sha256_file(path)}
    record = {
        "step": "skullstrip",
        "subject": subject,
        "backend": params.backend,
        "mask_modality": source,
        "brain_volume_ml": round(volume_ml, 2),
        "method": details,
        "parameters": asdict(params),
        "inputs": {m: {"path": str(p), "sha256": sha256_file(p)} for m, p in images.items()},
        "outputs": outputs,
        "timings_s": timer.seconds,
        "environment": environment(),
    }
    save_json(record, out_dir / "skullstrip.json")
    log.info("%s: brain mask %.0f mL (%s backend, on %s)", subject, volume_ml, params.backend, source)
    return record

