"""Radiomics: pyradiomics features of every tumour region × modality as a tidy table per subject, and the cohort's
long and wide tables.

pyradiomics does the feature mathematics. This module decides what it is given: one binary mask per region (label
values from labels.py), every modality normalised inside the brain mask, the images cropped around each region
(pyradiomics' own `preCrop`, done before the work is shipped to worker processes), shape features once per region,
and the region × modality tasks spread over `threads` processes.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .availability import absent
from .errors import ConfigError, InputError
from .io import check_image, load_image, require_same_grid, save_table, sha256_file, to_sitk
from .labels import DEFAULT_CONVENTION, region_mask, summary_regions, to_labels
from .paths import StepFiles
from .radiomics_filters import FILTERS

log = logging.getLogger(__name__)

COLUMNS = ("subject", "region", "modality", "image_type", "feature_class", "feature", "value", "unit", "reason")
DEFAULT_PARAMS = Path(str(resources.files("bratsflow") / "params" / "radiomics.yaml"))
SHAPE_CLASSES = ("shape", "shape2D")
VOLUME = ("volume", "Volume", "mL")  # feature_class, feature, unit of the region volume row
NO_TUMOUR = "no tumour in the segmentation"
EMPTY = "empty region"
NOT_COMPUTED = "pyradiomics returned no value (region too small for this image type)"

_INTENSITY_FEATURES = {"10Percentile", "90Percentile", "Maximum", "Minimum", "Mean", "Median", "InterquartileRange",
                       "Range", "MeanAbsoluteDeviation", "RobustMeanAbsoluteDeviation", "RootMeanSquared"}
_SHAPE_UNITS = {"MeshVolume": "mm3", "VoxelVolume": "mm3", "SurfaceArea": "mm2", "SurfaceVolumeRatio": "1/mm",
                "Maximum3DDiameter": "mm", "Maximum2DDiameterSlice": "mm", "Maximum2DDiameterColumn": "mm",
                "Maximum2DDiameterRow": "mm", "MajorAxisLength": "mm", "MinorAxisLength": "mm",
                "LeastAxisLength": "mm", "MeshSurface": "mm2", "PixelSurface": "mm2", "Perimeter": "mm",
                "PerimeterSurfaceRatio": "1/mm", "MaximumDiameter": "mm"}


@dataclass(frozen=True)
class Params:
    """A validated pyradiomics parameter set, with the normalisation that bratsflow applies itself taken out."""

    pyradiomics: dict
    normalise: bool
    scale: float
    outliers: float | None
    file: str
    sha256: str

    @property
    def intensity_unit(self) -> str:
        if not self.normalise:
            return "a.u."
        return "SD" if self.scale == 1 else f"SD/{self.scale:g}"

    def part(self, shape: bool) -> str | None:
        """The parameters of the shape tasks (original image, shape classes only) or of the intensity tasks (every
        other class), as JSON; None when that part enables no class."""
        classes = {name: value for name, value in self.pyradiomics["featureClass"].items()
                   if (name in SHAPE_CLASSES) == shape}
        if not classes:
            return None
        image_types = {"Original": {}} if shape else self.pyradiomics["imageType"]
        return json.dumps({**self.pyradiomics, "featureClass": classes, "imageType": image_types}, sort_keys=True)


def load_params(path: str | Path | None = None, filters=()) -> Params:
    """Read and validate a pyradiomics parameter file (default: bratsflow's), switching on the named filters
    (log, wavelet) as extra image types."""
    from pykwalify.errors import PyKwalifyException
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    _quiet_pyradiomics()
    path = Path(path) if path is not None else DEFAULT_PARAMS
    if not path.is_file():
        raise ConfigError("radiomics parameter file does not exist", file=path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"not a readable YAML file ({exc})", file=path) from exc
    if not isinstance(raw, dict):
        raise ConfigError("a pyradiomics parameter file is a mapping of imageType, featureClass and setting",
                          file=path)
    params = {key: dict(value or {}) if isinstance(value, dict) or value is None else value
              for key, value in raw.items()}
    image_types = params.get("imageType") or {"Original": {}}
    if not isinstance(image_types, dict):
        raise ConfigError("imageType is a mapping of image types to their settings (e.g. Original: {})", file=path)
    image_types = {name: dict(value or {}) if isinstance(value, dict) or value is None else value
                   for name, value in image_types.items()}
    params["imageType"] = image_types
    for name in filters:
        if name not in FILTERS:
            raise ConfigError(f"unknown radiomics filter {name!r}; expected one of {sorted(FILTERS)}")
        image_types.setdefault(FILTERS[name], {})
    if not params.get("featureClass"):
        # pyradiomics would then enable every class, shape2D included, which fails on 3-D regions.
        raise ConfigError("the parameter file enables no feature class (featureClass)", file=path)
    try:
        RadiomicsFeatureExtractor(params)
    except PyKwalifyException as exc:
        raise ConfigError(f"not a valid pyradiomics parameter file: {exc.msg}", file=path) from None
    setting = dict(params.get("setting") or {})
    normalise = bool(setting.pop("normalize", False))
    scale = float(setting.pop("normalizeScale", 1))
    outliers = setting.pop("removeOutliers", None)
    if "LoG" in image_types and not (setting.get("sigma") or image_types["LoG"].get("sigma")):
        raise ConfigError("the LoG filter is on but the parameter file sets no `sigma`", file=path)
    # Masks reach pyradiomics as one binary region at a time, and its diagnostics are the provenance.
    setting.update(label=1, additionalInfo=True)
    params["setting"] = setting
    return Params(pyradiomics=params, normalise=normalise, scale=scale,
                  outliers=None if outliers is None else float(outliers), file=str(path), sha256=sha256_file(path))


def feature_unit(image_type: str, feature_class: str, feature: str, intensity_unit: str) -> str:
    """The unit of a pyradiomics feature; empty for dimensionless quantities, grey-level indices and counts."""
    if feature_class in SHAPE_CLASSES:
        return _SHAPE_UNITS.get(feature, "")
    if feature.endswith("Entropy"):
        return "bits"  # pyradiomics takes every entropy to base 2
    if feature_class == "firstorder":
        # Filtered images keep the voxel scale of their input but are filter responses, not intensities.
        unit = intensity_unit if image_type == "original" else "a.u."
        if feature in _INTENSITY_FEATURES:
            return unit
        if feature in ("Variance", "Energy"):
            return f"{unit}^2"
        if feature == "TotalEnergy":
            return f"{unit}^2*mm3"
    return ""


# ---------------------------------------------------------------------------------------------------------------
# Work done in worker processes: one pyradiomics run on a cropped image and binary mask.

@dataclass
class _Task:
    region: str
    modality: str | None  # None: the region's shape features
    image: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    params: str


@lru_cache(maxsize=4)
def _extractor(params: str):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    return RadiomicsFeatureExtractor(json.loads(params))


def _quiet_pyradiomics() -> None:
    # pyradiomics logs every setting, and warns on every symmetrical-GLCM Sum Average; errors still show.
    import radiomics

    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    logging.getLogger("pykwalify").setLevel(logging.WARNING)


def _init_worker() -> None:
    import SimpleITK as sitk
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    _quiet_pyradiomics()


def _plain(value):
    """pyradiomics diagnostics (numpy values, tuples, nested settings) as JSON-ready values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _run(task: _Task) -> tuple[dict[tuple[str, str, str], float], dict]:
    result = _extractor(task.params).execute(to_sitk(task.image, task.affine), to_sitk(task.mask, task.affine),
                                             label=1)
    features, diagnostics = {}, {}
    for key, value in result.items():
        if key.startswith("diagnostics_"):
            diagnostics[key.removeprefix("diagnostics_")] = _plain(value)
        else:
            image_type, feature_class, feature = key.rsplit("_", 2)
            features[(image_type, feature_class, feature)] = float(value)
    return features, diagnostics


def _run_all(tasks: list[_Task], threads: int) -> list[tuple[dict, dict]]:
    """Every task's result, in task order; the largest regions start first so the workers finish together."""
    if threads <= 1 or len(tasks) <= 1:
        return [_run(task) for task in tasks]
    order = sorted(range(len(tasks)), key=lambda i: -int(tasks[i].mask.sum()))
    # spawn, not fork: the parent may already hold ITK and BLAS thread pools.
    with ProcessPoolExecutor(max_workers=min(threads, len(tasks)), mp_context=get_context("spawn"),
                             initializer=_init_worker) as pool:
        futures = {i: pool.submit(_run, tasks[i]) for i in order}
        return [futures[i].result() for i in range(len(tasks))]


@lru_cache(maxsize=8)
def _catalogue(params: str) -> tuple[tuple[str, str, str], ...]:
    """(image type, class, feature) of everything the parameters produce: the rows a region without features
    still gets, so every subject's table has the same rows. pyradiomics names filtered images only while it makes
    them, hence one run on a small random block."""
    rng = np.random.default_rng(0)
    mask = np.zeros((24, 24, 24), dtype=np.uint8)
    mask[6:18, 6:18, 6:18] = 1
    features, _ = _run(_Task("catalogue", None, rng.normal(size=mask.shape), mask, np.eye(4), params))
    return tuple(features)


# ---------------------------------------------------------------------------------------------------------------
# One subject (or one image and mask).

def _crop_box(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    hits = np.nonzero(mask)
    return tuple(slice(max(int(h.min()) - pad, 0), min(int(h.max()) + pad + 1, n)) for h, n in zip(hits, mask.shape))


def _crop_affine(affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, :3] @ np.array([s.start for s in box]) + affine[:3, 3]
    return shifted


def region_problem(mask: np.ndarray, setting: dict) -> str | None:
    """Why pyradiomics cannot describe a region (empty, or below its minimum size or dimensionality), or None."""
    voxels = int(np.count_nonzero(mask))
    if voxels == 0:
        return EMPTY
    box = _crop_box(mask, 0)
    dims = sum(s.stop - s.start > 1 for s in box)
    min_dims = int(setting.get("minimumROIDimensions", 2))
    count = f"{voxels} voxel{'s' if voxels > 1 else ''}"
    if voxels == 1 or dims < min_dims:
        return f"region too small for pyradiomics ({count} spanning {dims} dimensions; " \
               f"minimumROIDimensions {min_dims})"
    min_size = setting.get("minimumROISize")
    if min_size is not None and voxels < int(min_size):
        return f"region too small for pyradiomics ({count}; minimumROISize {min_size})"
    return None


@dataclass
class _Normaliser:
    mean: float
    sd: float
    params: Params

    def __call__(self, values: np.ndarray) -> np.ndarray:
        out = np.asarray(values, dtype=np.float64)
        if not self.params.normalise:
            return out
        out = (out - self.mean) / self.sd
        if self.params.outliers is not None:
            out = np.clip(out, -self.params.outliers, self.params.outliers)  # as pyradiomics: before the scale
        return out * self.params.scale


def _normaliser(image: np.ndarray, brain: np.ndarray | None, params: Params, *, subject, modality, file) -> _Normaliser:
    # In float64: a float32 mean would shift every bin edge slightly, and with it some voxels' bins.
    values = np.asarray(image[brain] if brain is not None else image, dtype=np.float64)
    mean = float(values.mean())
    sd = float(values.std(ddof=1)) if values.size > 1 else 0.0  # sample SD, as SimpleITK's Normalize
    if params.normalise and not sd > 0:
        where = "inside the brain mask" if brain is not None else "over the image"
        raise InputError(f"constant {where}: cannot normalise", subject=subject, modality=modality, file=file)
    return _Normaliser(mean, sd, params)


def extract(images: dict[str, np.ndarray], regions: dict[str, np.ndarray], affine: np.ndarray, params: Params, *,
            brain: np.ndarray | None = None, subject: str = "", tumour: bool = True, threads: int = 1,
            files: dict[str, Path] | None = None) -> tuple[pd.DataFrame, dict]:
    """Features of every region (binary masks) × modality (arrays on one grid), as a tidy table and a record of
    what pyradiomics was given and said (normalisation, per-region status, its diagnostics)."""
    files = files or {}
    setting = params.pyradiomics["setting"]
    pad = int(setting.get("padDistance", 5))
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    normalisers = {m: _normaliser(image, brain, params, subject=subject, modality=m, file=files.get(m))
                   for m, image in images.items()}
    shape_params, intensity_params = params.part(shape=True), params.part(shape=False)

    tasks, status = [], {}
    for region, mask in regions.items():
        reason = NO_TUMOUR if not tumour else region_problem(mask, setting)
        status[region] = {"voxels": int(np.count_nonzero(mask)), "volume_ml": np.count_nonzero(mask) * voxel_ml,
                          "reason": reason}
        if reason is not None:
            continue
        box = _crop_box(mask, pad)
        crop_mask, crop_affine = mask[box].astype(np.uint8), _crop_affine(affine, box)
        if shape_params:
            first = next(iter(images.values()))
            tasks.append(_Task(region, None, first[box].astype(np.float64), crop_mask, crop_affine, shape_params))
        if intensity_params:
            tasks.extend(_Task(region, m, normalisers[m](image[box]), crop_mask, crop_affine, intensity_params)
                         for m, image in images.items())
    results = dict(zip(((t.region, t.modality) for t in tasks), _run_all(tasks, threads)))

    rows = []
    for region in regions:
        reason = status[region]["reason"]
        rows.append((region, None, None, *VOLUME[:2], status[region]["volume_ml"], VOLUME[2], reason))
        parts = ([(None, shape_params)] if shape_params else []) + \
                ([(m, intensity_params) for m in images] if intensity_params else [])
        for modality, part in parts:
            features = results[(region, modality)][0] if reason is None else {}
            catalogue = _catalogue(part)
            for key in (*catalogue, *(key for key in features if key not in catalogue)):
                value = features.get(key, np.nan)
                row_reason = reason if reason is not None else (None if key in features else NOT_COMPUTED)
                rows.append((region, modality, *key, value, feature_unit(*key, params.intensity_unit), row_reason))
    table = _fixed_dtypes(pd.DataFrame([(subject, *row) for row in rows], columns=list(COLUMNS)))

    first = next(iter(results.values()), (None, {}))[1]
    shared = ("Versions_", "Configuration_")
    record = {
        "normalisation": {
            "applied": params.normalise, "inside": "brain mask" if brain is not None else "whole image",
            "scale": params.scale, "remove_outliers_sd": params.outliers, "unit": params.intensity_unit,
            "per_modality": {m: {"mean": n.mean, "sd": n.sd} for m, n in normalisers.items()},
        },
        "regions": status,
        "tumour": tumour,
        "pyradiomics": {key: value for key, value in first.items() if key.startswith(shared)},
        "diagnostics": [
            {"region": region, "modality": modality,
             **{key: value for key, value in result[1].items() if not key.startswith(shared)}}
            for (region, modality), result in results.items()
        ],
    }
    return table, record


ONE_GRID = "radiomics needs the images, brain mask and segmentation on one grid"


def _load_inputs(images: dict[str, Path], mask: Path, brain_mask: Path | None, *, subject, what: str):
    """The mask (or segmentation) file, the images and the brain mask, checked to lie on the mask's grid."""
    mask_img = load_image(mask, subject=subject)
    arrays = {}
    for modality, path in images.items():
        img = check_image(load_image(path, subject=subject, modality=modality), spacing_range_mm=None,
                          subject=subject, modality=modality, file=path)
        require_same_grid(img, mask_img, f"the grid of {what} {mask}", why=ONE_GRID, subject=subject, file=path)
        arrays[modality] = np.asarray(img.dataobj)
    brain = None
    if brain_mask is not None:
        brain_img = load_image(brain_mask, subject=subject)
        require_same_grid(brain_img, mask_img, f"the grid of {what} {mask}", why=ONE_GRID, subject=subject,
                          file=brain_mask)
        brain = np.asarray(brain_img.dataobj) > 0
        if not brain.any():
            raise InputError("the brain mask is empty", subject=subject, file=brain_mask)
    return mask_img, arrays, brain


def _parameters(params: Params, **more) -> dict:
    return {"params": {"file": params.file, "sha256": params.sha256, "content": params.pyradiomics}, **more}


def radiomics_subject(images: dict[str, str | Path], segmentation: str | Path, out_dir: str | Path, *,
                      brain_mask: str | Path | None, params: Params, convention: str = DEFAULT_CONVENTION,
                      subject: str = "", threads: int = 1) -> pd.DataFrame:
    """Features of the label set's summary regions (WT, TC, ET, NETC, SNFH for the nested sets; see
    labels.summary_regions) × the given modalities of one subject, written to
    OUT/features.parquet, OUT/features.csv and the record OUT/radiomics.json."""
    from .step import StepRun

    files = StepFiles(out_dir, "radiomics")
    run = StepRun("radiomics", subject, files.record,
                  parameters=_parameters(params, convention=convention, threads=threads))
    if not images:
        raise InputError("radiomics needs at least one image", subject=subject)
    images = {m: Path(p) for m, p in images.items()}
    with run.phase("load"):
        seg_img, arrays, brain = _load_inputs(images, Path(segmentation), brain_mask and Path(brain_mask),
                                              subject=subject, what="the segmentation")
        labels = to_labels(np.asarray(seg_img.dataobj), convention, subject=subject, file=segmentation)
        regions = {region: region_mask(labels, region, convention) for region in summary_regions(convention)}
    tumour = bool(labels.any())
    if not tumour:
        log.warning("subject %s: the segmentation holds no tumour; every feature is NaN", subject)
    with run.phase("extract"):
        table, details = extract(arrays, regions, seg_img.affine, params, brain=brain, subject=subject,
                                 tumour=tumour, threads=threads, files=images)
    run.add_inputs({**images, "segmentation": segmentation, **({"brain_mask": brain_mask} if brain_mask else {})})
    with run.phase("save"):
        for suffix in (".parquet", ".csv"):
            run.save_table(suffix.lstrip("."), table, files.features(suffix))
    run.finish(**details, missing_modalities=absent(images))
    log.info("subject %s: %d features of %d regions x %d modalities in %.1f s", subject, len(table),
             len(regions), len(images), sum(run.timer.seconds.values()))
    return table


def radiomics_image(image: str | Path, mask: str | Path, out: str | Path, *, params: Params,
                    label: int | None = None, brain_mask: str | Path | None = None, modality: str = "image",
                    subject: str = "", record: str | Path | None = None, threads: int = 1) -> pd.DataFrame:
    """Features of one image inside one mask (label `label`, or every non-zero voxel), written to `out` (.csv or
    .parquet); the region is called `label<N>` or `mask`."""
    if Path(out).suffix not in (".csv", ".parquet"):
        raise InputError("the feature table is written as .csv or .parquet", file=out)
    mask_img, arrays, brain = _load_inputs({modality: Path(image)}, Path(mask), brain_mask and Path(brain_mask),
                                           subject=subject, what="the mask")
    values = np.asarray(mask_img.dataobj)
    region = f"label{label}" if label is not None else "mask"
    selected = values == label if label is not None else values != 0
    if not selected.any():
        log.warning("%s: the mask holds no voxel of %s", mask, region)
    from .step import StepRun

    run = StepRun("radiomics", subject, record, parameters=_parameters(params, label=label, threads=threads))
    with run.phase("extract"):
        table, details = extract(arrays, {region: selected}, mask_img.affine, params, brain=brain,
                                 subject=subject, threads=threads, files={modality: Path(image)})
    run.save_table("table", table, out)
    if record is not None:
        run.add_inputs({modality: image, "mask": mask, **({"brain_mask": brain_mask} if brain_mask else {})})
        run.finish(**details)
    return table


# ---------------------------------------------------------------------------------------------------------------
# The cohort.

def wide_column(row) -> str:
    """The wide table's column of a long-table row: region_modality_imagetype_class_feature (parts that do not
    apply left out), and region_volume_ml for the volume."""
    if row.feature_class == VOLUME[0]:
        return f"{row.region}_volume_ml"
    parts = (row.region, row.modality, row.image_type, row.feature_class, row.feature)
    return "_".join(str(p) for p in parts if isinstance(p, str) and p)


def wide_table(long: pd.DataFrame) -> pd.DataFrame:
    """One row per subject: `tumour` (whether the segmentation holds any), `<region>_reason` (why a region has no
    features; empty otherwise) and one column per feature, in the long table's order."""
    long = long.assign(column=[wide_column(row) for row in long.itertuples(index=False)])
    subjects = pd.unique(long["subject"])
    values = long.pivot(index="subject", columns="column", values="value")
    values = values.reindex(index=subjects, columns=pd.unique(long["column"]))
    volumes = long[long["feature_class"] == VOLUME[0]]
    reasons = volumes.pivot(index="subject", columns="region", values="reason").reindex(
        index=subjects, columns=pd.unique(volumes["region"]))
    reasons = reasons.fillna("").add_suffix("_reason")
    tumour = (volumes.pivot(index="subject", columns="region", values="value").reindex(subjects) > 0).any(axis=1)
    wide = pd.concat([tumour.rename("tumour"), reasons, values], axis=1)
    wide.index.name = "subject"
    return wide.reset_index()


def _fixed_dtypes(table: pd.DataFrame) -> pd.DataFrame:
    """One schema for every subject's table and the cohort's, also where a column is all missing. Text columns as
    pandas 3's "str" (NaN where missing), spelled so that pandas 2 does not turn a missing value into "None"."""
    text = pd.StringDtype(na_value=np.nan)
    return table.astype({column: "float64" if column == "value" else text for column in COLUMNS})


def cohort_tables(tables: list[str | Path], long_out: str | Path, wide_out: str | Path) -> pd.DataFrame:
    """Gather the subjects' feature tables into one long Parquet table and a wide CSV (one row per subject)."""
    frames = []
    for path in tables:
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"not a readable Parquet feature table ({exc})", file=path) from exc
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise InputError(f"not a bratsflow feature table: lacks column(s) {missing}", file=path)
        frames.append(frame[list(COLUMNS)])
    if not frames:
        raise InputError("no subject feature tables given")
    long = _fixed_dtypes(pd.concat(frames, ignore_index=True))
    per_subject = [set(frame["subject"]) for frame in frames]
    seen = [s for i, subjects in enumerate(per_subject) for s in subjects if any(s in o for o in per_subject[:i])]
    if seen:
        raise InputError(f"subject(s) {sorted(seen)} appear in more than one feature table")
    save_table(long, long_out)
    save_table(wide_table(long), wide_out)
    return long
