"""The report step's QC figures: written through the step contract, small, reproducible, oriented as they say."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bratsflow import figures
from bratsflow.cli import main
from bratsflow.io import label_image, save_image, sha256_file
from bratsflow.labels import get_convention
from bratsflow.modalities import MODALITIES
from bratsflow.paths import FIGURES, StepFiles
from bratsflow.qc import ReportImages, report_subject

# LPS voxel order with 2 × 2 × 3 mm voxels: the figures must turn it to RAS and keep the slices' proportions.
AFFINE = np.array([[-2.0, 0, 0, 40], [0, -2.0, 0, 40], [0, 0, 3.0, -30], [0, 0, 0, 1]])
SHAPE = (40, 40, 24)
LABELS = get_convention("brats2023").labels


def _ellipsoid(radii_mm: tuple[float, float, float]) -> np.ndarray:
    grid = np.indices(SHAPE).astype(float)
    centre = (np.array(SHAPE) - 1) / 2
    spacing = np.abs(np.diag(AFFINE)[:3])
    return sum(((g - c) * s / r) ** 2 for g, c, s, r in zip(grid, centre, spacing, radii_mm)) <= 1


@pytest.fixture
def subject(tmp_path):
    """A head (brain in a skull shell), a tumour on the patient's right (low voxel x: the x axis runs to the
    left), two members and an atlas brain on the same grid."""
    rng = np.random.default_rng(0)
    brain = _ellipsoid((30, 34, 28))
    head = _ellipsoid((36, 38, 34))
    fused = np.zeros(SHAPE, np.uint8)
    fused[8:16, 16:24, 9:15] = LABELS["SNFH"]
    fused[10:14, 18:22, 10:14] = LABELS["NETC"]
    fused[11:13, 19:21, 11:13] = LABELS["ET"]
    files = {"stripped": {}, "coregistered": {}}
    for i, modality in enumerate(MODALITIES):
        image = np.where(head, 300.0, 0.0) + np.where(brain, 400.0 + 100 * i, 0.0) + 200.0 * (fused > 0)
        image = (image + rng.normal(0, 10, SHAPE) * head).astype(np.float32)
        files["coregistered"][modality] = save_image(_float_image(image), tmp_path / "coregister" / f"{modality}.nii.gz")
        files["stripped"][modality] = save_image(_float_image(np.where(brain, image, 0)),
                                                 tmp_path / "skullstrip" / f"{modality}.nii.gz")
    members = {"a": fused, "b": np.roll(fused, 1, axis=1)}
    member_files = {name: save_image(label_image(data, AFFINE), tmp_path / f"{name}.nii.gz")
                    for name, data in members.items()}
    atlas = save_image(_float_image(np.where(brain, 100.0, 0.0)), tmp_path / "atlas.nii.gz")
    atlas_mask = save_image(label_image(_ellipsoid((29, 33, 27)).astype(np.uint8), AFFINE), tmp_path / "atlas_mask.nii.gz")
    return {"fused": member_files["a"], "members": member_files,
            "brain": save_image(label_image(brain.astype(np.uint8), AFFINE), tmp_path / "brain.nii.gz"),
            "images": ReportImages(files["stripped"], files["coregistered"], atlas=str(atlas),
                                   atlas_mask=str(atlas_mask)),
            "tmp": tmp_path}


def _float_image(data: np.ndarray):
    import nibabel as nib

    return nib.Nifti1Image(data.astype(np.float32), AFFINE)


def _run(subject, out):
    return report_subject(subject["fused"], subject["members"], subject["brain"], out, images=subject["images"],
                          subject="s1")


def _has_colour(png, colour, at_least: int = 5) -> bool:
    """Whether the panels (the top 85 % of the figure, above the legend) show `colour`."""
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    pixels = pixels[: int(0.85 * len(pixels))]
    return int((np.abs(pixels - np.round(255 * np.array(colour))).max(axis=-1) <= 1).sum()) >= at_least


def test_figures_are_written_small_recorded_and_reproducible(subject):
    out = subject["tmp"] / "report"
    record = _run(subject, out)
    rerun = _run(subject, subject["tmp"] / "rerun")
    files = StepFiles(out, "report")
    for name in FIGURES:
        png = files.figure(name)
        assert 1000 < png.stat().st_size < 300_000, name
        assert Image.open(png).format == "PNG"
        assert record["outputs"][name] == {"path": f"{name}.png", "sha256": sha256_file(png)}
        assert rerun["outputs"][name]["sha256"] == record["outputs"][name]["sha256"], f"{name} is not reproducible"
    assert record["inputs"]["coregistered_flair"]["sha256"] == sha256_file(subject["images"].coregistered["flair"])
    assert list(record["atlases"]) == ["atlas.nii.gz"]
    assert "figures" in record["timings_s"]
    # Every sub-region's outline in its BraTS colour, the brain mask's and the T1c edges' colours.
    for colour in figures.SUBREGION_COLOURS.values():
        assert _has_colour(files.figure("overview"), colour)
        assert _has_colour(files.figure("members"), colour)
    assert _has_colour(files.figure("brain_mask"), figures.MASK_COLOUR)
    assert _has_colour(files.figure("registration"), figures.EDGE_COLOUR)
    assert _has_colour(files.figure("registration"), figures.MASK_COLOUR)


def test_no_tumour_no_outline_colours(subject):
    empty = save_image(label_image(np.zeros(SHAPE, np.uint8), AFFINE), subject["tmp"] / "empty.nii.gz")
    out = subject["tmp"] / "empty"
    report_subject(empty, {"a": empty}, subject["brain"], out, images=subject["images"])
    for colour in figures.SUBREGION_COLOURS.values():
        assert not _has_colour(StepFiles(out, "report").figure("overview"), colour, at_least=1)


def test_views_are_radiological_and_keep_proportions():
    # A marker at the patient's right, anterior and superior, in an LPS array.
    volume = np.zeros(SHAPE)
    volume[2, 3, 20] = 1  # x = 2 of the L axis: right; y = 3 of the P axis: anterior; z = 20: superior
    ras = figures.to_ras(volume, AFFINE)
    frame = figures.Frame.around(np.ones(SHAPE, bool), tuple(int(i) for i in np.argwhere(ras)[0]),
                                 figures.ras_spacing(AFFINE), 0)
    axial, coronal = frame.plane(ras, "axial"), frame.plane(ras, "coronal")
    row, col = np.argwhere(axial)[0]
    assert col < SHAPE[0] / 2 and row < SHAPE[1] / 2  # patient right on the image's left, anterior up
    row, col = np.argwhere(coronal)[0]
    assert col < SHAPE[0] / 2 and row < SHAPE[2] / 2  # superior up
    assert frame.aspect("coronal") == pytest.approx(1.5) and frame.aspect("axial") == 1
    assert frame.extent_mm("sagittal") == (pytest.approx(72), pytest.approx(80))


def test_cli_draws_figures_with_both_image_folders(subject):
    images = subject["images"]
    args = ["report", "--segmentation", str(subject["fused"]), "--members", *map(str, subject["members"].values()),
            "--brain-mask", str(subject["brain"]), "--atlas", images.atlas, "--atlas-mask", images.atlas_mask]
    folders = ["--skullstrip-dir", str(subject["tmp"] / "skullstrip"),
               "--coregister-dir", str(subject["tmp"] / "coregister")]
    assert main([*args, *folders, "--out", str(subject["tmp"] / "cli")]) == 0
    assert all(StepFiles(subject["tmp"] / "cli", "report").figure(name).is_file() for name in FIGURES)
    assert main([*args, *folders[:2], "--out", str(subject["tmp"] / "half")]) != 0


def test_a_subject_without_t1c_is_drawn_on_its_registration_reference(subject):
    """missing_modalities: run-available with T1 as the co-registration centre: three rows of images, T1's edges."""
    images = subject["images"]
    present = [m for m in MODALITIES if m != "t1c"]
    without = ReportImages({m: images.stripped[m] for m in present}, {m: images.coregistered[m] for m in present},
                           atlas=images.atlas, atlas_mask=images.atlas_mask)
    out = subject["tmp"] / "without_t1c"
    record = report_subject(subject["fused"], subject["members"], subject["brain"], out, images=without,
                            missing_modalities=["t1c"])
    assert record["missing_modalities"] == ["t1c"]
    assert "stripped_t1c" not in record["inputs"]
    files = StepFiles(out, "report")
    full = StepFiles(subject["tmp"] / "full", "report")
    _run(subject, full.folder)
    # One row of panels fewer than with four images.
    assert Image.open(files.figure("overview")).height < Image.open(full.figure("overview")).height
    assert _has_colour(files.figure("registration"), figures.EDGE_COLOUR)
    assert _has_colour(files.figure("members"), figures.SUBREGION_COLOURS["ET"])
