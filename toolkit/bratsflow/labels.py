"""BraTS label conventions and tumour regions: the only place that knows label values."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Convention:
    name: str
    # sub-region name -> label value
    labels: dict[str, int]

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(self.labels.values())

    def region_labels(self, region: str) -> tuple[int, ...]:
        """Label values that make up a nested region (WT, TC, ET) or a single sub-region."""
        if region in REGION_MEMBERS:
            return tuple(self.labels[name] for name in REGION_MEMBERS[region])
        return (self.labels[region],)


# The same three sub-regions under both conventions; only the enhancing label moved from 4 to 3 in 2023.
CONVENTIONS: dict[str, Convention] = {
    "brats2023": Convention("brats2023", {"NETC": 1, "SNFH": 2, "ET": 3}),
    "brats2021": Convention("brats2021", {"NETC": 1, "SNFH": 2, "ET": 4}),
}
# The convention of label maps read and written when none is named (config `convention`).
DEFAULT_CONVENTION = "brats2023"
# The config keys whose defaults these are (tests/test_defaults.py checks config.yaml and the schema agree).
CONFIG_DEFAULTS = {"convention": DEFAULT_CONVENTION}

# Nested regions, outermost first: WT ⊃ TC ⊃ ET.
REGION_MEMBERS: dict[str, tuple[str, ...]] = {
    "WT": ("NETC", "SNFH", "ET"),
    "TC": ("NETC", "ET"),
    "ET": ("ET",),
}
REGIONS: tuple[str, ...] = tuple(REGION_MEMBERS)
SUBREGIONS: tuple[str, ...] = ("NETC", "SNFH", "ET")
# What each sub-region is, for legends.
SUBREGION_NAMES: dict[str, str] = {
    "NETC": "non-enhancing tumour core",
    "SNFH": "surrounding FLAIR hyperintensity",
    "ET": "enhancing tumour",
}
BACKGROUND = "background"
# Every region a tumour is summarised over (radiomics): the nested regions, then the sub-regions not among them.
SUMMARY_REGIONS: tuple[str, ...] = (*REGIONS, *(name for name in SUBREGIONS if name not in REGIONS))

# Sub-regions from the outside in. A sub-region's depth is the number of nested regions that hold it (SNFH 1,
# NETC 2, ET 3; background 0), so region R is exactly "depth >= REGION_DEPTH[R]". Fusion and metrics work on
# depths; label values appear only when a map is read or written.
NESTING: tuple[str, ...] = tuple(
    sorted(SUBREGIONS, key=lambda name: sum(name in members for members in REGION_MEMBERS.values())))
REGION_DEPTH: dict[str, int] = {region: len(REGIONS) - len(members) + 1 for region, members in REGION_MEMBERS.items()}
if not all(set(REGION_MEMBERS[r]) == set(NESTING[REGION_DEPTH[r] - 1:]) for r in REGIONS):
    raise RuntimeError("REGION_MEMBERS must describe nested regions")


def get_convention(name: str) -> Convention:
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise InputError(f"unknown label convention {name!r}; expected one of {sorted(CONVENTIONS)}") from None


def check_labels(labels: np.ndarray, convention: str, *, subject: str | None = None, file=None) -> None:
    """Raise if the map holds a value that is neither background nor a label of the convention."""
    allowed = {0, *get_convention(convention).values}
    present = set(np.unique(labels).tolist())
    unexpected = sorted(present - allowed)
    if unexpected:
        raise InputError(
            f"label values {unexpected} are not part of convention {convention} (allowed {sorted(allowed)})",
            subject=subject, file=file)


def region_mask(labels: np.ndarray, region: str, convention: str) -> np.ndarray:
    return np.isin(labels, get_convention(convention).region_labels(region))


def convert(labels: np.ndarray, source: str, target: str) -> np.ndarray:
    """Relabel a map from one convention to another, sub-region by sub-region."""
    check_labels(labels, source)
    src, dst = get_convention(source), get_convention(target)
    out = np.zeros(labels.shape, dtype=np.uint8)
    for name, value in src.labels.items():
        out[labels == value] = dst.labels[name]
    return out


def depth_lut(convention: str) -> np.ndarray:
    """Lookup table (256 entries): label value -> depth (0 background … 3 ET); 255 marks values outside the
    convention."""
    lut = np.full(256, 255, dtype=np.uint8)
    lut[0] = 0
    labels = get_convention(convention).labels
    for depth, name in enumerate(NESTING, start=1):
        lut[labels[name]] = depth
    return lut


def depth_labels(convention: str) -> np.ndarray:
    """Depth (0 … 3) -> label value of the convention, as a uint8 lookup table."""
    labels = get_convention(convention).labels
    return np.array([0, *(labels[name] for name in NESTING)], dtype=np.uint8)


def to_depth(labels: np.ndarray, convention: str, *, subject: str | None = None, file=None) -> np.ndarray:
    """A label map as uint8 depths (see NESTING); a value outside the convention is an InputError naming it."""
    arr = np.asarray(labels)
    if arr.dtype != np.uint8:
        if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
            raise InputError("label map holds non-integer values", subject=subject, file=file)
        if arr.dtype.kind not in "buif" or (arr.size and (arr.min() < 0 or arr.max() > 255)):
            check_labels(arr, convention, subject=subject, file=file)
            raise InputError(f"label map of dtype {arr.dtype} is not numeric", subject=subject, file=file)
        arr = arr.astype(np.uint8)
    # Indexing keeps the map's memory order; take converted a Fortran-ordered map (as nibabel reads) twice as slowly.
    depth = depth_lut(convention)[arr]
    if depth.size and depth.max() == 255:
        check_labels(arr, convention, subject=subject, file=file)
    return depth


def from_depth(depth: np.ndarray, convention: str) -> np.ndarray:
    return depth_labels(convention).take(depth)
