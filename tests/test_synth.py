import json

import nibabel as nib
import numpy as np
import pytest
from nibabel.processing import resample_from_to

from bratsflow import paths, synth
from bratsflow.cohort import MODALITIES, load_sheet
from bratsflow.labels import region_mask
from conftest import TINY_RESOLUTION_MM, TINY_SEED

SUBJECTS = ["sub-001", "sub-002", "sub-003"]


def _labels(root, sid):
    return nib.load(paths.TruthFiles(root, sid).labels)


def test_bids_layout_and_sample_sheet(tiny_cohort):
    assert json.loads((tiny_cohort / "dataset_description.json").read_text())["BIDSVersion"]
    subjects = load_sheet(tiny_cohort / "subjects.tsv")
    assert [s.subject_id for s in subjects] == SUBJECTS
    for subject in subjects:
        for modality in MODALITIES:
            assert subject.image(modality).is_file()
        truth = paths.TruthFiles(tiny_cohort, subject.subject_id)
        for path in [truth.labels, truth.brain_mask, truth.labels_t1c, truth.record, truth.deformation,
                     *(truth.transform(m) for m in MODALITIES)]:
            assert path.is_file(), path.name


def test_truth_layout_is_the_documented_one():
    """The README and users' scripts name these files, so the test spells them again: a rename must be
    deliberate."""
    truth = paths.TruthFiles("demo", "sub-001")
    folder = "demo/derivatives/truth/sub-001"
    assert truth.labels.as_posix() == f"{folder}/sub-001_space-atlas_dseg.nii.gz"
    assert truth.brain_mask.as_posix() == f"{folder}/sub-001_space-atlas_desc-brain_mask.nii.gz"
    assert truth.labels_t1c.as_posix() == f"{folder}/sub-001_space-T1c_dseg.nii.gz"
    assert truth.deformation.as_posix() == f"{folder}/sub-001_desc-deformation_coefficients.npz"
    assert truth.record.as_posix() == f"{folder}/sub-001_truth.json"
    assert truth.transform("t1c").as_posix() == f"{folder}/sub-001_from-atlas_to-ce-gadolinium_T1w_mode-image_xfm.txt"
    assert paths.bids_image_path("demo", "sub-001", "flair").as_posix() == "demo/sub-001/anat/sub-001_FLAIR.nii.gz"


@pytest.mark.parametrize("sid", SUBJECTS)
def test_tumour_has_all_regions_nested_inside_the_brain(tiny_cohort, sid):
    labels = np.asarray(_labels(tiny_cohort, sid).dataobj)
    brain = np.asarray(nib.load(paths.TruthFiles(tiny_cohort, sid).brain_mask).dataobj).astype(bool)
    assert labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    wt, tc = region_mask(labels, "WT", "brats2023"), region_mask(labels, "TC", "brats2023")
    assert tc.sum() > 0 and (wt & ~tc).sum() > 0, "a core and oedema around it"
    assert np.all(brain[wt]), "tumour lies inside the brain mask"
    volume_ml = wt.sum() * TINY_RESOLUTION_MM**3 / 1000
    assert 5 < volume_ml < 300
    truth = synth.load_truth(tiny_cohort, sid)
    assert truth["volumes_ml"]["SNFH"] == pytest.approx((labels == 2).sum() * TINY_RESOLUTION_MM**3 / 1000)


def test_each_modality_has_its_own_native_space(tiny_cohort):
    orientations, spacings = set(), set()
    for sid in SUBJECTS:
        truth = synth.load_truth(tiny_cohort, sid)
        poses = []
        for modality in MODALITIES:
            img = nib.load(paths.bids_image_path(tiny_cohort, sid, modality))
            pose = np.asarray(truth["transforms"][modality]["native_to_atlas"])
            rotation = pose[:3, :3]
            assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-9), "rigid"
            angle = np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))
            assert angle <= 15.0 + 1e-6
            orientations.add("".join(nib.aff2axcodes(img.affine)))
            spacings.add(tuple(np.round(img.header.get_zooms(), 2)))
            assert img.get_data_dtype() == np.int16
            poses.append(pose)
        assert not np.allclose(poses[0], poses[1]), "modalities are not in one pose"
    assert len(orientations) >= 4 and len(spacings) >= 3


def test_t1c_truth_is_the_atlas_truth_through_the_true_transform(tiny_cohort):
    for sid in SUBJECTS:
        truth = synth.load_truth(tiny_cohort, sid)
        atlas = _labels(tiny_cohort, sid)
        native = nib.load(paths.TruthFiles(tiny_cohort, sid).labels_t1c)
        pose = np.asarray(truth["transforms"]["t1c"]["native_to_atlas"])
        # Express the native grid in atlas world coordinates, then pull the atlas labels onto it.
        native_in_atlas_world = nib.Nifti1Image(np.asarray(native.dataobj), pose @ native.affine)
        pulled = np.asarray(resample_from_to(atlas, native_in_atlas_world, order=0).dataobj)
        agreement = np.mean(pulled[pulled > 0] == np.asarray(native.dataobj)[pulled > 0])
        assert agreement > 0.99


