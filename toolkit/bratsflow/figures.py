"""QC figures: orthogonal views through atlas-space images with outlines of labels, masks and edges. The report
step's per-subject figures (`report_figures`, paths.FIGURES) and the synthetic cohort's montage (`overlay_montage`).

Every volume is turned into RAS voxel order before it is sliced (`to_ras`), so the views look the same whatever
the atlas grid's axis order: axial and coronal views show the patient's right on the image's left (radiological
convention), anterior (axial) or superior (coronal, sagittal) up; sagittal views have anterior on the right.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.transforms import (Bbox, BboxTransformFrom, BboxTransformTo, ScaledTranslation,  # noqa: E402
                                    TransformedBbox)
from scipy import ndimage  # noqa: E402

from .labels import SUBREGION_NAMES, SUBREGIONS, region_mask  # noqa: E402
from .modalities import MODALITY_NAMES  # noqa: E402

# BraTS colours by sub-region name, so both label conventions render alike.
SUBREGION_COLOURS = {"NETC": (0.9, 0.1, 0.1), "SNFH": (0.1, 0.8, 0.2), "ET": (1.0, 0.85, 0.0)}
MASK_COLOUR = (0.0, 0.85, 1.0)
EDGE_COLOUR = (1.0, 0.2, 0.8)
DISAGREEMENT_MAP = "inferno"
# The colours the PNGs keep exactly (bratsflow.io.save_figure; the rest of the palette is greys): the outlines' and
# 32 steps of the disagreement map.
PALETTE = (*SUBREGION_COLOURS.values(), MASK_COLOUR, EDGE_COLOUR,
           *(tuple(rgba[:3]) for rgba in matplotlib.colormaps[DISAGREEMENT_MAP](np.linspace(0, 1, 32)).tolist()))
VIEWS = ("axial", "coronal", "sagittal")
# The patient's side at the left, right, top and bottom edge of each view (RAS voxel order, see `_slice`).
VIEW_SIDES = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("P", "A", "S", "I")}
CONVENTION_NOTE = "Radiological convention: the patient's right is on the image's left (axial, coronal)."
# The longest side of the cropped grid spans PANEL_IN inches: at DPI 72 about one pixel per voxel of a 1 mm
# brain, and a figure of four rows of 256 colours about 200 kB.
PANEL_IN = 2.4
DPI = 72
# Space around the panels (inches): row names on the left, the title and the views' names above.
MARGINS_IN = {"left": 0.3, "right": 0.1, "top": 0.45}
# Heights (inches) of a line of the note (6 points) and of the legend below the panels.
NOTE_LINE_IN = 0.1
LEGEND_IN = 0.24
TEXT = {"color": "white", "fontsize": 8}


def to_ras(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The array's first three axes flipped and permuted into RAS order (the closest to the affine's)."""
    return nib.orientations.apply_orientation(data, nib.orientations.io_orientation(affine))


def ras_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along the R, A and S axes of `to_ras`'s array."""
    order = nib.orientations.io_orientation(affine)[:, 0].astype(int)
    sizes = nib.affines.voxel_sizes(affine)
    spacing = [0.0, 0.0, 0.0]
    for axis, size in zip(order, sizes):
        spacing[axis] = float(size)
    return spacing[0], spacing[1], spacing[2]


def _slice(volume: np.ndarray, view: str, index: tuple[int, int, int]) -> np.ndarray:
    # RAS voxel order: rows run from anterior (axial) or superior (coronal, sagittal) down; columns from the
    # patient's right to left (axial, coronal) or posterior to anterior (sagittal).
    if view == "axial":
        plane = volume[:, :, index[2]]
    elif view == "coronal":
        plane = volume[:, index[1], :]
    else:
        plane = volume[index[0], :, :]
    plane = np.rot90(plane)
    return plane if view == "sagittal" else plane[:, ::-1]


def _plane_spacing(spacing: tuple[float, float, float], view: str) -> tuple[float, float]:
    """(row, column) voxel size of `_slice`'s plane."""
    x, y, z = spacing
    return {"axial": (y, x), "coronal": (z, x), "sagittal": (z, y)}[view]


