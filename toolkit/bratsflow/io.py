"""The one place that reads and writes images and hashes files.

Images stay nibabel objects with an explicit affine (RAS+ world, millimetres); conversions to other toolkits
live here too when steps need them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .errors import BratsflowError, ConfigError, InputError, OutputError
from .labels import BACKGROUND, REGIONS, SUBREGIONS

NIFTI_SUFFIXES = (".nii", ".nii.gz")
AXIS_OF_CODE = {"R": "x", "L": "x", "A": "y", "P": "y", "S": "z", "I": "z"}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, destination: Path, offline_advice: str) -> str:
    """Stream `url` into `destination` and return its SHA-256; offline, fail with `offline_advice`."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise InputError(
            f"cannot download ({getattr(exc, 'reason', exc)}); without a network, download the file elsewhere "
            f"and {offline_advice}", file=url) from None
    return digest.hexdigest()


def is_nifti(path: str | Path) -> bool:
    return str(path).endswith(NIFTI_SUFFIXES)


def load_image(path: str | Path, *, subject: str | None = None, modality: str | None = None) -> nib.Nifti1Image:
    """Read a NIfTI file fully (so truncation shows here, not later) and return it as a Nifti1Image."""
    path = Path(path)
    where = dict(subject=subject, modality=modality, file=path)
    if not path.exists():
        raise InputError("file does not exist", **where)
    if path.is_dir():
        raise InputError("is a folder, expected a NIfTI file (.nii or .nii.gz)", **where)
    if not is_nifti(path):
        raise InputError("not a NIfTI file name (expected .nii or .nii.gz)", **where)
    try:
        img = nib.load(path)
        if path.name.endswith(".gz"):
            img = _inflated(img, path)
        data = np.asanyarray(img.dataobj)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(f"corrupt or truncated gzip stream ({_one_line(exc)})", **where) from exc
    except nib.filebasedimages.ImageFileError as exc:
        raise InputError(f"not a readable NIfTI image ({_one_line(exc)})", **where) from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read image data ({_one_line(exc)})", **where) from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"unsupported image type {type(img).__name__}", **where)
    zero_axes = _raw_zero_spacing_axes(path, type(img.header))
    if zero_axes:
        # nibabel silently turns a zero pixdim into 1 mm; a wrong scale is worse than a refusal.
        raise InputError(f"voxel spacing is 0 in the header (pixdim) along axis {zero_axes}", **where)
    disagreement = _qform_sform_disagreement(img.header)
    if disagreement:
        raise InputError(disagreement, **where)
    return nib.Nifti1Image(data, img.affine, img.header)


def _qform_sform_disagreement(header) -> str | None:
    """Both orientation matrices set but pointing the axes differently: nibabel reads the sform, other tools
    (ITK, FSL in some versions) the qform, so the image would be flipped or rotated depending on the reader."""
    qform, qform_code = header.get_qform(coded=True)
    sform, sform_code = header.get_sform(coded=True)
    if not (qform_code and sform_code):
        return None
    q, s = "".join(nib.aff2axcodes(qform)), "".join(nib.aff2axcodes(sform))
    if q == s:
        return None
    return (f"the header's qform ({q}) and sform ({s}) disagree on the orientation, so tools would read the image "
            f"with different axes; fix the header (e.g. copy the correct one onto the other) before running")


def _one_line(exc: Exception) -> str:
    # nibabel's messages can span lines; an error is one line in a job's log.
    return " ".join(str(exc).split())


# Deflate expands data at most ~1032-fold: a bound on the size a gzip trailer may claim.
_DEFLATE_MAX_RATIO = 1032


