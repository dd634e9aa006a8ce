"""Skull stripping (atlas backend) on the tiny cohort, the boundary refinement, the volume gate, and defacing."""

import json

import nibabel as nib
import numpy as np
import pytest

from bratsflow import synth
from bratsflow.cli import main
from bratsflow.cohort import MODALITIES
from bratsflow.deface import cutting_plane, deface, deface_file
from bratsflow.errors import InputError
from bratsflow.io import sha256_file
from bratsflow.metrics import dice
from bratsflow.skullstrip import SkullstripParams, refine_mask, skullstrip

SID = "sub-002"


@pytest.fixture(scope="module")
def atlas_space(tiny_cohort, tmp_path_factory):
    """The subject's four images in atlas space through the true transforms, and the true brain mask."""
    out = tmp_path_factory.mktemp("atlas_space")
    truth = nib.load(tiny_cohort / "derivatives" / "truth" / SID / f"{SID}_space-atlas_desc-brain_mask.nii.gz")
    images = {}
    for modality, data in synth.resample_native_to_atlas(tiny_cohort, SID).items():
        images[modality] = out / f"{modality}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), truth.affine), images[modality])
    return images, np.asarray(truth.dataobj) > 0


def _params(tiny_atlas, **extra):
    return SkullstripParams(atlas=str(tiny_atlas[0]), atlas_mask=str(tiny_atlas[1]), **extra)


@pytest.fixture(scope="module")
def stripped(atlas_space, tiny_atlas, tmp_path_factory):
    out = tmp_path_factory.mktemp("skullstrip")
    record = skullstrip(atlas_space[0], out, _params(tiny_atlas), subject=SID, threads=2)
    return out, record


def test_mask_matches_the_truth_and_is_applied_to_all_four(atlas_space, stripped):
    images, truth = atlas_space
    out, record = stripped
    mask_img = nib.load(out / "brain_mask.nii.gz")
    assert mask_img.get_data_dtype() == np.uint8
    mask = np.asarray(mask_img.dataobj) > 0
    # 3 mm voxels: one voxel of boundary error is ~10% of the volume's surface layer.
    assert dice(mask, truth) > 0.93
    for modality in MODALITIES:
        stripped_data = nib.load(out / f"{modality}.nii.gz").get_fdata()
        original = nib.load(images[modality]).get_fdata()
        assert np.all(stripped_data[~mask] == 0)
        np.testing.assert_allclose(stripped_data[mask], original[mask], rtol=1e-6)
    saved = json.loads((out / "skullstrip.json").read_text())
    assert saved["backend"] == "atlas" and saved["mask_modality"] == "t1"
    assert saved["brain_volume_ml"] == pytest.approx(mask.sum() * 27 / 1000, rel=1e-3)
    assert saved["outputs"]["brain_mask"]["sha256"] == sha256_file(out / "brain_mask.nii.gz")


def test_same_inputs_same_mask(atlas_space, tiny_atlas, stripped, tmp_path):
    skullstrip(atlas_space[0], tmp_path, _params(tiny_atlas), subject=SID, threads=2)
    assert sha256_file(tmp_path / "brain_mask.nii.gz") == sha256_file(stripped[0] / "brain_mask.nii.gz")


def test_implausible_volume_fails_the_subject_and_writes_nothing(atlas_space, tiny_atlas, tmp_path):
    message = (r"subject sub-002, T1, file .*t1.nii.gz: the brain mask \(atlas backend\) has 1\d{3} mL, "
               r"outside the plausible range 3000–4000 mL")
    with pytest.raises(InputError, match=message):
        skullstrip(atlas_space[0], tmp_path, _params(tiny_atlas, volume_range_ml=(3000.0, 4000.0)), subject=SID)
    assert not any(tmp_path.iterdir())


def test_images_off_the_atlas_grid_are_refused(atlas_space, tiny_atlas, tmp_path):
    images = dict(atlas_space[0])
    t1 = nib.load(images["t1"])
    shifted = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(t1.get_fdata()[2:], t1.affine), shifted)
    with pytest.raises(InputError, match="not on the grid of t1"):
        skullstrip({**images, "t1": images["t1"], "flair": shifted}, tmp_path / "a", _params(tiny_atlas))
    with pytest.raises(InputError, match="not on the atlas grid"):
        skullstrip({"t1": shifted}, tmp_path / "b", _params(tiny_atlas), subject=SID)


def test_missing_mask_modality_falls_back(atlas_space, tiny_atlas, tmp_path):
    images = {m: p for m, p in atlas_space[0].items() if m != "t1"}
    record = skullstrip(images, tmp_path, _params(tiny_atlas))
    assert record["mask_modality"] == "t1c"
    assert sorted(record["outputs"]) == ["brain_mask", "flair", "t1c", "t2"]