def test_images_resampled_through_the_truth_show_the_tumour_contrast(tiny_cohort):
    """With the true transforms, each contrast shows its textbook tumour signal at the atlas-space labels."""
    for sid in SUBJECTS:
        images = synth.resample_native_to_atlas(tiny_cohort, sid)
        labels = np.asarray(_labels(tiny_cohort, sid).dataobj)
        brain = np.asarray(nib.load(paths.TruthFiles(tiny_cohort, sid).brain_mask).dataobj).astype(bool)
        normal = brain & (labels == 0)
        mean = {m: {name: images[m][labels == value].mean() for name, value in
                    {"NETC": 1, "SNFH": 2, "ET": 3}.items() if (labels == value).sum() > 5}
                for m in MODALITIES}
        healthy = {m: np.median(images[m][normal]) for m in MODALITIES}
        assert mean["flair"]["SNFH"] > 1.3 * healthy["flair"], "oedema is bright on FLAIR"
        assert mean["t2"]["SNFH"] > 1.2 * healthy["t2"], "oedema is bright on T2"
        if "ET" in mean["t1c"]:
            assert mean["t1c"]["ET"] / healthy["t1c"] > 1.3 * mean["t1"]["ET"] / healthy["t1"], "ET enhances"
        # The skull and scalp exist outside the brain: signal well outside the brain mask.
        outside = ~brain & (images["t1"] > 0.5 * healthy["t1"])
        assert outside.sum() > 0.1 * brain.sum()


def test_subject_mapping_has_no_affine_component():
    head = synth.load_head_model(4.0)
    rng = np.random.default_rng(3)
    lesion = synth._draw_lesion(rng, head, main=True)
    coords, _, _ = synth._subject_mapping(rng, head, synth.SynthParams(resolution_mm=4.0), lesion)
    grid = np.indices(head.shape, dtype=np.float64)
    inside = head.brain > 0.5
    displacement = (coords - grid)[:, inside].T
    points = np.argwhere(inside)
    design = np.hstack([points, np.ones((len(points), 1))])
    fit, *_ = np.linalg.lstsq(design, displacement, rcond=None)
    assert np.abs(fit[:3]).max() < 0.02, "no residual linear part over the brain"
    residual_shift_mm = np.abs(fit[3] + points.mean(axis=0) @ fit[:3]).max() * 4.0
    assert residual_shift_mm < 0.1
    assert np.abs(displacement).max() * 4.0 > 1.0, "but there is a real non-linear deformation"


def test_same_seed_same_subject_alone_or_in_the_cohort(tiny_cohort, tmp_path):
    synth.generate_cohort(tmp_path, 3, TINY_SEED, synth.SynthParams(resolution_mm=TINY_RESOLUTION_MM),
                          only=["sub-002"])
    for modality in MODALITIES:
        a = paths.bids_image_path(tiny_cohort, "sub-002", modality).read_bytes()
        b = paths.bids_image_path(tmp_path, "sub-002", modality).read_bytes()
        assert a == b
    assert not (tmp_path / "sub-001").exists()


def test_brats2021_convention(tmp_path):
    synth.generate_cohort(tmp_path, 1, TINY_SEED, synth.SynthParams(resolution_mm=4.0, convention="brats2021"))
    labels = np.asarray(_labels(tmp_path, "sub-001").dataobj)
    assert 3 not in labels and 4 in labels


def test_only_outside_the_cohort_is_refused(tmp_path):
    with pytest.raises(ValueError, match="sub-009"):
        synth.generate_cohort(tmp_path, 2, 1, only=["sub-009"])


def test_itk_transform_file_matches_the_json(tiny_cohort):
    import SimpleITK as sitk

    sid = "sub-001"
    truth = synth.load_truth(tiny_cohort, sid)
    transform = sitk.ReadTransform(str(paths.TruthFiles(tiny_cohort, sid).transform("t2")))
    atlas_to_native = np.asarray(truth["transforms"]["t2"]["atlas_to_native"])
    point_ras = np.array([10.0, -20.0, 30.0])
    expected_ras = atlas_to_native[:3, :3] @ point_ras + atlas_to_native[:3, 3]
    flip = np.array([-1.0, -1.0, 1.0])
    mapped_lps = np.array(transform.TransformPoint((point_ras * flip).tolist()))
    assert np.allclose(mapped_lps * flip, expected_ras, atol=1e-6)


def test_montage(tiny_cohort, tmp_path):
    out = synth.montage(tiny_cohort, "sub-001", tmp_path / "m.png")
    assert out.stat().st_size > 10_000