def _inflated(img: nib.Nifti1Image, path: Path) -> nib.Nifti1Image:
    """The image of a .nii.gz file with its data decompressed in one zlib call: given the size from the gzip
    trailer as its buffer, zlib inflates a label map 3-4x faster than nibabel's chunked reads. zlib stops after
    the first gzip member; a file of concatenated members whose first one does not hold the whole image is
    decompressed by gzip, which joins them."""
    compressed = path.read_bytes()
    size = min(int.from_bytes(compressed[-4:], "little"), _DEFLATE_MAX_RATIO * len(compressed))
    raw = zlib.decompress(compressed, wbits=31, bufsize=max(size, 1))
    proxy = img.dataobj
    if len(raw) < proxy.offset + proxy.dtype.itemsize * int(np.prod(proxy.shape)):
        raw = gzip.decompress(compressed)
    holder = nib.FileHolder(fileobj=io.BytesIO(raw))
    return type(img).from_file_map({"header": holder, "image": holder})


def _raw_zero_spacing_axes(path: Path, header_class) -> list[int]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = header_class.from_fileobj(handle, check=False)
    ndim = int(raw["dim"][0])
    return [axis for axis in range(min(ndim, 3)) if raw["pixdim"][axis + 1] == 0]


def check_image(img: nib.Nifti1Image, *, spacing_range_mm: tuple[float, float] | None = (0.2, 8.0),
                subject: str | None = None, modality: str | None = None,
                file: str | Path | None = None) -> nib.Nifti1Image:
    """Validate a structural image and return it as a 3-D image (a trailing singleton 4th axis is dropped).

    Rejects: images that are not 3-D, tiny axes (a 2-D slice stored as 3-D), non-finite voxels, images with no
    signal (all zero or constant), a singular affine, and voxel spacings outside `spacing_range_mm` (when given).
    """
    where = dict(subject=subject, modality=modality, file=file)
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"expected a 3-D image, got {data.ndim}-D with shape {tuple(data.shape)}", **where)
    if min(data.shape) < 2:
        raise InputError(f"a 2-D image (shape {tuple(data.shape)}): every axis needs at least 2 voxels", **where)
    if np.issubdtype(data.dtype, np.floating) or np.iscomplexobj(data):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise InputError(f"{bad} voxels are NaN or infinite", **where)
    if not np.any(data):
        raise InputError("all voxels are zero (empty image)", **where)
    if np.ptp(data) == 0:
        raise InputError(f"constant image (every voxel is {data.flat[0]})", **where)
    affine = img.affine
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError("the affine (qform/sform) is singular or not finite", **where)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    low, high = spacing_range_mm or (0.0, np.inf)
    if np.any(spacing <= low) or np.any(spacing > high):
        shown = "×".join(f"{s:g}" for s in spacing)
        raise InputError(f"implausible voxel spacing {shown} mm (allowed {low:g}–{high:g} mm per axis)", **where)
    return nib.Nifti1Image(data, affine, img.header)


def axcodes(img: nib.Nifti1Image) -> str:
    return "".join(nib.aff2axcodes(img.affine))


def spacing(img: nib.Nifti1Image) -> tuple[float, ...]:
    return tuple(float(s) for s in np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0)))


def reorient(img: nib.Nifti1Image, codes: str = "RAS") -> nib.Nifti1Image:
    """Permute/flip axes (no resampling) so that the voxel axes point along `codes`; world coordinates are kept."""
    if sorted(AXIS_OF_CODE.get(c, "?") for c in codes) != ["x", "y", "z"]:
        raise ConfigError(f"orientation {codes!r} is not three axis codes, one each of R/L, A/P and S/I")
    current = nib.orientations.io_orientation(img.affine)
    target = nib.orientations.axcodes2ornt(tuple(codes))
    return img.as_reoriented(nib.orientations.ornt_transform(current, target))


