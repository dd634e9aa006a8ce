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

# Nested regions, outermost first: WT ⊃ TC ⊃ ET.
REGION_MEMBERS: dict[str, tuple[str, ...]] = {
    "WT": ("NETC", "SNFH", "ET"),
    "TC": ("NETC", "ET"),
    "ET": ("ET",),
}
REGIONS: tuple[str, ...] = tuple(REGION_MEMBERS)
SUBREGIONS: tuple[str, ...] = ("NETC", "SNFH", "ET")


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
