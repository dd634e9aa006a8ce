"""QC pictures: orthogonal-view montages of co-registered images with a label overlay."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .labels import get_convention  # noqa: E402

# BraTS colours by sub-region name, so both label conventions render alike.
SUBREGION_COLOURS = {"NETC": (0.9, 0.1, 0.1), "SNFH": (0.1, 0.8, 0.2), "ET": (1.0, 0.85, 0.0)}
VIEWS = ("axial", "coronal", "sagittal")


def _slice(volume: np.ndarray, view: str, index: tuple[int, int, int]) -> np.ndarray:
    # RAS voxel order assumed: show with anterior/superior up and the patient's left on the right (radiological).
    if view == "axial":
        plane = volume[:, :, index[2]]
    elif view == "coronal":
        plane = volume[:, index[1], :]
    else:
        plane = volume[index[0], :, :]
    plane = np.rot90(plane)
    return plane if view == "sagittal" else plane[:, ::-1]


def window(volume: np.ndarray) -> tuple[float, float]:
    """Display range: 0.5th–99.5th percentile of the non-zero voxels."""
    values = volume[volume > 0]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(max(high, low + 1e-6))


def _draw_outlines(ax, plane: np.ndarray, labels: dict[str, int]) -> None:
    for name, value in labels.items():
        region = plane == value
        if region.any():
            ax.contour(region.astype(np.float32), levels=[0.5], colors=[SUBREGION_COLOURS[name]],
                       linewidths=0.8)


def overlay_montage(images: dict[str, np.ndarray], labels: np.ndarray | None, out: str | Path, *,
                    convention: str = "brats2023", centre: tuple[int, int, int] | None = None,
                    title: str = "") -> Path:
    """Rows are images (same RAS grid), columns axial/coronal/sagittal through `centre` (default: the centre
    of mass of the labels, else of the grid); each sub-region outlined in its BraTS colour, so the tumour's
    own signal stays visible."""
    shape = next(iter(images.values())).shape
    if centre is None:
        if labels is not None and np.any(labels):
            centre = tuple(int(round(c)) for c in np.argwhere(labels > 0).mean(axis=0))
        else:
            centre = tuple(n // 2 for n in shape)
    conv = get_convention(convention)
    fig, axes = plt.subplots(len(images), 3, figsize=(9, 3 * len(images)), squeeze=False,
                             facecolor="black")
    for row, (name, volume) in enumerate(images.items()):
        low, high = window(volume)
        for col, view in enumerate(VIEWS):
            ax = axes[row, col]
            ax.imshow(_slice(volume, view, centre), cmap="gray", vmin=low, vmax=high, interpolation="nearest")
            if labels is not None:
                _draw_outlines(ax, _slice(labels, view, centre), conv.labels)
            ax.set_axis_off()
            if row == 0:
                ax.set_title(view, color="white")
        axes[row, 0].text(-0.02, 0.5, name, transform=axes[row, 0].transAxes, color="white", ha="right",
                          va="center", rotation=90)
    if title:
        fig.suptitle(title, color="white")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, facecolor="black")
    plt.close(fig)
    return out
