"""Co-registration on the tiny (3 mm) synthetic cohort, checked against the true transforms."""

import json

import ants
import nibabel as nib
import numpy as np
import pytest

from bratsflow import atlas as atlas_module
from bratsflow import paths, synth
from bratsflow.cli import main
from bratsflow.cohort import MODALITIES, load_sheet
from bratsflow.coregister import CoregisterParams, coregister, to_native
from bratsflow.errors import ConfigError, InputError, RegistrationError
from bratsflow.ingest import ingest_subject
from bratsflow.io import reorient, sha256_file
from conftest import TINY_SPACING_RANGE_MM

SID = "sub-001"
LPS = np.array([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def ingested(tiny_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("ingested")
    for subject in load_sheet(tiny_cohort / "subjects.tsv"):
        ingest_subject(subject, out / subject.subject_id, spacing_range_mm=TINY_SPACING_RANGE_MM)
    return out


def _params(tiny_atlas, **extra):
    image, mask = tiny_atlas
    return CoregisterParams(atlas=str(image), atlas_mask=str(mask), **extra)


@pytest.fixture(scope="module")
def registered(ingested, tiny_atlas, tmp_path_factory):
    out = tmp_path_factory.mktemp("coregister")
    images = {m: ingested / SID / f"{m}.nii.gz" for m in MODALITIES}
    record = coregister(images, out, _params(tiny_atlas), subject=SID, threads=2)
    return out, record


def _map_points(files, points_ras):
    """Push RAS points through ANTs transform files in list order (as ants.apply_transforms does)."""
    points = points_ras * LPS
    for file in files:
        transform = ants.read_transform(str(file))
        points = np.array([transform.apply_to_point(tuple(p)) for p in points])
    return points * LPS


def test_target_registration_error_against_the_truth(tiny_cohort, registered):
    out, record = registered
    truth = synth.load_truth(tiny_cohort, SID)
    brain = nib.load(paths.TruthFiles(tiny_cohort, SID).brain_mask)
    points = nib.affines.apply_affine(brain.affine, np.argwhere(np.asarray(brain.dataobj) > 0))
    assert record["centre"] == "t1c"
    for modality in MODALITIES:
        chain = [out / "transforms" / name for name in record["transforms"]["to_atlas"][modality]]
        estimated = _map_points(chain, points)
        true = nib.affines.apply_affine(np.asarray(truth["transforms"][modality]["atlas_to_native"]), points)
        error = np.linalg.norm(estimated - true, axis=1)
        # 3 mm voxels (FLAIR slices 12 mm): a third of a voxel; a wrong chain is off by tens of millimetres.
        assert np.median(error) < 1.5, modality
        assert error.max() < 4.0, modality


def test_outputs_record_and_atlas_grid(registered, tiny_atlas):
    out, record = registered
    grid = nib.load(tiny_atlas[0])
    for modality in MODALITIES:
        img = nib.load(out / f"{modality}.nii.gz")
        assert img.shape == grid.shape and np.allclose(img.affine, grid.affine, atol=1e-4)
        assert record["outputs"][modality]["sha256"] == sha256_file(out / f"{modality}.nii.gz")
        assert record["registrations"][modality]["nmi_after"] > record["registrations"][modality]["nmi_before"]
    saved = json.loads((out / "coregister.json").read_text())
    assert saved["transforms"]["to_atlas"]["flair"] == ["t1c-to-atlas.mat", "flair-to-t1c.mat"]
    assert saved["parameters"]["seed"] == 1
    assert saved["atlases"] == {saved["atlas"]["name"]: {"source": str(tiny_atlas[0]),
                                                         "sha256": sha256_file(tiny_atlas[0])}}
    assert saved["outputs"]["flair-to-t1c"] == {"path": "transforms/flair-to-t1c.mat",
                                                "sha256": sha256_file(out / "transforms" / "flair-to-t1c.mat")}
    assert {"register", "check", "resample_flair"} <= set(saved["timings_s"])
    assert saved["parameters"]["atlas_transform"] == "rigid"


def test_label_map_round_trip_atlas_native_atlas(tiny_cohort, registered, tmp_path):
    out, _ = registered
    truth = paths.TruthFiles(tiny_cohort, SID)
    native = to_native(truth.labels, out, "t1c", tmp_path / "native.nii.gz", labels=True)
    native_img = nib.load(native)
    assert native_img.get_data_dtype() == np.uint8
    assert set(np.unique(np.asarray(native_img.dataobj))) <= {0, 1, 2, 3}
    # Against the truth on the native T1c grid (ingest reoriented that grid to RAS) ...
    truth_native = np.asarray(reorient(nib.load(truth.labels_t1c), "RAS").dataobj)
    mapped = np.asarray(native_img.dataobj)
    assert _dice(mapped > 0, truth_native > 0) > 0.85
    # ... and back into the atlas: the whole tumour survives the round trip.
    back = ants.apply_transforms(ants.image_read(str(truth.labels)), ants.image_read(str(native)),
                                 [str(out / "transforms" / "t1c-to-atlas.mat")], interpolator="genericLabel")
    original = np.asarray(nib.load(truth.labels).dataobj)
    assert _dice(back.numpy() > 0, original > 0) > 0.85
    assert _dice(back.numpy() == 3, original == 3) > 0.6


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_same_seed_same_threads_bitwise_identical(ingested, tiny_atlas, registered, tmp_path):
    out, _ = registered
    images = {m: ingested / SID / f"{m}.nii.gz" for m in MODALITIES}
    coregister(images, tmp_path, _params(tiny_atlas), subject=SID, threads=2)
    for modality in MODALITIES:
        assert sha256_file(tmp_path / f"{modality}.nii.gz") == sha256_file(out / f"{modality}.nii.gz")
    for name in ("t1c-to-atlas.mat", "t2-to-t1c.mat"):
        assert sha256_file(tmp_path / "transforms" / name) == sha256_file(out / "transforms" / name)


def test_missing_t1c_falls_back_to_t1(ingested, tiny_atlas, tmp_path):
    images = {m: ingested / SID / f"{m}.nii.gz" for m in ("t1", "flair")}
    record = coregister(images, tmp_path, _params(tiny_atlas), subject=SID, threads=2)
    assert record["centre"] == "t1"
    assert record["transforms"]["to_atlas"]["flair"] == ["t1-to-atlas.mat", "flair-to-t1.mat"]
    with pytest.raises(InputError, match="centre modality t1c is missing"):
        coregister({"flair": images["flair"]}, tmp_path / "x", _params(tiny_atlas), subject=SID)


def test_barely_overlapping_field_of_view_is_refused(ingested, tiny_atlas, tmp_path):
    flair = nib.load(ingested / SID / "flair.nii.gz")
    data = np.asarray(flair.dataobj).copy()
    data[:, :, : data.shape[2] - 3] = 0  # keep only the top three slices
    slab = tmp_path / "slab.nii.gz"
    nib.save(nib.Nifti1Image(data, flair.affine), slab)
    out = tmp_path / "out"
    message = (r"subject sub-001, FLAIR, file .*slab\.nii\.gz: registration to t1c failed its checks \(2 attempts\): "
               r"its foreground covers \d+% of the target's foreground in view \(coregister.min_coverage 0.9\)")
    with pytest.raises(RegistrationError, match=message):
        coregister({"t1c": ingested / SID / "t1c.nii.gz", "flair": slab}, out, _params(tiny_atlas), subject=SID)
    assert not out.exists(), "nothing is written for a failed subject"


def test_empty_image_is_refused(ingested, tiny_atlas, tmp_path):
    t2 = nib.load(ingested / SID / "t2.nii.gz")
    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(t2.shape, np.float32), t2.affine), empty)
    with pytest.raises(InputError, match="t2.*all voxels are zero"):
        coregister({"t1c": ingested / SID / "t1c.nii.gz", "t2": empty}, tmp_path / "o", _params(tiny_atlas),
                   subject=SID)


def test_to_native_cli(registered, tmp_path):
    out, _ = registered
    assert main(["to-native", str(out / "flair.nii.gz"), "--coregister-dir", str(out), "--modality", "t2",
                 "--out", str(tmp_path / "flair_in_t2.nii.gz")]) == 0
    reference = nib.load(json.loads((out / "coregister.json").read_text())["inputs"]["t2"]["path"])
    assert nib.load(tmp_path / "flair_in_t2.nii.gz").shape == reference.shape


def test_unknown_atlas_and_unfetched_atlas(tmp_path, monkeypatch):
    monkeypatch.setenv(atlas_module.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="neither a known atlas"):
        atlas_module.load_atlas("no/such/atlas.nii.gz")
    with pytest.raises(ConfigError, match=r"bratsflow atlas fetch sri24.*or put the file at .*sri24\.nii\b"):
        atlas_module.load_atlas("sri24")


def test_builtin_mni152_is_nilearns():
    """The MNI152 read from nilearn's package data (without importing nilearn.datasets) is the template and brain
    mask nilearn's loaders give, voxel for voxel."""
    from nilearn import datasets

    atlas = atlas_module.load_atlas("mni152")
    template = datasets.load_mni152_template(resolution=1)
    mask = datasets.load_mni152_brain_mask(resolution=1)
    assert atlas.image.get_data_dtype() == np.float32 and atlas.mask.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(atlas.image.dataobj), np.asarray(template.dataobj, dtype=np.float32))
    assert np.array_equal(np.asarray(atlas.mask.dataobj), np.asarray(mask.dataobj, dtype=np.uint8))
    assert np.array_equal(atlas.image.affine, template.affine) and np.array_equal(atlas.mask.affine, mask.affine)


