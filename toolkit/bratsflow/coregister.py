"""Co-registration with ANTsPy: every modality rigidly onto the centre modality (T1c), the centre onto the atlas
(rigid, then affine), and each native image resampled once into atlas space through the composed transforms.

Transform files follow ANTs: a file from registering `moving` to `fixed` maps points of the fixed space to the
moving space, which is what resampling the moving image onto the fixed grid needs. So `t1c-to-atlas.mat` maps
atlas points to T1c points and `flair-to-t1c.mat` maps T1c points to FLAIR points.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .atlas import load_atlas
from .cohort import MODALITY_NAMES
from .errors import ConfigError, InputError, RegistrationError
from .io import check_image, from_ants, label_image, load_image, save_image, save_json, sha256_file, to_ants
from .provenance import Timer, environment

log = logging.getLogger(__name__)

STAGE_TYPES = {"rigid": "Rigid", "affine": "Affine"}
EVALUATION_SPACING_MM = 2.0
INTERPOLATORS = {"linear": "linear", "bspline": "bSpline", "nearest": "nearestNeighbor", "label": "genericLabel"}


@dataclass(frozen=True)
class CoregisterParams:
    atlas: str = "mni152"
    atlas_mask: str | None = None
    atlas_stages: tuple[str, ...] = ("rigid", "affine")
    centre: str = "t1c"
    # When the centre modality is missing: register onto this one instead (None: fail).
    centre_fallback: str | None = "t1"
    interpolation: str = "linear"
    # Out-of-view voxels of the atlas-space images.
    fill_value: float = 0.0
    # Coarse-to-fine schedule in millimetres, so it means the same for any voxel size: each level works on the
    # fixed image shrunk to about this resolution, smoothed by this sigma. Stopping at 2 mm is enough for
    # sub-millimetre rigid accuracy and several times faster than ANTs' default that ends at full resolution.
    level_resolutions_mm: tuple[float, ...] = (8.0, 4.0, 2.0)
    smoothing_sigmas_mm: tuple[float, ...] = (3.0, 2.0, 1.0)
    iterations: tuple[int, ...] = (500, 200, 50)
    sampling_rate: float = 0.1
    # The atlas brain mask, dilated by this, restricts the metric: a whole-head image against a brain-only
    # template, and (mapped to native space) the brain region for the co-registrations.
    mask_dilation_mm: float = 5.0
    # Normalised mutual information (1 = independent, 2 = identical) below which a registration is refused.
    min_nmi: float = 1.12
    seed: int = 1


@dataclass
class Registration:
    moving: str
    fixed: str
    nmi_before: float
    nmi_after: float
    seconds: float


def normalized_mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 16) -> float:
    """(H(A) + H(B)) / H(A, B) over paired samples, on robust (0.5–99.5 percentile) intensity ranges."""
    ranges = [np.percentile(x, [0.5, 99.5]) for x in (a, b)]
    joint, _, _ = np.histogram2d(a, b, bins=bins, range=[r if r[1] > r[0] else (r[0], r[0] + 1) for r in ranges])
    joint /= max(joint.sum(), 1)

    def entropy(p: np.ndarray) -> float:
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    h_joint = entropy(joint)
    return (entropy(joint.sum(axis=0)) + entropy(joint.sum(axis=1))) / h_joint if h_joint > 0 else 1.0


def _register(fixed_path: str, moving_path: str, mask_path: str | None, stages: tuple[str, ...],
              params: CoregisterParams, outprefix: str) -> tuple[str, float]:
    """One registration, single-threaded, in a worker process; returns the transform file and its seconds.

    Multi-threaded ANTs registration is not reproducible (its metric sums in thread order), so parallelism
    comes from running the subject's registrations side by side, one thread each.
    """
    import time

    import ants

    start = time.perf_counter()
    ants.config._random_seed = params.seed  # ANTs samples the metric randomly
    fixed = ants.image_read(fixed_path)
    moving = ants.image_read(moving_path)
    mask = ants.image_read(mask_path) if mask_path else None
    voxel_mm = min(fixed.spacing)
    shrink_factors = tuple(max(1, int(round(level / voxel_mm))) for level in params.level_resolutions_mm)
    transforms = None
    for stage in stages:
        result = ants.registration(
            fixed, moving, type_of_transform=STAGE_TYPES[stage], initial_transform=transforms, mask=mask,
            aff_shrink_factors=shrink_factors, aff_smoothing_sigmas=params.smoothing_sigmas_mm,
            smoothing_in_mm=True, aff_iterations=params.iterations,
            aff_random_sampling_rate=params.sampling_rate, outprefix=f"{outprefix}-{stage}-")
        # ANTs collapses the initial linear transform into the new one: one file holds the whole chain.
        (transforms,) = result["fwdtransforms"]
    return transforms, time.perf_counter() - start


def _single_threaded_worker() -> None:
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"  # before the worker imports ants


class Coregistration:
    """Runs the registrations of one subject and keeps the transforms, so images can move both ways."""

    def __init__(self, params: CoregisterParams, subject: str | None = None, threads: int = 1):
        self.params = params
        self.subject = subject
        self.threads = max(1, threads)
        for stage in params.atlas_stages:
            if stage not in STAGE_TYPES:
                raise ConfigError(f"unknown atlas registration stage {stage!r}; use {list(STAGE_TYPES)}")
        if params.interpolation not in ("linear", "bspline"):
            raise ConfigError(f"image interpolation must be linear or bspline, not {params.interpolation!r}")

    def run(self, images: dict[str, str | Path], out_dir: str | Path) -> dict:
        import ants

        params = self.params
        out_dir = Path(out_dir)
        timer = Timer()

        with timer.phase("load"):
            native = {}
            for modality, path in images.items():
                # Spacing policy is ingest's business; here only what would break a registration.
                img = check_image(load_image(path, subject=self.subject, modality=modality), subject=self.subject,
                                  modality=modality, file=path, spacing_range_mm=None)
                native[modality] = to_ants(img)
            centre = params.centre if params.centre in native else params.centre_fallback
            if centre not in native:
                raise InputError(f"the centre modality {params.centre} is missing and the fallback "
                                 f"{params.centre_fallback} is not available either", subject=self.subject)
            atlas = load_atlas(params.atlas, params.atlas_mask)
            fixed = to_ants(atlas.image)
            dilation = max(1, int(round(params.mask_dilation_mm / min(fixed.spacing))))
            atlas_mask = ants.iMath(to_ants(atlas.mask), "MD", dilation) if atlas.mask is not None else None

        records: dict[str, Registration] = {}
        with tempfile.TemporaryDirectory(prefix="bratsflow-coregister-") as tmp:
            workdir = Path(tmp)
            with timer.phase("register"):
                atlas_path, atlas_mask_path, head_mask_path = (str(workdir / f"{n}.nii") for n in
                                                               ("atlas", "atlas_mask", "head_mask"))
                ants.image_write(fixed, atlas_path)
                if atlas_mask is not None:
                    ants.image_write(atlas_mask, atlas_mask_path)
                # Co-registrations look at the head, not the air around it: faster, and no pull from the edges.
                ants.image_write(ants.get_mask(native[centre], cleanup=2), head_mask_path)
                jobs = {centre: (atlas_path, str(images[centre]), atlas_mask_path if atlas_mask else None,
                                 params.atlas_stages, params, str(workdir / f"{centre}-to-atlas"))}
                for modality in native:
                    if modality != centre:
                        jobs[modality] = (str(images[centre]), str(images[modality]), head_mask_path, ("rigid",),
                                          params, str(workdir / f"{modality}-to-{centre}"))
                context = multiprocessing.get_context("spawn")  # ITK's thread pools do not survive a fork
                with ProcessPoolExecutor(max_workers=min(self.threads, len(jobs)), mp_context=context,
                                         initializer=_single_threaded_worker) as pool:
                    futures = {m: pool.submit(_register, *job) for m, job in jobs.items()}
                    done = {m: future.result() for m, future in futures.items()}
            atlas_tx = done[centre][0]
            coreg_tx = {m: tx for m, (tx, _) in done.items() if m != centre}

            with timer.phase("evaluate"):
                grid, grid_mask = evaluation_grid(fixed, atlas_mask)
                records[centre] = self._evaluate(grid, grid_mask, native[centre], [atlas_tx], centre, "atlas",
                                                 done[centre][1])
                # Judge the co-registrations on the brain: the atlas brain mask in the centre's native space.
                native_mask = None if atlas_mask is None else ants.apply_transforms(
                    native[centre], atlas_mask, [atlas_tx], whichtoinvert=[True], interpolator="nearestNeighbor")
                grid, grid_mask = evaluation_grid(native[centre], native_mask)
                for modality, tx in coreg_tx.items():
                    records[modality] = self._evaluate(grid, grid_mask, native[modality], [tx], modality, centre,
                                                       done[modality][1])

            # Everything checked: only now write, so a failed subject leaves its old outputs alone.
            transform_dir = out_dir / "transforms"
            transform_dir.mkdir(parents=True, exist_ok=True)
            atlas_file = transform_dir / f"{centre}-to-atlas.mat"
            shutil.copyfile(atlas_tx, atlas_file)
            chains = {centre: [atlas_file.name]}
            for modality, tx in coreg_tx.items():
                target = transform_dir / f"{modality}-to-{centre}.mat"
                shutil.copyfile(tx, target)
                # ants.apply_transforms maps each fixed-grid point through the list in order:
                # atlas -> centre -> modality.
                chains[modality] = [atlas_file.name, target.name]

            outputs = {}
            for modality in native:
                with timer.phase(f"resample_{modality}"):
                    moved = ants.apply_transforms(
                        fixed, native[modality], [str(transform_dir / f) for f in chains[modality]],
                        interpolator=INTERPOLATORS[params.interpolation], defaultvalue=params.fill_value)
                    path = save_image(from_ants(moved), out_dir / f"{modality}.nii.gz")
                outputs[modality] = {"path": path.name, "sha256": sha256_file(path)}

        record = {
            "step": "coregister",
            "subject": self.subject,
            "centre": centre,
            "atlas": {"name": atlas.name, "source": atlas.source, "sha256": atlas.sha256,
                      "shape": list(atlas.image.shape), "affine": atlas.image.affine.tolist()},
            "parameters": asdict(params),
            "inputs": {m: {"path": str(p), "sha256": sha256_file(p)} for m, p in images.items()},
            "outputs": outputs,
            "transforms": {
                "convention": "ANTs/ITK, LPS; a file maps points of the fixed space to the moving space",
                "to_atlas": chains,
                "note": "ants.apply_transforms(fixed=atlas, moving=native image, transformlist=to_atlas[m]); "
                        "back to native: fixed=native image, the reversed list, every transform inverted",
            },
            "registrations": {m: asdict(r) for m, r in records.items()},
            "timings_s": timer.seconds,
            "environment": environment(),
        }
        save_json(record, out_dir / "coregister.json")
        return record

    def _evaluate(self, grid, grid_mask, moving, transforms, modality, target, seconds) -> Registration:
        import ants

        inside = grid_mask.numpy() > 0 if grid_mask is not None else np.ones(grid.shape, bool)
        fixed_values = grid.numpy()[inside]
        before = ants.resample_image_to_target(moving, grid, interp_type="linear").numpy()[inside]
        after = ants.apply_transforms(grid, moving, transforms, interpolator="linear").numpy()[inside]
        nmi_before = normalized_mutual_information(fixed_values, before)
        nmi_after = normalized_mutual_information(fixed_values, after)
        log.info("%s: %s -> %s NMI %.3f -> %.3f (%.1f s)", self.subject, modality, target, nmi_before, nmi_after,
                 seconds)
        if nmi_after < self.params.min_nmi:
            raise RegistrationError(
                f"registration to {target} failed: normalised mutual information {nmi_after:.3f} after "
                f"registration is below {self.params.min_nmi} (too little overlap, an empty image, or an image "
                f"of another subject?)", subject=self.subject, modality=MODALITY_NAMES.get(modality, modality))
        return Registration(modality, target, round(nmi_before, 4), round(nmi_after, 4), round(seconds, 2))


def evaluation_grid(image, mask=None):
    """A copy of `image` on a grid of at least 2 mm (and `mask` on it): similarity there is as telling as at
    full resolution and up to 8× cheaper."""
    import ants

    spacing = max(EVALUATION_SPACING_MM, *image.spacing)
    grid = ants.resample_image(image, (spacing,) * 3, use_voxels=False, interp_type=0)
    return grid, None if mask is None else ants.resample_image_to_target(mask, grid,
                                                                          interp_type="nearestNeighbor")


def coregister(images: dict[str, str | Path], out_dir: str | Path, params: CoregisterParams = CoregisterParams(),
               subject: str | None = None, threads: int = 1) -> dict:
    """Register and resample one subject; `threads` registrations run side by side, each single-threaded."""
    return Coregistration(params, subject, threads).run(images, out_dir)


def to_native(image: str | Path, coregister_dir: str | Path, modality: str, out: str | Path, *,
              reference: str | Path | None = None, labels: bool = False, fill_value: float = 0.0) -> Path:
    """Map an atlas-space image (or label map) into the native space of `modality` with the stored inverse
    transforms. `reference` is the native grid (default: the modality's input to co-registration)."""
    import json

    import ants

    coregister_dir = Path(coregister_dir)
    record = json.loads((coregister_dir / "coregister.json").read_text())
    chains = record["transforms"]["to_atlas"]
    if modality not in chains:
        raise ConfigError(f"no transforms for modality {modality!r} in {coregister_dir}; have {sorted(chains)}")
    reference = Path(reference or record["inputs"][modality]["path"])
    source = load_image(image)
    moving = to_ants(source)
    fixed = to_ants(load_image(reference, modality=modality))
    chain = [str(coregister_dir / "transforms" / name) for name in reversed(chains[modality])]
    moved = ants.apply_transforms(fixed, moving, chain, whichtoinvert=[True] * len(chain),
                                  interpolator="genericLabel" if labels else "linear", defaultvalue=fill_value)
    result = from_ants(moved, dtype=np.uint8 if labels else np.float32)
    if labels:
        result = label_image(np.asarray(result.dataobj), result.affine)
    return save_image(result, out)