def _atomic_target(path: Path) -> Path:
    # Writers pick the format from the suffix, so the temporary name keeps the final suffixes; the leading dot
    # keeps a leftover of a killed process out of listings and out of the results manifest.
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix
    stem = path.name[: -len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.tmp{os.getpid()}{suffix}")


@contextmanager
def atomic_write(path: str | Path):
    """Yield a temporary path beside `path` to write to, then rename it onto `path`.

    A crash, a kill or a full disk never leaves a half-written file under the final name, and an earlier file of
    that name stays as it was when the write fails (reported as an OutputError naming the file).
    """
    path = Path(path)
    tmp = _atomic_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write the file ({exc.strerror or exc}); an earlier file of this name, if any, "
                          f"is unchanged", file=path) from exc
    finally:
        tmp.unlink(missing_ok=True)


def save_image(img: nib.Nifti1Image, path: str | Path) -> Path:
    path = Path(path)
    with atomic_write(path) as tmp:
        nib.save(img, tmp)
    return path


def save_figure(figure: "matplotlib.figure.Figure", path: str | Path,
                colours: Sequence[tuple[float, float, float]] = ()) -> Path:
    """A matplotlib figure as a PNG of 256 colours, atomically: `colours` (RGB, 0–1) exactly, the rest of the
    palette greys, each pixel its nearest palette colour. Grey images under a few outline colours need no more,
    the file is a third of an RGB one, and no colour is guessed from the pixels (an adaptive palette merges a
    thin red outline into orange). Pillow writes no text chunks (matplotlib would write its version): the same
    figure gives the same bytes."""
    from PIL import Image

    exact = [tuple(round(255 * c) for c in colour) for colour in colours]
    greys = [(v, v, v) for v in np.linspace(0, 255, 256 - len(exact)).round().astype(int).tolist()]
    palette = Image.new("P", (1, 1))
    palette.putpalette([value for colour in (*exact, *greys) for value in colour])
    figure.canvas.draw()
    rgb = Image.fromarray(np.asarray(figure.canvas.buffer_rgba())[..., :3])
    path = Path(path)
    with atomic_write(path) as tmp:
        rgb.quantize(palette=palette, dither=Image.Dither.NONE).save(tmp, format="PNG")
    return path


def save_table(table: "pd.DataFrame", path: str | Path) -> Path:
    """A table as TSV, CSV or Parquet (by suffix), atomically; no index column, so reruns give identical bytes."""
    path = Path(path)
    with atomic_write(path) as tmp:
        if path.suffix == ".parquet":
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, sep="," if path.suffix == ".csv" else "\t", index=False)
    return path