def test_atlas_fetch_verifies_the_checksum(loopback_server, tiny_atlas, tmp_path, monkeypatch):
    served, base = loopback_server
    monkeypatch.setenv(atlas_module.CACHE_ENV, str(tmp_path / "cache"))
    nib.save(nib.load(tiny_atlas[0]), served / "atlas.nii")
    url = f"{base}/atlas.nii"
    good = sha256_file(served / "atlas.nii")

    with pytest.raises(InputError, match="expected 0{64}; nothing was installed"):
        atlas_module.fetch("sri24", url=url, sha256="0" * 64)
    assert not atlas_module.cached_path("sri24").exists()
    with pytest.raises(ConfigError, match="no SHA-256 is pinned"):
        atlas_module.fetch("sri24", url=url)

    path = atlas_module.fetch("sri24", url=url, sha256=good)
    assert path == atlas_module.cached_path("sri24") and sha256_file(path) == good
    assert atlas_module.load_atlas("sri24").image.shape == nib.load(tiny_atlas[0]).shape
    assert atlas_module.fetch("sri24", url=f"{base}/gone.nii.gz", sha256=good) == path, "cached: no download"


def test_atlas_fetch_without_network_says_where_to_put_the_file(loopback_server, tmp_path, monkeypatch):
    _, base = loopback_server
    monkeypatch.setenv(atlas_module.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(InputError, match=r"cannot download .*put it at .*sri24\.nii\b"):
        atlas_module.fetch("sri24", url=f"{base}/missing.nii.gz", sha256="1" * 64)
    with pytest.raises(InputError, match="cannot download"):
        atlas_module.fetch("sri24", url="http://127.0.0.1:9/atlas.nii.gz", sha256="1" * 64)
