"""BraTS label sets (conventions) and tumour regions: the only place that knows label values."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, InputError


@dataclass(frozen=True)
class LabelSet:
    """A BraTS task's label map as data: each label's name and value, and the regions it is scored on (each a set
    of label names, in the order the task reports them). Label names mean the same in every set, so a map moves
    exactly between two sets that have the same names (brats2021 <-> brats2023), and not otherwise."""

    name: str
    task: str
    labels: dict[str, int]
    regions: dict[str, tuple[str, ...]]

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(self.labels.values())

    def region_labels(self, region: str) -> tuple[int, ...]:
        """Label values that make up a region of the set or a single label."""
        if region in self.regions:
            return tuple(self.labels[name] for name in self.regions[region])
        return (self.labels[region],)

    @property
    def nested(self) -> bool:
        """Whether the set is the three sub-regions of nested WT ⊃ TC ⊃ ET, which fusion and the report handle
        (they work on depths, see NESTING)."""
        return set(self.labels) == set(SUBREGIONS) and self.regions == REGION_MEMBERS

    def describe(self) -> str:
        return f"{self.name} ({self.task}: " + ", ".join(f"{v} {k}" for k, v in self.labels.items()) + ")"


# Nested regions, outermost first: WT ⊃ TC ⊃ ET.
REGION_MEMBERS: dict[str, tuple[str, ...]] = {
    "WT": ("NETC", "SNFH", "ET"),
    "TC": ("NETC", "ET"),
    "ET": ("ET",),
}
REGIONS: tuple[str, ...] = tuple(REGION_MEMBERS)
SUBREGIONS: tuple[str, ...] = ("NETC", "SNFH", "ET")

# The tasks' label sets, from the official BraTS evaluation configs (BraTS/BraTS_evaluation, configs/config_*.yaml:
# gli, mets, ped, MenPre, MenRT, GoAT) for 2024-2025 and the challenge papers for 2017-2023. The resection cavity
# (RC) lies outside the whole tumour, and paediatric NETC and CC share a depth: neither set is nested.
_POST_TREATMENT = {"NETC": 1, "SNFH": 2, "ET": 3, "RC": 4}
CONVENTIONS: dict[str, LabelSet] = {s.name: s for s in (
    LabelSet("brats2023", "BraTS 2023 adult glioma", {"NETC": 1, "SNFH": 2, "ET": 3}, REGION_MEMBERS),
    LabelSet("brats2021", "BraTS 2017-2021 glioma", {"NETC": 1, "SNFH": 2, "ET": 4}, REGION_MEMBERS),
    LabelSet("brats-men", "BraTS 2024-2025 meningioma, pre-operative", {"NETC": 1, "SNFH": 2, "ET": 3},
             REGION_MEMBERS),
    LabelSet("brats-ssa", "BraTS 2024-2025 sub-Saharan Africa glioma", {"NETC": 1, "SNFH": 2, "ET": 3},
             REGION_MEMBERS),
    LabelSet("brats-gli-post", "BraTS 2024-2025 adult glioma, pre- and post-treatment", _POST_TREATMENT,
             {**REGION_MEMBERS, "NETC": ("NETC",), "SNFH": ("SNFH",), "RC": ("RC",)}),
    LabelSet("brats-met", "BraTS 2025 brain metastases, pre- and post-treatment", _POST_TREATMENT,
             {**REGION_MEMBERS, "RC": ("RC",)}),
    LabelSet("brats-ped", "BraTS 2024-2025 paediatric tumours", {"ET": 1, "NETC": 2, "CC": 3, "ED": 4},
             {"WT": ("ET", "NETC", "CC", "ED"), "TC": ("ET", "NETC", "CC"), "ET": ("ET",), "NETC": ("NETC",),
              "CC": ("CC",), "ED": ("ED",)}),
    LabelSet("brats-men-rt", "BraTS 2024-2025 meningioma radiotherapy (T1c only)", {"GTV": 1}, {"GTV": ("GTV",)}),
)}
# The convention of label maps read and written when none is named (config `convention`).
DEFAULT_CONVENTION = "brats2023"
# The config keys whose defaults these are (tests/test_defaults.py checks config.yaml and the schema agree).
CONFIG_DEFAULTS = {"convention": DEFAULT_CONVENTION}

# What each sub-region is, for legends.
SUBREGION_NAMES: dict[str, str] = {
    "NETC": "non-enhancing tumour core",
    "SNFH": "surrounding FLAIR hyperintensity",
    "ET": "enhancing tumour",
}
BACKGROUND = "background"

# Sub-regions from the outside in. A sub-region's depth is the number of nested regions that hold it (SNFH 1,
# NETC 2, ET 3; background 0), so region R is exactly "depth >= REGION_DEPTH[R]". Fusion and the report work on
# depths; label values appear only when a map is read or written.
NESTING: tuple[str, ...] = tuple(
    sorted(SUBREGIONS, key=lambda name: sum(name in members for members in REGION_MEMBERS.values())))
REGION_DEPTH: dict[str, int] = {region: len(REGIONS) - len(members) + 1 for region, members in REGION_MEMBERS.items()}
if not all(set(REGION_MEMBERS[r]) == set(NESTING[REGION_DEPTH[r] - 1:]) for r in REGIONS):
    raise RuntimeError("REGION_MEMBERS must describe nested regions")


def get_convention(name: str) -> LabelSet:
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise InputError(f"unknown label convention {name!r}; expected one of {sorted(CONVENTIONS)}") from None


def nested_convention(name: str) -> LabelSet:
    """The label set `name`, refused unless it is nested (LabelSet.nested): fusion and the report work on depths
    and would otherwise mislabel a map."""
    found = get_convention(name)
    if not found.nested:
        nested = ", ".join(s.name for s in CONVENTIONS.values() if s.nested)
        raise ConfigError(f"label set {found.describe()} is not nested WT ⊃ TC ⊃ ET; fusion and the report handle "
                          f"only the nested sets so far ({nested})")
    return found


def require_exact_mapping(source: str, target: str, *, member: str | None = None) -> None:
    """Raise unless maps in label set `source` move exactly into `target`: the same label names (values may
    differ, as brats2021's ET 4 is brats2023's ET 3)."""
    src, dst = get_convention(source), get_convention(target)
    if set(src.labels) != set(dst.labels):
        who = f"member {member} writes" if member else "the map is in"
        raise ConfigError(f"{who} label set {src.describe()}, which has no exact mapping to the run's label set "
                          f"{dst.describe()}: use members trained on the run's task, or set `convention`")


def summary_regions(convention: str) -> tuple[str, ...]:
    """Every region a segmentation is summarised over (radiomics, volumes): the set's scored regions, then its
    labels not among them."""
    found = get_convention(convention)
    return (*found.regions, *(name for name in found.labels if name not in found.regions))


# The nested sets' summary regions: WT, TC, ET, NETC, SNFH.
SUMMARY_REGIONS: tuple[str, ...] = summary_regions(DEFAULT_CONVENTION)


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
    """Relabel a map from one label set to another, label by label (refused where no exact mapping exists)."""
    require_exact_mapping(source, target)
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
    labels = nested_convention(convention).labels
    for depth, name in enumerate(NESTING, start=1):
        lut[labels[name]] = depth
    return lut


def depth_labels(convention: str) -> np.ndarray:
    """Depth (0 … 3) -> label value of the convention, as a uint8 lookup table."""
    labels = nested_convention(convention).labels
    return np.array([0, *(labels[name] for name in NESTING)], dtype=np.uint8)


def _as_uint8(labels: np.ndarray, convention: str, *, subject: str | None, file) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype != np.uint8:
        if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
            raise InputError("label map holds non-integer values", subject=subject, file=file)
        if arr.dtype.kind not in "buif" or (arr.size and (arr.min() < 0 or arr.max() > 255)):
            check_labels(arr, convention, subject=subject, file=file)
            raise InputError(f"label map of dtype {arr.dtype} is not numeric", subject=subject, file=file)
        arr = arr.astype(np.uint8)
    return arr


def to_labels(labels: np.ndarray, convention: str, *, subject: str | None = None, file=None) -> np.ndarray:
    """A label map of any label set as uint8 values; a value outside the set is an InputError naming it."""
    arr = _as_uint8(labels, convention, subject=subject, file=file)
    check_labels(arr, convention, subject=subject, file=file)
    return arr


def to_depth(labels: np.ndarray, convention: str, *, subject: str | None = None, file=None) -> np.ndarray:
    """A label map as uint8 depths (see NESTING); a value outside the convention is an InputError naming it."""
    arr = _as_uint8(labels, convention, subject=subject, file=file)
    # Indexing keeps the map's memory order; take converted a Fortran-ordered map (as nibabel reads) twice as slowly.
    depth = depth_lut(convention)[arr]
    if depth.size and depth.max() == 255:
        check_labels(arr, convention, subject=subject, file=file)
    return depth


def from_depth(depth: np.ndarray, convention: str) -> np.ndarray:
    return depth_labels(convention).take(depth)
