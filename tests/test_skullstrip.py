"""Skull stripping (atlas backend) on the tiny cohort, inputs stripped already (a real case), the field of view,
the boundary refinement, the volume gate, and defacing."""

import json
from dataclasses import fields
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from nibabel.processing import resample_from_to

from bratsflow import paths, synth
from bratsflow.cli import main
from bratsflow.cohort import MODALITIES
from bratsflow.deface import cutting_plane, deface, deface_file
from bratsflow.errors import InputError
from bratsflow.io import sha256_file
from bratsflow.metrics import dice
from bratsflow.skullstrip import SkullstripParams, in_view, refine_mask, skullstrip

SID = "sub-002"
REPO = Path(__file__).resolve().parents[1]
REAL_ID = "BraTS-GLI-00001-000"


@pytest.fixture(scope="module")
def atlas_space(tiny_cohort, tmp_path_factory):
    """The subject's four images in atlas space through the true transforms, and the true brain mask."""
    out = tmp_path_factory.mktemp("atlas_space")
    truth = nib.load(paths.TruthFiles(tiny_cohort, SID).brain_mask)
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


def test_skull_on_subject_is_not_taken_for_a_stripped_one(stripped, atlas_space, tiny_atlas, tmp_path):
    decided = stripped[1]["input"]
    assert decided["decided"] == "skull" and decided["evidence"]["t1"]["stripped"] is False
    # With the air zeroed the support is the head: still larger than a brain.
    zeroed = {}
    for modality, path in atlas_space[0].items():
        img = nib.load(path)
        data = img.get_fdata(dtype=np.float32)
        zeroed[modality] = tmp_path / f"{modality}.nii.gz"
        nib.save(nib.Nifti1Image(np.where(_air(data), 0, data).astype(np.float32), img.affine), zeroed[modality])
    record = skullstrip(zeroed, tmp_path / "out", _params(tiny_atlas), subject=SID)
    evidence = record["input"]["evidence"]["t1"]
    assert record["input"]["decided"] == "skull"
    assert evidence["support_ml"] > 2500 and evidence["outside_registered"] is None


def _air(data: np.ndarray) -> np.ndarray:
    """The dark region connected to the volume's border."""
    from scipy import ndimage as ndi

    components, _ = ndi.label(data < 0.1 * np.percentile(data, 99))
    return components == components[0, 0, 0]


def test_mask_stays_in_the_field_of_view(atlas_space, tiny_atlas, tmp_path):
    """The top 30 mm not acquired: the registered atlas brain reaches there, the mask must not."""
    images, truth = atlas_space
    top = np.argwhere(truth)[:, 2].max()
    cropped = {}
    for modality, path in images.items():
        img = nib.load(path)
        data = img.get_fdata(dtype=np.float32)
        data[:, :, top - 9:] = 0  # 10 voxels of 3 mm
        cropped[modality] = tmp_path / f"{modality}.nii.gz"
        nib.save(nib.Nifti1Image(data, img.affine), cropped[modality])
    record = skullstrip(cropped, tmp_path / "out", _params(tiny_atlas), subject=SID)
    mask = np.asarray(nib.load(tmp_path / "out" / "brain_mask.nii.gz").dataobj) > 0
    assert not mask[:, :, top - 9:].any()
    assert record["field_of_view"]["clipped_ml"] > 10
    kept_truth = truth.copy()
    kept_truth[:, :, top - 9:] = False
    assert dice(mask, kept_truth) > 0.9


def test_in_view_is_what_the_scan_covered():
    rng = np.random.default_rng(0)
    data = rng.rayleigh(5.0, (20, 20, 20)).astype(np.float32) + 1
    data[:, :, 15:] = 0  # not acquired
    data[8:12, 8:12, 5:9] = 0  # exact zeros inside the scan (a dark lesion, clipped noise) stay in view
    view = in_view(data, 0.0)
    assert not view[:, :, 15:].any() and view[:, :, :15].all()