def label_data(item: "str | Path | nib.spatialimages.SpatialImage | np.ndarray", *, subject: str | None = None
               ) -> tuple[np.ndarray, nib.spatialimages.SpatialImage | None, str | None]:
    """A label map given as a path, an image or an array: its voxels (a trailing axis of length 1 dropped), the
    image (None for an array) and its file (None when it has none)."""
    file = str(item) if isinstance(item, (str, Path)) else None
    if file is not None:
        item = load_image(file, subject=subject)
    if not isinstance(item, nib.spatialimages.SpatialImage):
        return np.asarray(item), None, None
    data = np.asanyarray(item.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return data, item, file or item.get_filename()


def label_image(labels: np.ndarray, affine: np.ndarray, *, aligned_to_atlas: bool = False) -> nib.Nifti1Image:
    """Label maps are always uint8; `aligned_to_atlas` marks the header's sform/qform code accordingly."""
    img = nib.Nifti1Image(np.asarray(labels, dtype=np.uint8), affine)
    img.header.set_data_dtype(np.uint8)
    img.header.set_xyzt_units("mm")
    code = 2 if aligned_to_atlas else 1
    img.set_sform(affine, code=code)
    img.set_qform(affine, code=code)
    return img


def label_image_like(labels: np.ndarray, reference: nib.Nifti1Image) -> nib.Nifti1Image:
    """A uint8 label map on the reference's grid, keeping its affine and its sform/qform codes."""
    header = reference.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(None, None)
    img = nib.Nifti1Image(np.asarray(labels, dtype=np.uint8), reference.affine, header)
    sform, sform_code = reference.get_sform(coded=True)
    qform, qform_code = reference.get_qform(coded=True)
    img.set_sform(reference.affine if sform is None else sform, code=int(sform_code) or 1)
    img.set_qform(reference.affine if qform is None else qform, code=int(qform_code) or 1)
    return img


# Probability maps of one ensemble member: `<member>_probabilities.npz`, one float16 array per key, each of the
# member label map's shape and voxel order. Region models store their sigmoid outputs under WT, TC, ET; label
# models their softmax under background, NETC, SNFH, ET (names, not values, so the file is convention-free).
REGION_PROBABILITY_KEYS: tuple[str, ...] = REGIONS
LABEL_PROBABILITY_KEYS: tuple[str, ...] = (BACKGROUND, *SUBREGIONS)


def probability_kind(keys) -> str:
    """'regions' or 'labels' from a probability file's keys; anything else is not a probability file."""
    keys = set(keys)
    if keys == set(REGION_PROBABILITY_KEYS):
        return "regions"
    if keys == set(LABEL_PROBABILITY_KEYS):
        return "labels"
    raise InputError(f"probability keys {sorted(keys)} are neither {list(REGION_PROBABILITY_KEYS)} (region model) "
                     f"nor {list(LABEL_PROBABILITY_KEYS)} (label model)")


def check_probabilities(probabilities: dict[str, np.ndarray], *, subject: str | None = None,
                        file: str | Path | None = None) -> dict[str, np.ndarray]:
    """Validate a member's probability maps (keys, one shared 3-D shape, finite values in [0, 1])."""
    try:
        probability_kind(probabilities)
    except InputError as exc:
        raise InputError(exc.reason, subject=subject, file=file) from None
    shapes = {key: np.shape(value) for key, value in probabilities.items()}
    if len(set(shapes.values())) != 1:
        raise InputError(f"probability maps differ in shape: {shapes}", subject=subject, file=file)
    for key, value in probabilities.items():
        value = np.asarray(value)
        if value.dtype.kind != "f":
            raise InputError(f"probability map {key} has dtype {value.dtype}, expected floating point",
                             subject=subject, file=file)
        if value.size and not _in_unit_interval(value):
            raise InputError(f"probability map {key} holds values outside [0, 1] or non-finite values",
                             subject=subject, file=file)
    return probabilities


def _in_unit_interval(value: np.ndarray) -> bool:
    """All values finite and within [0, 1]. Fast path: the bit patterns of non-negative floats up to 1.0 are
    exactly the unsigned integers up to that of 1.0 (negative values, NaN and infinity all lie above it)."""
    unsigned = {2: np.uint16, 4: np.uint32, 8: np.uint64}.get(value.dtype.itemsize)
    if unsigned is not None and value.dtype.kind == "f":
        one = np.array(1.0, dtype=value.dtype).view(unsigned)
        if value.view(unsigned).max() <= one:
            return True
    return bool(np.isfinite(value).all() and value.min() >= 0 and value.max() <= 1)


def save_probabilities(probabilities: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write a member's probability maps as float16 arrays in one compressed .npz, atomically."""
    path = Path(path)
    if not path.name.endswith(".npz"):
        raise InputError("probability files end in .npz", file=path)
    check_probabilities(probabilities, file=path)
    with atomic_write(path) as tmp:
        np.savez_compressed(tmp, **{key: np.asarray(value, dtype=np.float16) for key, value in probabilities.items()})
    return path


def load_probabilities(path: str | Path, *, subject: str | None = None) -> dict[str, np.ndarray]:
    """Read and validate a member's probability file (see `save_probabilities`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("probability file does not exist", subject=subject, file=path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            probabilities = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zlib.error, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"not a readable .npz probability file ({exc})", subject=subject, file=path) from exc
    return check_probabilities(probabilities, subject=subject, file=path)


def save_dicom(dataset: "pydicom.Dataset", path: str | Path) -> Path:
    """A DICOM Part 10 file (preamble and file meta): what a PACS accepts."""
    path = Path(path)
    with atomic_write(path) as tmp:
        dataset.save_as(tmp, enforce_file_format=True)
    return path


def save_json(obj: Any, path: str | Path) -> Path:
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# NIfTI world coordinates are RAS+, ITK/ANTs physical coordinates LPS+: x and y change sign.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


# Two grids closer than this (affine entries, mm) are one grid.
GRID_TOLERANCE_MM = 1e-3


def grid_mismatch(img: nib.Nifti1Image, reference: nib.Nifti1Image) -> str | None:
    """How `img`'s voxel grid differs from `reference`'s (None when they are one grid)."""
    if img.shape[:3] != reference.shape[:3]:
        return f"shape {tuple(img.shape[:3])} vs {tuple(reference.shape[:3])}"
    difference = float(np.max(np.abs(img.affine - reference.affine)))
    if difference > GRID_TOLERANCE_MM:
        return (f"the affines differ by up to {difference:.3g} mm (tolerance {GRID_TOLERANCE_MM:g} mm)"
                f"{lost_header_hint(img) or lost_header_hint(reference)}")
    return None


def same_grid(a: nib.Nifti1Image, b: nib.Nifti1Image) -> bool:
    return grid_mismatch(a, b) is None


def require_same_grid(img: nib.Nifti1Image, reference: nib.Nifti1Image, what: str, *, why: str = "",
                      error: type[BratsflowError] = InputError, **where) -> None:
    """Refuse `img` unless it lies on `reference`'s grid. what: the grid it must match ("the atlas grid of
    mni152"); why: what needs them on one grid; where: subject, modality, file of the message."""
    mismatch = grid_mismatch(img, reference)
    if mismatch:
        raise error(f"not on {what} ({mismatch})" + (f": {why}" if why else ""), **where)


def lost_header_hint(img: nib.Nifti1Image) -> str:
    """A hint when an image's affine is the identity: what a tool leaves when it drops the original header (e.g.
    a label map saved from a bare array), so the image sits at the world origin with 1 mm voxels and does not
    overlap the scan it was made from."""
    if np.allclose(img.affine, np.eye(4)):
        return (" — its affine is the identity (1 mm voxels at the world origin), as when a tool dropped the "
                "original header; copy the header of the image it was made from")
    return ""


def to_ants(img: nib.Nifti1Image, dtype=np.float32):
    """A nibabel image as an ANTsImage with the same voxels and world geometry."""
    import ants

    affine = img.affine
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    direction = _RAS_TO_LPS @ (affine[:3, :3] / spacing)
    origin = _RAS_TO_LPS @ affine[:3, 3]
    return ants.from_numpy(np.asarray(img.dataobj, dtype=dtype), origin=tuple(origin.tolist()),
                           spacing=tuple(spacing.tolist()), direction=direction)


def from_ants(image, dtype=np.float32) -> nib.Nifti1Image:
    """An ANTsImage as a nibabel image (RAS+ affine), voxel data cast to `dtype`."""
    spacing = np.asarray(image.spacing, dtype=float)
    affine = np.eye(4)
    affine[:3, :3] = _RAS_TO_LPS @ np.asarray(image.direction, dtype=float) @ np.diag(spacing)
    affine[:3, 3] = _RAS_TO_LPS @ np.asarray(image.origin, dtype=float)
    out = nib.Nifti1Image(image.numpy().astype(dtype), affine)
    out.header.set_xyzt_units("mm")
    return out


def to_sitk(data: np.ndarray, affine: np.ndarray):
    """Voxels in nibabel order with a RAS+ affine as a SimpleITK image with the same world geometry."""
    import SimpleITK as sitk

    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data).transpose(2, 1, 0)))
    image.SetSpacing(tuple(spacing.tolist()))
    image.SetOrigin(tuple((_RAS_TO_LPS @ affine[:3, 3]).tolist()))
    image.SetDirection(tuple((_RAS_TO_LPS @ (affine[:3, :3] / spacing)).ravel().tolist()))
    return image
