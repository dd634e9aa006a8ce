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
import tempfile
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
from scipy import ndimage as ndi

from .alignment import FLATTEN_MM, AlignmentCheck, MovingImage, check_alignment, foreground
from .atlas import load_atlas
from .availability import absent
from .errors import ConfigError, InputError, RegistrationError
from .io import check_image, from_ants, label_image, load_image, same_grid, save_image, to_ants
from .modalities import MODALITY_NAMES
from .paths import StepFiles
from .step import StepRun, read_record

log = logging.getLogger(__name__)

STAGE_TYPES = {"rigid": "Rigid", "affine": "Affine"}
INPUT_KINDS = ("auto", "native", "coregistered")
ITK_THREADS = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"
INTERPOLATORS = {"linear": "linear", "bspline": "bSpline", "nearest": "nearestNeighbor", "label": "genericLabel"}


@dataclass(frozen=True)
class CoregisterParams:
    # The config blocks it mirrors, each with the block's keys it does not own (tests/test_defaults.py).
    CONFIG_BLOCKS: ClassVar[dict[str, tuple[str, ...]]] = {"coregister": ()}

    atlas: str = "mni152"
    atlas_mask: str | None = None
    # The centre's final mapping onto the atlas: "rigid", or "affine" (rigid first, then affine).
    atlas_transform: str = "rigid"
    # "coregistered": the images are already aligned on one grid (e.g. BraTS format): each stays as it is and
    # only the centre is registered to the atlas (or kept too, when it is on the atlas grid already); "native":
    # register every image; "auto": keep an image that shares the centre's grid (the centre: the atlas grid) and
    # passes the checks there as it is, register the others.
    inputs: str = "auto"
    centre: str = "t1c"
    # When the centre modality is missing: register onto this one instead (None: fail).
    centre_fallback: str | None = "t1"
    interpolation: str = "linear"
    # Out-of-view voxels of the atlas-space images.
    fill_value: float = 0.0
    # Coarse-to-fine schedules in millimetres, so they mean the same for any voxel size: each level works on the
    # images resampled to about this resolution, smoothed by this sigma. The first registrations (every
    # modality onto the atlas) stop at 2 mm; the refinements that follow (affine onto the atlas, each modality
    # onto the centre) start from them and end at 1 mm (or the image's own resolution when coarser), where the
    # last tenths of a millimetre are won.
    level_resolutions_mm: tuple[float, ...] = (8.0, 4.0, 2.0)
    smoothing_sigmas_mm: tuple[float, ...] = (3.0, 2.0, 1.0)
    iterations: tuple[int, ...] = (500, 200, 50)
    refine_resolutions_mm: tuple[float, ...] = (1.0,)
    refine_smoothing_mm: tuple[float, ...] = (0.0,)
    refine_iterations: tuple[int, ...] = (20,)
    sampling_rate: float = 0.1
    # The atlas brain mask, dilated by this, restricts the metric: a whole-head image against a brain-only
    # template, and (mapped to native space) the brain region for the co-registrations.
    mask_dilation_mm: float = 5.0
    # Checks every registration must pass (alignment.py): the part of the fixed foreground inside the moving
    # image's field of view, the part of that covered by the moving foreground, the distance of the result from
    # the similarity optimum along each rigid axis (probed at ± that distance), and an absolute floor of
    # normalised mutual information (1 = independent, 2 = identical) that only unrelated images fall under.
    min_overlap: float = 0.5
    min_coverage: float = 0.9
    max_offset_mm: float = 3.0
    max_offset_deg: float = 3.0
    # Floors of normalised mutual information: between two images of one subject (each divided by its local
    # mean), and against the atlas (the images as they are, another brain: lower).
    min_nmi: float = 1.04
    min_nmi_atlas: float = 1.01
    # Where the similarity is probed to find its optimum (a parabola through −d, 0, +d).
    probe_mm: float = 3.0
    probe_deg: float = 3.0
    # The atlas is another brain than the subject's: its similarity peak is broad, so the atlas registration's
    # offsets are probed and allowed this many times farther out, and its coverage taken over the atlas brain
    # less this margin (brains differ in size by more than a rigid or affine fit absorbs at the edge).
    atlas_check_scale: float = 2.0
    atlas_core_margin_mm: float = 10.0
    seed: int = 1