def window(volume: np.ndarray) -> tuple[float, float]:
    """Display range: 0.5th–99.5th percentile of the non-zero voxels of every second voxel along each axis (as
    good a sample of the intensities, eight times faster on a 1 mm grid)."""
    values = volume[::2, ::2, ::2]
    values = values[values > 0]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(max(high, low + 1e-6))


def centroid(mask: np.ndarray) -> tuple[int, int, int] | None:
    """The mask's centre of mass, rounded to a voxel. From the voxel counts of each plane: the exact integer sums
    and the one division of ndimage.center_of_mass (the same value), without its float product per voxel and
    axis (0.1 s a 1 mm volume)."""
    total = int(np.count_nonzero(mask))
    if total == 0:
        return None
    centre = [int(np.dot(np.count_nonzero(mask, axis=tuple(a for a in range(3) if a != axis)),
                         np.arange(mask.shape[axis]))) / total for axis in range(3)]
    return int(round(centre[0])), int(round(centre[1])), int(round(centre[2]))


def planes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per axis, which planes of the mask hold a voxel."""
    occupied = [mask.any(axis=tuple(a for a in range(3) if a != axis)) for axis in range(3)]
    return occupied[0], occupied[1], occupied[2]


def bounding_box(occupied: tuple[np.ndarray, np.ndarray, np.ndarray], margin: tuple[int, int, int]
                 ) -> tuple[slice, slice, slice]:
    """The box around the occupied planes (`planes` of a mask), `margin` voxels wider on each side (clipped to the
    grid); the whole grid when no plane is."""
    if not occupied[0].any():
        return slice(0, len(occupied[0])), slice(0, len(occupied[1])), slice(0, len(occupied[2]))
    box = []
    for hits, extra in zip(occupied, margin):
        hit = np.flatnonzero(hits)
        box.append(slice(max(0, int(hit[0]) - extra), min(len(hits), int(hit[-1]) + 1 + extra)))
    return box[0], box[1], box[2]


@dataclass(frozen=True)
class Frame:
    """What a figure shows of a RAS grid: a box of it, and the slice of each view through `centre`."""
    box: tuple[slice, slice, slice]
    centre: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @classmethod
    def around(cls, mask: np.ndarray, centre: tuple[int, int, int] | None, spacing: tuple[float, float, float],
               margin_mm: float) -> Frame:
        """The box around `mask` with a margin, through `centre` (default: the box's centre), kept inside it."""
        return cls.spanning(planes(mask), centre, spacing, margin_mm)

    @classmethod
    def spanning(cls, occupied: tuple[np.ndarray, np.ndarray, np.ndarray], centre: tuple[int, int, int] | None,
                 spacing: tuple[float, float, float], margin_mm: float) -> Frame:
        """`around`, given the occupied planes of each axis (`planes`)."""
        box = bounding_box(occupied, tuple(int(np.ceil(margin_mm / s)) for s in spacing))
        if centre is None:
            centre = tuple((b.start + b.stop) // 2 for b in box)
        centre = tuple(min(max(c, b.start), b.stop - 1) for c, b in zip(centre, box))
        return cls(box, (centre[0], centre[1], centre[2]), spacing)

    def plane(self, volume: np.ndarray, view: str) -> np.ndarray:
        local = tuple(c - b.start for c, b in zip(self.centre, self.box))
        return _slice(volume[self.box], view, (local[0], local[1], local[2]))

    def extent_mm(self, view: str) -> tuple[float, float]:
        """(height, width) of a view's plane in mm."""
        size = [(b.stop - b.start) * s for b, s in zip(self.box, self.spacing)]
        return {"axial": (size[1], size[0]), "coronal": (size[2], size[0]), "sagittal": (size[2], size[1])}[view]

    def aspect(self, view: str) -> float:
        row_mm, col_mm = _plane_spacing(self.spacing, view)
        return row_mm / col_mm

    def shape(self, view: str) -> tuple[int, int]:
        """(rows, columns) of a view's plane."""
        size = [b.stop - b.start for b in self.box]
        return {"axial": (size[1], size[0]), "coronal": (size[2], size[0]), "sagittal": (size[2], size[1])}[view]

    def describe(self) -> str:
        return f"slices through voxel {self.centre} (RAS order)"


@dataclass(frozen=True)
class Panel:
    """One view of a figure: the rectangle (figure fraction) of the figure's one Axes where matplotlib would put an
    Axes of the view's own (its grid cell shrunk to the view's proportions, centred). One Axes per figure: an Axes
    per panel built ticks nobody sees, 0.6 s of the report's 2.5 s of figures."""
    ax: Axes
    box: Bbox

    @property
    def extent(self) -> tuple[float, float, float, float]:
        return self.box.x0, self.box.x1, self.box.y0, self.box.y1

    def imshow(self, data: np.ndarray, **kwargs) -> AxesImage:
        """An image filling the panel, its first row at the top."""
        return self.ax.imshow(data, extent=self.extent, origin="upper", aspect="auto", **kwargs)

    def contour(self, data: np.ndarray, **kwargs) -> None:
        """Contours of an image as `imshow` places it. Drawn through the transform and clipped to the box a panel
        Axes of its own would give the image's pixel coordinates: the lines, not antialiased, fall on the same
        pixels."""
        rows, cols = data.shape
        to_box = BboxTransformTo(TransformedBbox(self.box, self.ax.get_figure().transSubfigure))
        lines = self.ax.contour(data, transform=BboxTransformFrom(Bbox([[-0.5, rows - 0.5], [cols - 0.5, -0.5]]))
                                + to_box, **kwargs)
        lines.set_clip_path(Rectangle((0, 0), 1, 1, transform=to_box))

    def text(self, x: float, y: float, text: str, **kwargs) -> None:
        """Text at (x, y) in the panel's own coordinates (0 to 1 across it)."""
        self.ax.get_figure().text(self.box.x0 + x * self.box.width, self.box.y0 + y * self.box.height, text,
                                  **kwargs)


@dataclass(frozen=True)
class Layout:
    """What a figure shows around its panels: rows named on the left, the title above, and below the panels an
    optional band (`band_in` inches, for a colour bar), the legend of `handles` and `note` under it."""
    rows: list[str]
    title: str
    note: str = ""
    handles: tuple[Line2D, ...] = ()
    band_in: float = 0.0


def panels(frame: Frame, layout: Layout, panel_in: float = PANEL_IN) -> tuple[Figure, np.ndarray]:
    """A black figure of rows × 3 panels (axial, coronal, sagittal) sized to the frame's millimetres, so
    anisotropic voxels keep their true proportions; the views named above the first row and the patient's sides
    at its edges; the orientation convention and the slice position lead the note."""
    heights, widths = zip(*(frame.extent_mm(view) for view in VIEWS))
    scale = panel_in / max(*heights, *widths)
    width = scale * sum(widths) * 1.04 + MARGINS_IN["left"] + MARGINS_IN["right"]
    # About 3.8 pixels a character at 6 points.
    note = textwrap.wrap(f"{CONVENTION_NOTE} {frame.describe()}. {layout.note}".strip(), int(width * DPI / 3.8))
    note_in = 0.06 + NOTE_LINE_IN * len(note)
    bottom_in = note_in + (LEGEND_IN if layout.handles else 0.0) + layout.band_in + 0.04
    height = scale * max(heights) * 1.04 * len(layout.rows) + MARGINS_IN["top"] + bottom_in
    fig = plt.figure(figsize=(width, height), dpi=DPI, facecolor="black")
    grid = fig.add_gridspec(len(layout.rows), 3, width_ratios=widths, wspace=0.04, hspace=0.04,
                            left=MARGINS_IN["left"] / width, right=1 - MARGINS_IN["right"] / width,
                            top=1 - MARGINS_IN["top"] / height, bottom=bottom_in / height)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set(xlim=(0, 1), ylim=(0, 1), autoscale_on=False)
    # Where add_subplot and the views' aspect would put each panel's Axes (Axes.apply_aspect, adjustable "box").
    whole = Bbox.unit().transformed(fig.transSubfigure)
    axes = np.empty((len(layout.rows), 3), object)
    for (row, col), _ in np.ndenumerate(axes):
        cell = grid[row, col].get_position(fig)
        rows, cols = frame.shape(VIEWS[col])
        box = cell.shrunk_to_aspect(frame.aspect(VIEWS[col]) * (rows / cols), cell, whole.height / whole.width)
        axes[row, col] = Panel(ax, box.anchored("C", cell))
    for col, view in enumerate(VIEWS):
        # A title's place: centred above the panel, 2 points up (Axes.set_title's pad).
        top = axes[0, col].box
        fig.text((top.x0 + top.x1) / 2, top.y1, view, ha="center", va="baseline",
                 transform=fig.transFigure + ScaledTranslation(0, 2 / 72, fig.dpi_scale_trans), **TEXT)
        for side, (x, y) in zip(VIEW_SIDES[view], ((0.03, 0.5), (0.97, 0.5), (0.5, 0.97), (0.5, 0.03))):
            axes[0, col].text(x, y, side, ha="center", va="center", color="0.75", fontsize=7, zorder=5)
    for row, name in enumerate(layout.rows):
        axes[row, 0].text(-0.03, 0.5, name, ha="right", va="center", rotation=90, **TEXT)
    fig.suptitle(layout.title, y=1 - 0.08 / height, va="top", **TEXT)
    if layout.handles:
        fig.legend(handles=list(layout.handles), loc="lower center", bbox_to_anchor=(0.5, note_in / height),
                   ncol=len(layout.handles), frameon=False, fontsize=7, labelcolor="white", handlelength=1.2,
                   columnspacing=1.0, borderpad=0.1)
    fig.text(0.5, 0.04 / height, "\n".join(note), ha="center", va="bottom", color="0.75", fontsize=6)
    return fig, axes


def show(ax: Panel, frame: Frame, view: str, volume: np.ndarray, limits: tuple[float, float]) -> None:
    ax.imshow(frame.plane(volume, view), cmap="gray", vmin=limits[0], vmax=limits[1], interpolation="nearest")


def outline(ax: Panel, plane: np.ndarray, colour, width: float = 1.0) -> None:
    """The border of a 2-D mask, drawn in data coordinates of the panel's image. Not antialiased: a line about a
    pixel wide would otherwise never reach its own colour, and the PNG's palette (bratsflow.io.save_figure) would
    map the blends to unrelated colours."""
    if plane.any() and not plane.all():
        ax.contour(plane.astype(np.float32), levels=[0.5], colors=[colour], linewidths=width, antialiased=False)


def outline_labels(ax: Panel, frame: Frame, view: str, labels: np.ndarray, convention: str) -> None:
    """Each sub-region's border voxels in the plane (those with a neighbour outside it) in its BraTS colour. Drawn
    inside each sub-region, so two that touch (necrosis inside an enhancing rim) both show: a contour line between
    them would show only the one drawn last."""
    plane = frame.plane(labels, view)
    layer = np.zeros((*plane.shape, 4), np.float32)
    for name in SUBREGIONS:
        region = region_mask(plane, name, convention)
        layer[region & ~ndimage.binary_erosion(region, border_value=1)] = (*SUBREGION_COLOURS[name], 1.0)
    ax.imshow(layer, interpolation="nearest")


def label_legend() -> tuple[Line2D, ...]:
    return tuple(Line2D([], [], color=SUBREGION_COLOURS[name], lw=2, label=f"{name}: {SUBREGION_NAMES[name]}")
                 for name in SUBREGIONS)


def edges(plane: np.ndarray, share: float) -> np.ndarray:
    """Thin edges of a 2-D image: the strongest `share` of the non-zero pixels' gradient magnitudes (Gaussian
    σ 1 px, Sobel), kept where they peak across the edge (non-maximum suppression, as in Canny)."""
    smooth = ndimage.gaussian_filter(plane.astype(np.float32), 1.0)
    gy, gx = ndimage.sobel(smooth, axis=0), ndimage.sobel(smooth, axis=1)
    magnitude = np.hypot(gx, gy)
    inside = plane > 0
    if not inside.any():
        return np.zeros(plane.shape, bool)
    strong = magnitude >= np.quantile(magnitude[inside], 1 - share)
    # The gradient's direction rounded to one of four neighbour pairs (0°, 45°, 90°, 135°).
    sector = (np.round(np.arctan2(gy, gx) / (np.pi / 4)).astype(int)) % 4
    peak = np.zeros(plane.shape, bool)
    padded = np.pad(magnitude, 1)
    for direction, (dr, dc) in enumerate(((0, 1), (1, 1), (1, 0), (1, -1))):
        ahead = padded[1 + dr:1 + dr + plane.shape[0], 1 + dc:1 + dc + plane.shape[1]]
        behind = padded[1 - dr:1 - dr + plane.shape[0], 1 - dc:1 - dc + plane.shape[1]]
        peak |= (sector == direction) & (magnitude >= ahead) & (magnitude >= behind)
    return strong & peak


def paint(ax: Panel, mask: np.ndarray, colour) -> None:
    """Pixels of a 2-D mask in one colour over the panel's image."""
    layer = np.zeros((*mask.shape, 4), np.float32)
    layer[mask] = (*colour, 1.0)
    ax.imshow(layer, interpolation="nearest")


@dataclass(frozen=True)
class SubjectData:
    """One subject's atlas-space arrays for the report's figures, all on the grid of `affine` as loaded."""
    affine: np.ndarray
    stripped: Mapping[str, np.ndarray]
    coregistered: Mapping[str, np.ndarray]
    brain: np.ndarray
    atlas_brain: np.ndarray
    fused: np.ndarray
    members: Mapping[str, np.ndarray]
    disagreement: np.ndarray
    convention: str
    subject: str = ""
    # The image the others were registered to (co-registration's centre): T1c, or its fallback.
    reference: str = "t1c"

    def ras(self) -> SubjectData:
        """The same data in RAS voxel order (views of the arrays, no copies)."""
        def turn(data):
            return to_ras(np.asarray(data), self.affine)

        return SubjectData(
            np.diag([*ras_spacing(self.affine), 1.0]),
            {m: turn(v) for m, v in self.stripped.items()}, {m: turn(v) for m, v in self.coregistered.items()},
            turn(self.brain) > 0, turn(self.atlas_brain) > 0, turn(self.fused),
            {m: turn(v) for m, v in self.members.items()}, turn(self.disagreement), self.convention, self.subject,
            self.reference)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return ras_spacing(self.affine)

    # Whole-volume masks several figures use, computed once.
    @cached_property
    def tumour(self) -> np.ndarray:
        return region_mask(self.fused, "WT", self.convention)

    @cached_property
    def head(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The planes (`planes`) where any co-registered image has signal or the brain mask a voxel. From maximum
        projections (the images are finite): a third of the time of a whole-volume head mask."""
        x, y, z = planes(self.brain)
        for volume in self.coregistered.values():
            columns = volume.max(axis=2)
            x, y, z = x | (columns.max(axis=1) > 0), y | (columns.max(axis=0) > 0), z | (volume.max(axis=(0, 1)) > 0)
        return x, y, z

    @cached_property
    def brain_centre(self) -> tuple[int, int, int] | None:
        return centroid(self.brain)

    def limits(self, images: str, modality: str) -> tuple[float, float]:
        """The display range (`window`) of one of the `stripped` or `coregistered` images, computed once: the
        figures show some images twice."""
        key = (images, modality)
        if key not in self._limits:
            self._limits[key] = window(getattr(self, images)[modality])
        return self._limits[key]

    @cached_property
    def _limits(self) -> dict[tuple[str, str], tuple[float, float]]:
        return {}


@dataclass(frozen=True)
class FigureParams:
    # Margin around the brain (overview) or the head (brain mask, registration), mm.
    margin_mm: float = 4.0
    # Margin around the union of the members' tumours (members figure), mm.
    tumour_margin_mm: float = 15.0
    # The strongest share of T1c's gradient magnitudes drawn as its edges (registration figure).
    edge_share: float = 0.2
    # The members figure keeps about the size of this many rows of panels, however many members there are.
    member_rows: int = 5


def overview(data: SubjectData, params: FigureParams) -> Figure:
    """The skull-stripped modalities through the tumour's centroid (the brain's without one), fused segmentation
    outlined."""
    tumour = data.tumour
    frame = Frame.around(data.brain | tumour, centroid(tumour) or data.brain_centre, data.spacing, params.margin_mm)
    where = "tumour centroid" if tumour.any() else "brain centroid (no tumour)"
    fig, axes = panels(frame, Layout([MODALITY_NAMES[m] for m in data.stripped], f"{data.subject}: fused segmentation",
                                     f"Skull-stripped atlas-space images through the {where}.", label_legend()))
    for row, (modality, volume) in enumerate(data.stripped.items()):
        limits = data.limits("stripped", modality)
        for col, view in enumerate(VIEWS):
            show(axes[row, col], frame, view, volume, limits)
            outline_labels(axes[row, col], frame, view, data.fused, data.convention)
    return fig


def _head_frame(data: SubjectData, params: FigureParams) -> Frame:
    return Frame.spanning(data.head, data.brain_centre, data.spacing, params.margin_mm)


def brain_mask_figure(data: SubjectData, params: FigureParams) -> Figure:
    """The brain mask outlined on each co-registered (not skull-stripped) image."""
    frame = _head_frame(data, params)
    handle = Line2D([], [], color=MASK_COLOUR, lw=2, label="brain mask (skull stripping)")
    fig, axes = panels(frame, Layout([MODALITY_NAMES[m] for m in data.coregistered], f"{data.subject}: brain mask",
                                     "Co-registered atlas-space images (skull on) through the brain centroid.",
                                     (handle,)))
    for row, (modality, volume) in enumerate(data.coregistered.items()):
        limits = data.limits("coregistered", modality)
        for col, view in enumerate(VIEWS):
            show(axes[row, col], frame, view, volume, limits)
            outline(axes[row, col], frame.plane(data.brain, view), MASK_COLOUR)
    return fig


def registration_figure(data: SubjectData, params: FigureParams) -> Figure:
    """The reference's (T1c's) edges over each other co-registered modality, and the atlas brain outlined on it."""
    frame = _head_frame(data, params)
    name = MODALITY_NAMES[data.reference]
    others = [m for m in data.coregistered if m != data.reference]
    handles = (Line2D([], [], color=EDGE_COLOUR, lw=2, label=f"{name} edges"),
               Line2D([], [], color=MASK_COLOUR, lw=2, label="atlas brain"))
    fig, axes = panels(frame, Layout([f"{MODALITY_NAMES[m]} + {name} edges" for m in others] + [f"{name} + atlas brain"],
                                     f"{data.subject}: co-registration", f"Co-registered atlas-space images; {name}'s "
                                     "edges should follow the same anatomy in every row.", handles))
    reference_image = data.coregistered[data.reference]
    for row, modality in enumerate(others):
        volume = data.coregistered[modality]
        limits = data.limits("coregistered", modality)
        for col, view in enumerate(VIEWS):
            show(axes[row, col], frame, view, volume, limits)
            paint(axes[row, col], edges(frame.plane(reference_image, view), params.edge_share), EDGE_COLOUR)
    limits = data.limits("coregistered", data.reference)
    for col, view in enumerate(VIEWS):
        show(axes[-1, col], frame, view, reference_image, limits)
        outline(axes[-1, col], frame.plane(data.atlas_brain, view), MASK_COLOUR)
    return fig


def members_figure(data: SubjectData, params: FigureParams) -> Figure:
    """Each member's segmentation, the fused one and the disagreement map on skull-stripped T1c, zoomed on the
    tumours."""
    tumours = data.tumour.copy()
    for labels in data.members.values():
        tumours |= region_mask(labels, "WT", data.convention)
    centre = centroid(data.tumour) or centroid(tumours) or data.brain_centre
    frame = Frame.around(tumours if tumours.any() else data.brain, centre, data.spacing,
                         params.tumour_margin_mm if tumours.any() else params.margin_mm)
    maps = {**data.members, "fused": data.fused}
    layout = Layout([*maps, "disagreement"], f"{data.subject}: ensemble members",
                    f"Skull-stripped {MODALITY_NAMES[data.reference]}. Disagreement: the largest entropy of the members' votes on WT, TC and ET "
                    "(0 unanimous, 1 bit split evenly).", label_legend(), band_in=0.4)
    fig, axes = panels(frame, layout, PANEL_IN * min(1.0, params.member_rows / len(layout.rows)))
    reference_image = data.stripped[data.reference]
    limits = data.limits("stripped", data.reference)
    for row, labels in enumerate(maps.values()):
        for col, view in enumerate(VIEWS):
            show(axes[row, col], frame, view, reference_image, limits)
            outline_labels(axes[row, col], frame, view, labels, data.convention)
    for col, view in enumerate(VIEWS):
        show(axes[-1, col], frame, view, reference_image, limits)
        plane = frame.plane(data.disagreement, view)
        shown = axes[-1, col].imshow(np.ma.masked_less_equal(plane, 0), cmap=DISAGREEMENT_MAP, vmin=0, vmax=1,
                                     interpolation="nearest")
    # The colour bar in the band between the panels and the legend.
    height = fig.get_figheight()
    bar = fig.add_axes((0.35, axes[-1, 0].box.y0 - 0.3 / height, 0.3, 0.08 / height))
    fig.colorbar(shown, cax=bar, orientation="horizontal", ticks=[0, 0.5, 1])
    bar.tick_params(labelsize=6, colors="white", length=2, pad=1)
    bar.set_title("disagreement (bits)", fontsize=6, color="white", pad=1)
    return fig


# Each report figure's name (paths.FIGURES) and how it is drawn.
DRAW = {"overview": overview, "brain_mask": brain_mask_figure, "registration": registration_figure,
        "members": members_figure}


def report_figures(data: SubjectData, params: FigureParams = FigureParams()) -> Iterator[tuple[str, Figure]]:
    """The report's figures one at a time (each closed once the caller has it saved)."""
    data = data.ras()
    for name, draw in DRAW.items():
        fig = draw(data, params)
        try:
            yield name, fig
        finally:
            plt.close(fig)


def overlay_montage(images: dict[str, np.ndarray], labels: np.ndarray | None, out: str | Path, *,
                    convention: str = "brats2023", affine: np.ndarray | None = None, title: str = "") -> Path:
    """Rows are images (one grid, of `affine`; default identity), columns axial/coronal/sagittal through the
    labels' centre of mass (else the grid's centre); each sub-region outlined in its BraTS colour, so the tumour's
    own signal stays visible."""
    from .io import save_figure

    affine = np.eye(4) if affine is None else affine
    images = {name: to_ras(volume, affine) for name, volume in images.items()}
    labels = None if labels is None else to_ras(labels, affine)
    shape = next(iter(images.values())).shape
    tumour = np.zeros(shape, bool) if labels is None else labels > 0
    frame = Frame.around(np.ones(shape, bool), centroid(tumour), ras_spacing(affine), 0.0)
    fig, axes = panels(frame, Layout(list(images), title, handles=label_legend() if labels is not None else ()))
    for row, volume in enumerate(images.values()):
        limits = window(volume)
        for col, view in enumerate(VIEWS):
            show(axes[row, col], frame, view, volume, limits)
            if labels is not None:
                outline_labels(axes[row, col], frame, view, labels, convention)
    try:
        return save_figure(fig, out, PALETTE)
    finally:
        plt.close(fig)