def _ball(shape, centre, radius):
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    return np.linalg.norm(grid - np.asarray(centre), axis=-1) <= radius


@pytest.mark.parametrize("brain, surroundings", [(600.0, 150.0), (500.0, 1500.0)], ids=["T1-like", "T2-like"])
def test_refinement_moves_the_boundary_onto_the_intensity_edge(brain, surroundings):
    shape = (64, 64, 64)
    truth = _ball(shape, (32, 32, 32), 20)
    rng = np.random.default_rng(0)
    image = np.where(truth, brain, surroundings) + rng.normal(0, 20, shape)
    image[~_ball(shape, (32, 32, 32), 24)] = 900  # a bright layer beyond the dark (or bright) rim
    prior = _ball(shape, (33, 32, 31), 21)  # a registered mask one voxel too large and off-centre
    refined = refine_mask(prior, image, (1.0, 1.0, 1.0), band_mm=2.0, closing_mm=3.0)
    assert dice(refined, truth) > dice(prior, truth) + 0.02
    assert dice(refined, truth) > 0.97


def test_cli_skullstrip(atlas_space, tiny_atlas, tmp_path):
    images = atlas_space[0]
    args = [f"--{m}={images[m]}" for m in MODALITIES]
    assert main(["skullstrip", *args, "--out", str(tmp_path), "--atlas", str(tiny_atlas[0]), "--atlas-mask",
                 str(tiny_atlas[1]), "--subject", SID]) == 0
    assert (tmp_path / "brain_mask.nii.gz").is_file()
    assert main(["skullstrip", *args, "--out", str(tmp_path / "x"), "--atlas", str(tiny_atlas[0]), "--atlas-mask",
                 str(tiny_atlas[1]), "--volume-range-ml", "1", "2"]) == 2


def _head(affine):
    """A head-like ball with a brain inside, on a 1 mm grid with the given orientation."""
    shape = (60, 70, 60)
    head = _ball(shape, (30, 35, 30), 28)
    brain = _ball(shape, (30, 37, 33), 20)
    return nib.Nifti1Image(np.where(head, 100.0, 0.0).astype(np.float32), affine), brain


def test_deface_cuts_in_front_of_and_below_the_brain_only():
    img, brain = _head(np.diag([1.0, 1.0, 1.0, 1.0]))
    defaced = deface(img, brain, buffer_mm=5.0).get_fdata()
    removed = (img.get_fdata() > 0) & (defaced == 0)
    assert removed.sum() > 1000 and not (removed & brain).any()
    where = np.argwhere(removed)
    centre = np.argwhere(brain).mean(axis=0)
    # Anterior (+y) and inferior (-z) of the brain's centre.
    assert where[:, 1].mean() > centre[1] and where[:, 2].mean() < centre[2]


def test_deface_follows_world_coordinates_whatever_the_voxel_order(tmp_path):
    ras, brain = _head(np.diag([1.0, 1.0, 1.0, 1.0]))
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:3, 3] = [59, 69, 0]
    las = nib.Nifti1Image(ras.get_fdata()[::-1, ::-1].copy(), flip)
    normal_ras, offset_ras = cutting_plane(brain, ras.affine)
    normal_las, offset_las = cutting_plane(brain[::-1, ::-1].copy(), las.affine)
    np.testing.assert_allclose(normal_ras, normal_las, atol=1e-6)
    assert offset_ras == pytest.approx(offset_las)
    nib.save(las, tmp_path / "las.nii.gz")
    nib.save(nib.Nifti1Image(brain[::-1, ::-1].astype(np.uint8), flip), tmp_path / "mask.nii.gz")
    deface_file(tmp_path / "las.nii.gz", tmp_path / "mask.nii.gz", tmp_path / "out.nii.gz", buffer_mm=10.0)
    np.testing.assert_array_equal(nib.load(tmp_path / "out.nii.gz").get_fdata()[::-1, ::-1],
                                  deface(ras, brain).get_fdata())


def test_deface_refuses_an_empty_mask(tmp_path):
    img, brain = _head(np.eye(4))
    nib.save(img, tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), tmp_path / "mask.nii.gz")
    with pytest.raises(InputError, match="subject s1, file .*mask.nii.gz: the brain mask is empty"):
        deface_file(tmp_path / "img.nii.gz", tmp_path / "mask.nii.gz", tmp_path / "out.nii.gz", subject="s1")
    assert not (tmp_path / "out.nii.gz").exists()