@dataclass
class Registration:
    moving: str
    fixed: str
    nmi_before: float
    nmi_after: float
    seconds: float
    checks: dict
    attempts: list[dict]
    method: str = "registered"


@dataclass(frozen=True)
class Reference:
    """A registration's fixed side for the checks: the image at the evaluation resolution, its foreground, the
    part of it the moving foreground must cover, and how far out the similarity peak is probed."""

    grid: object
    foreground: np.ndarray
    core: np.ndarray
    scale: float = 1.0


def register_linear(fixed_path: str, moving_path: str, mask_path: str | None, kind: str, params: CoregisterParams,
              outprefix: str, initial: str | None = None) -> tuple[str, float]:
    """One registration, single-threaded, in a worker process; returns the transform file and its seconds.

    Multi-threaded ANTs registration is not reproducible (its metric sums in thread order), so parallelism
    comes from running the subject's registrations side by side, one thread each. With an `initial` transform
    the refinement schedule runs.
    """
    import time

    import ants

    start = time.perf_counter()
    ants.config._random_seed = params.seed  # ANTs samples the metric randomly
    fixed = ants.image_read(fixed_path)
    voxel_mm = min(fixed.spacing)
    if initial:
        levels, sigmas, iterations = params.refine_resolutions_mm, params.refine_smoothing_mm, params.refine_iterations
    else:
        levels, sigmas, iterations = params.level_resolutions_mm, params.smoothing_sigmas_mm, params.iterations
    result = ants.registration(
        fixed, ants.image_read(moving_path), type_of_transform=STAGE_TYPES[kind], initial_transform=initial,
        mask=ants.image_read(mask_path) if mask_path else None,
        aff_shrink_factors=tuple(max(1, int(round(level / voxel_mm))) for level in levels),
        aff_smoothing_sigmas=sigmas, smoothing_in_mm=True, aff_iterations=iterations,
        aff_random_sampling_rate=params.sampling_rate, outprefix=f"{outprefix}-")
    # ANTs collapses the initial linear transform into the new one: one file holds the whole mapping.
    (transform,) = result["fwdtransforms"]
    return transform, time.perf_counter() - start


def _matrix(path: str) -> np.ndarray:
    """An ANTs linear transform file as a 4×4 matrix on LPS points."""
    import ants

    transform = ants.read_transform(path)
    parameters = np.asarray(transform.parameters, dtype=float)
    centre = np.asarray(transform.fixed_parameters, dtype=float)
    linear = parameters[:9].reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = linear
    matrix[:3, 3] = parameters[9:] + centre - linear @ centre
    return matrix


def _write_matrix(matrix: np.ndarray, path: str) -> str:
    import ants

    transform = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                           matrix=matrix[:3, :3], translation=matrix[:3, 3],
                                           center=np.zeros(3))
    ants.write_transform(transform, path)
    return path


@contextmanager
def single_threaded_pool(workers: int):
    """Worker processes whose ITK runs one thread. Spawned, not forked (ITK's thread pools do not survive a
    fork); a spawned process copies the environment when it starts, before anything imports ants, so the
    variable stays set while the pool may start workers."""
    previous = os.environ.get(ITK_THREADS)
    os.environ[ITK_THREADS] = "1"
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            yield pool
    finally:
        if previous is None:
            del os.environ[ITK_THREADS]
        else:
            os.environ[ITK_THREADS] = previous