@pytest.fixture(scope="module")
def real_stripped(shared_real, tiny_atlas, tmp_path_factory):
    """BraTS-GLI-00001-000 (skull-stripped, BraTS/SRI24 space) on the tiny 3 mm atlas grid, and its given brain.

    SRI24 and MNI152 are both AC-PC aligned but have other origins: the brain's centroid is moved onto the atlas
    brain's, and the images resampled linearly with 0 outside, as co-registration delivers them."""
    out = tmp_path_factory.mktemp("real")
    grid = nib.load(tiny_atlas[1])
    names = dict(zip(MODALITIES, ("t1n", "t1c", "t2w", "t2f")))
    loaded = {m: nib.load(shared_real / "brats-gli-00001-000" / f"{REAL_ID}-{n}.nii.gz") for m, n in names.items()}
    t1 = loaded["t1"]
    given = np.asarray(t1.dataobj) != 0

    def centroid(mask, affine):
        return nib.affines.apply_affine(affine, np.argwhere(mask).mean(axis=0))

    shift = np.eye(4)
    shift[:3, 3] = centroid(np.asarray(grid.dataobj) > 0, grid.affine) - centroid(given, t1.affine)
    images = {}
    for modality, img in loaded.items():
        moved = nib.Nifti1Image(img.get_fdata(dtype=np.float32), shift @ img.affine)
        images[modality] = out / f"{modality}.nii.gz"
        nib.save(resample_from_to(moved, grid, order=1, cval=0.0), images[modality])
    brain = resample_from_to(nib.Nifti1Image(given.astype(np.uint8), shift @ t1.affine), grid, order=0)
    return images, np.asarray(brain.dataobj) > 0


def test_stripped_real_case_keeps_its_brain(real_stripped, tiny_atlas, tmp_path):
    images, given = real_stripped
    record = skullstrip(images, tmp_path, _params(tiny_atlas), subject=REAL_ID)
    mask = np.asarray(nib.load(tmp_path / "brain_mask.nii.gz").dataobj) > 0
    assert np.count_nonzero(mask & given) / np.count_nonzero(given) >= 0.995
    assert dice(mask, given) > 0.97
    decision = record["input"]
    assert decision["decided"] == "stripped" and decision["declared"] == "auto"
    assert "given brain" in decision["mask_from"] and record["method"] == {"given_brain": "t1"}
    evidence = decision["evidence"]["t1"]
    assert evidence["stripped"] and evidence["outside_atlas"] <= decision["thresholds"]["stripped_max_outside"]
    assert evidence["outside_registered"] <= decision["thresholds"]["fit_max_outside"]
    assert evidence["support_ml"] == pytest.approx(record["brain_volume_ml"], rel=0.01)
    saved = json.loads((tmp_path / "skullstrip.json").read_text())
    assert saved["input"] == decision


def test_declared_input_that_the_images_contradict_fails_the_subject(real_stripped, atlas_space, tiny_atlas,
                                                                     tmp_path):
    message = (r"subject sub-002, T1, file .*t1.nii.gz: declared skull-stripped \(skullstrip.input: stripped\), but "
               r"the image is not skull-stripped: its non-background support is \d+ mL")
    with pytest.raises(InputError, match=message):
        skullstrip(atlas_space[0], tmp_path / "a", _params(tiny_atlas, input="stripped"), subject=SID)
    message = (rf"subject {REAL_ID}, T1, file .*t1.nii.gz: declared with skull \(skullstrip.input: skull\), but the "
               r"image is skull-stripped already")
    with pytest.raises(InputError, match=message):
        skullstrip(real_stripped[0], tmp_path / "b", _params(tiny_atlas, input="skull"), subject=REAL_ID)
    assert not any(tmp_path.iterdir())
    record = skullstrip(real_stripped[0], tmp_path / "c", _params(tiny_atlas, input="stripped"), subject=REAL_ID)
    assert record["input"]["declared"] == "stripped" and sorted(record["input"]["evidence"]) == sorted(MODALITIES)


def test_defaults_agree_with_the_configuration():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["skullstrip"]
    defaults = SkullstripParams()
    names = {f.name for f in fields(SkullstripParams)}
    for key, value in config.items():
        if key in names:
            assert value == getattr(defaults, key) or list(getattr(defaults, key)) == value, key
    assert config["input"] == defaults.input == "auto"


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