class Coregistration:
    """Runs the registrations of one subject and keeps the transforms, so images can move both ways."""

    def __init__(self, params: CoregisterParams, subject: str | None = None, threads: int = 1):
        self.params = params
        self.subject = subject
        self.threads = max(1, threads)
        if params.atlas_transform not in STAGE_TYPES:
            raise ConfigError(f"atlas_transform must be one of {list(STAGE_TYPES)}, not {params.atlas_transform!r}")
        if params.inputs not in INPUT_KINDS:
            raise ConfigError(f"coregister inputs must be one of {list(INPUT_KINDS)}, not {params.inputs!r}")
        if params.interpolation not in ("linear", "bspline"):
            raise ConfigError(f"image interpolation must be linear or bspline, not {params.interpolation!r}")

    def run(self, images: dict[str, str | Path], out_dir: str | Path) -> dict:
        import ants

        params = self.params
        files = StepFiles(out_dir, "coregister")
        run = StepRun("coregister", self.subject, files.record, parameters=asdict(params))

        with run.phase("load"):
            loaded = {}
            for modality, path in images.items():
                # Spacing policy is ingest's business; here only what would break a registration.
                loaded[modality] = check_image(load_image(path, subject=self.subject, modality=modality),
                                               subject=self.subject, modality=modality, file=path,
                                               spacing_range_mm=None)
            native = {modality: to_ants(img) for modality, img in loaded.items()}
            centre = params.centre if params.centre in native else params.centre_fallback
            if centre not in native:
                raise InputError(f"the centre modality {params.centre} is missing and the fallback "
                                 f"{params.centre_fallback} is not available either", subject=self.subject)
            atlas = load_atlas(params.atlas, params.atlas_mask)
            fixed = to_ants(atlas.image)
            dilation = max(1, int(round(params.mask_dilation_mm / min(fixed.spacing))))
            atlas_mask = ants.iMath(to_ants(atlas.mask), "MD", dilation) if atlas.mask is not None else None
            run.add_inputs(images)

        records: dict[str, Registration] = {}
        with ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bratsflow-coregister-")))
            with run.phase("register"):
                # Registering smoothed copies at each schedule's finest resolution gives the result of letting
                # ANTs shrink the full images, without reading and warping those in every job.
                coarse, fine = params.level_resolutions_mm[-1], params.refine_resolutions_mm[-1]
                copies = {"atlas": fixed, **native}
                paths = {(name, res): str(workdir / f"{name}-{res:g}mm.nii") for name in copies for res in
                         (coarse, fine)}
                for (name, res), path in paths.items():
                    ants.image_write(working_copy(copies[name], max(res, min(copies[name].spacing))), path)
                atlas_mask_paths = {}
                if atlas_mask is not None:
                    for res in (coarse, fine):
                        atlas_mask_paths[res] = str(workdir / f"atlas_mask-{res:g}mm.nii")
                        ants.image_write(ants.resample_image_to_target(
                            atlas_mask, ants.image_read(paths["atlas", res]), interp_type="nearestNeighbor"),
                            atlas_mask_paths[res])
                references = self._references(atlas, {name: ants.image_read(paths[name, coarse])
                                                      for name in ("atlas", centre)}, centre)
                # Against the centre (one subject) bias fields are divided out; against the atlas the outline of
                # the image as it is carries the alignment.
                moving = {m: MovingImage(ants.image_read(paths[m, coarse]), None if m == centre else FLATTEN_MM)
                          for m in native}
                identity = _write_matrix(np.eye(4), str(workdir / "identity.mat"))
                kept = self._kept_as_given(loaded, atlas, centre, references, moving, identity, images)
                records.update(kept)
                native_mask_path = str(workdir / "native_mask.nii")
                pool = stack.enter_context(single_threaded_pool(min(self.threads, len(native))))

                def submit(modality: str, job: tuple, run_params: CoregisterParams = params, suffix: str = ""):
                    fixed_path, moving_path, mask_path, kind, prefix, initial = job
                    return pool.submit(register_linear, fixed_path, moving_path, mask_path, kind, run_params,
                                       prefix + suffix, initial)

                # Every modality rigidly onto the atlas: the same well-posed problem for each (a whole head onto
                # a brain template, pose within the scanner's range), where a direct registration between two
                # poses can meet a local optimum. These also start the co-registrations.
                to_register = [m for m in native if m not in kept]
                jobs = {m: (paths["atlas", coarse], paths[m, coarse], atlas_mask_paths.get(coarse), "rigid",
                            str(workdir / f"{m}-to-atlas-rigid"), None) for m in to_register}
                hub = {m: future.result() for m, future in {m: submit(m, job) for m, job in jobs.items()}.items()}
                hub.update({m: (identity, 0.0) for m in kept if m == centre})
                centre_rigid = hub[centre][0]
                # The atlas brain mask in the centre's native space: co-registrations look at the brain.
                native_mask = None if atlas_mask is None else ants.apply_transforms(
                    ants.image_read(paths[centre, fine]), atlas_mask, [centre_rigid], whichtoinvert=[True],
                    interpolator="nearestNeighbor")
                if native_mask is not None:
                    ants.image_write(native_mask, native_mask_path)
                second = {}
                if centre in to_register:
                    second[centre] = (paths["atlas", fine], paths[centre, fine], atlas_mask_paths.get(fine),
                                      params.atlas_transform, str(workdir / f"{centre}-to-atlas-final"), centre_rigid)
                for modality in to_register:
                    if modality != centre:
                        # Start: centre -> atlas (inverse of the centre's rigid) -> modality (its rigid).
                        start = _write_matrix(_matrix(hub[modality][0]) @ np.linalg.inv(_matrix(centre_rigid)),
                                              str(workdir / f"{modality}-to-{centre}-start.mat"))
                        second[modality] = (paths[centre, fine], paths[modality, fine],
                                            None if native_mask is None else native_mask_path, "rigid",
                                            str(workdir / f"{modality}-to-{centre}"), start)
                futures = {m: submit(m, job) for m, job in second.items()}
                done = {m: future.result() for m, future in futures.items()}
                done.update({m: (identity, 0.0) for m in kept})
                jobs.update(second)

            with run.phase("check"):
                # A registration that fails a check gets a second try with another sampling seed.
                def retry(modality: str) -> tuple[str, float]:
                    return submit(modality, jobs[modality], replace(params, seed=params.seed + 1), "-retry").result()

                for modality in to_register:
                    target = "atlas" if modality == centre else centre
                    records[modality], done[modality] = self._checked(
                        references[target], moving[modality], modality, target, done[modality], retry,
                        images[modality])
            atlas_tx = done[centre][0]
            coreg_tx = {m: tx for m, (tx, _) in done.items() if m != centre}

            # Everything checked: only now write, so a failed subject leaves its old outputs alone.
            atlas_file = run.copy_file(f"{centre}-to-atlas", atlas_tx, files.transform(centre, "atlas"))
            chains = {centre: [atlas_file.name]}
            for modality, tx in coreg_tx.items():
                target = run.copy_file(f"{modality}-to-{centre}", tx, files.transform(modality, centre))
                # ants.apply_transforms maps each fixed-grid point through the list in order:
                # atlas -> centre -> modality.
                chains[modality] = [atlas_file.name, target.name]

            for modality in native:
                with run.phase(f"resample_{modality}"):
                    moved = ants.apply_transforms(
                        fixed, native[modality], [str(files.transforms / f) for f in chains[modality]],
                        interpolator=INTERPOLATORS[params.interpolation], defaultvalue=params.fill_value)
                    run.save_image(modality, from_ants(moved), files.image(modality))

        run.add_atlas(atlas.name, source=atlas.source, sha256=atlas.sha256)
        return run.finish(
            centre=centre,
            missing_modalities=absent(images),
            atlas={"name": atlas.name, "shape": list(atlas.image.shape), "affine": atlas.image.affine.tolist()},
            transforms={
                "convention": "ANTs/ITK, LPS; a file maps points of the fixed space to the moving space",
                "to_atlas": chains,
                "note": "ants.apply_transforms(fixed=atlas, moving=native image, transformlist=to_atlas[m]); "
                        "back to native: fixed=native image, the reversed list, every transform inverted",
            },
            registrations={m: asdict(r) for m, r in records.items()},
        )

    def _references(self, atlas, copies: dict, centre: str) -> dict[str, Reference]:
        """The fixed sides of the checks: the atlas (its brain, and its core for coverage) and the centre."""
        params = self.params
        atlas_grid = copies["atlas"]
        if atlas.mask is not None:
            import ants

            brain = ants.resample_image_to_target(to_ants(atlas.mask), atlas_grid,
                                                  interp_type="nearestNeighbor").numpy() > 0
        else:
            brain = foreground(atlas_grid.numpy())
        core = ndi.distance_transform_edt(brain, sampling=atlas_grid.spacing) > params.atlas_core_margin_mm
        centre_foreground = foreground(copies[centre].numpy())
        return {"atlas": Reference(atlas_grid, brain, core, params.atlas_check_scale),
                centre: Reference(copies[centre], centre_foreground, centre_foreground)}

    def _kept_as_given(self, loaded: dict, atlas, centre: str, references: dict[str, Reference],
                       moving: dict[str, MovingImage], identity: str, images: dict) -> dict[str, Registration]:
        """The images that stay as they are (see CoregisterParams.inputs), with the checks that allowed it.

        An image on its target's grid is kept when the identity passes the checks there; declared
        "coregistered" inputs that are not on the centre's grid, or not aligned there, fail the subject."""
        params = self.params
        kept = {}
        if params.inputs == "native":
            return kept
        for modality, img in loaded.items():
            target, grid = ("atlas", atlas.image) if modality == centre else (centre, loaded[centre])
            where = dict(subject=self.subject, modality=MODALITY_NAMES.get(modality, modality), file=images[modality])
            if not same_grid(img, grid):
                if params.inputs == "coregistered" and modality != centre:
                    raise InputError(f"coregister.inputs is 'coregistered' but the image is not on the grid of "
                                     f"{target} (shape {img.shape}, voxel size {_spacing(img)} mm vs "
                                     f"{grid.shape}, {_spacing(grid)} mm)", **where)
                continue
            reference = references[target]
            check = check_alignment(reference.grid, reference.foreground, moving[modality], np.eye(4),
                                    core=reference.core, shift_mm=params.probe_mm * reference.scale,
                                    angle_deg=params.probe_deg * reference.scale)
            failures = check_failures(check, params, atlas=target == "atlas")
            log.info("%s: %s on the grid of %s: kept as given %s", self.subject, modality, target,
                     f"is refused: {'; '.join(failures)}" if failures else "(the checks pass)")
            if not failures:
                kept[modality] = Registration(modality, target, round(check.nmi_before, 4), round(check.nmi, 4),
                                              0.0, check.as_record(), [], method="kept as given (identity)")
            elif params.inputs == "coregistered" and modality != centre:
                raise RegistrationError(f"coregister.inputs is 'coregistered' but the image is not aligned with "
                                        f"{target}: {'; '.join(failures)}", **where)
        return kept

    def _checked(self, reference: Reference, moving: MovingImage, modality, target, result, retry, file):
        """Check a registration (`moving`: the modality's working copy at the evaluation resolution); retry it
        once when a check fails; refuse it if the retry fails too."""
        attempts = []
        for attempt in (1, 2):
            transform, seconds = result
            check = check_alignment(reference.grid, reference.foreground, moving, _matrix(transform),
                                    core=reference.core, shift_mm=self.params.probe_mm * reference.scale,
                                    angle_deg=self.params.probe_deg * reference.scale)
            failures = check_failures(check, self.params, atlas=target == "atlas")
            attempts.append({**check.as_record(), "seconds": round(seconds, 2), "failed": failures})
            log.info("%s: %s -> %s attempt %d: NMI %.3f -> %.3f, overlap %.3f, coverage %.3f, offsets %s "
                     "(%.1f s)%s", self.subject, modality, target, attempt, check.nmi_before, check.nmi,
                     check.overlap, check.coverage, check.as_record()["offsets"], seconds,
                     f": {'; '.join(failures)}" if failures else "")
            if not failures:
                return Registration(modality, target, round(check.nmi_before, 4), round(check.nmi, 4),
                                    round(seconds, 2), check.as_record(), attempts), result
            if attempt == 1:
                result = retry(modality)
        raise RegistrationError(
            f"registration to {target} failed its checks (2 attempts): {'; '.join(attempts[-1]['failed'])} — "
            f"an image upside down or with swapped axes, of another subject, or with too little in view?",
            subject=self.subject, modality=MODALITY_NAMES.get(modality, modality), file=file)

def check_failures(check: AlignmentCheck, params: CoregisterParams, atlas: bool = False) -> list[str]:
    """What a registration's check values fail of the configured limits (`atlas`: a registration to the atlas,
    whose offsets are scaled by atlas_check_scale and whose similarity has its own floor)."""
    scale = params.atlas_check_scale if atlas else 1.0
    min_nmi, key = (params.min_nmi_atlas, "min_nmi_atlas") if atlas else (params.min_nmi, "min_nmi")
    failures = []
    if check.overlap < params.min_overlap:
        failures.append(f"its field of view covers {check.overlap:.0%} of the target's foreground "
                        f"(coregister.min_overlap {params.min_overlap:g})")
    if check.coverage < params.min_coverage:
        failures.append(f"its foreground covers {check.coverage:.0%} of the target's foreground in view "
                        f"(coregister.min_coverage {params.min_coverage:g})")
    axis, offset, tolerance = check.worst_offset(params.max_offset_mm * scale, params.max_offset_deg * scale)
    unit = "mm" if axis.startswith("shift") else "°"
    if offset is None:
        failures.append(f"its similarity has no peak along {axis} within ±{tolerance:g} {unit}")
    elif abs(offset) > tolerance:
        failures.append(f"the similarity peaks {offset:+.1f} {unit} away along {axis} (allowed ±{tolerance:g} "
                        f"{unit}: coregister.max_offset_{'mm' if unit == 'mm' else 'deg'}"
                        f"{f' × {scale:g} for the atlas' if atlas else ''})")
    if check.nmi < min_nmi:
        failures.append(f"normalised mutual information {check.nmi:.3f} is below coregister.{key} {min_nmi:g}")
    return failures


def _spacing(img) -> str:
    return "×".join(f"{z:.3g}" for z in img.header.get_zooms()[:3])


def working_copy(image, spacing_mm: float):
    """`image` smoothed and resampled to an isotropic grid of `spacing_mm`, for the registrations."""
    import ants

    smooth = ants.smooth_image(image, spacing_mm / 2, sigma_in_physical_coordinates=True)
    return ants.resample_image(smooth, (spacing_mm,) * 3, use_voxels=False, interp_type=0)


def coregister(images: dict[str, str | Path], out_dir: str | Path, params: CoregisterParams = CoregisterParams(),
               subject: str | None = None, threads: int = 1) -> dict:
    """Register and resample one subject; `threads` registrations run side by side, each single-threaded."""
    return Coregistration(params, subject, threads).run(images, out_dir)


def to_native(image: str | Path, coregister_dir: str | Path, modality: str, out: str | Path, *,
              reference: str | Path | None = None, labels: bool = False, fill_value: float = 0.0) -> Path:
    """Map an atlas-space image (or label map) into the native space of `modality` with the stored inverse
    transforms. `reference` is the native grid (default: the modality's input to co-registration)."""
    import ants

    files = StepFiles(coregister_dir, "coregister")
    record = read_record(files.record)
    chains = record["transforms"]["to_atlas"]
    if modality not in chains:
        raise ConfigError(f"no transforms for modality {modality!r} in {coregister_dir}; have {sorted(chains)}")
    reference = Path(reference or record["inputs"][modality]["path"])
    source = load_image(image)
    moving = to_ants(source)
    fixed = to_ants(load_image(reference, modality=modality))
    chain = [str(files.transforms / name) for name in reversed(chains[modality])]
    moved = ants.apply_transforms(fixed, moving, chain, whichtoinvert=[True] * len(chain),
                                  interpolator="genericLabel" if labels else "linear", defaultvalue=fill_value)
    result = from_ants(moved, dtype=np.uint8 if labels else np.float32)
    if labels:
        result = label_image(np.asarray(result.dataobj), result.affine)
    return save_image(result, out)

