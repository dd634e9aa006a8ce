import gzip

import nibabel as nib
import numpy as np
import pytest

from bratsflow.errors import ConfigError, InputError
from bratsflow.io import axcodes, check_image, load_image, reorient, save_image, sha256_file


def _image(shape=(12, 14, 10), zooms=(1.0, 1.0, 1.0), dtype=np.int16, data=None):
    rng = np.random.default_rng(0)
    data = rng.integers(1, 1000, shape).astype(dtype) if data is None else data
    return nib.Nifti1Image(data, np.diag([*zooms, 1.0]))


def test_load_reads_a_valid_image(tmp_path):
    path = save_image(_image(), tmp_path / "a.nii.gz")
    img = load_image(path)
    assert img.shape == (12, 14, 10)


def test_truncated_gzip_is_reported(tmp_path):
    path = save_image(_image(shape=(40, 40, 40)), tmp_path / "a.nii.gz")
    blob = path.read_bytes()
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InputError, match="truncated gzip") as info:
        load_image(bad, subject="s1", modality="t2")
    assert "subject s1" in str(info.value) and str(bad) in str(info.value)


def test_gzip_of_concatenated_members_is_read_whole(tmp_path):
    img = _image(shape=(30, 20, 10))
    path = save_image(img, tmp_path / "a.nii.gz")
    raw = gzip.decompress(path.read_bytes())
    joined = tmp_path / "joined.nii.gz"
    joined.write_bytes(b"".join(gzip.compress(raw[i:i + 2000]) for i in range(0, len(raw), 2000)))
    np.testing.assert_array_equal(np.asanyarray(load_image(joined).dataobj), np.asanyarray(img.dataobj))


def test_garbage_file_is_reported(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(gzip.compress(b"not an image at all" * 10))
    with pytest.raises(InputError, match="not a readable NIfTI|cannot read"):
        load_image(bad)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "nope.nii.gz")
    with pytest.raises(InputError, match="is a folder"):
        load_image(tmp_path)


@pytest.mark.parametrize("img, message", [
    (_image(shape=(12, 14, 1)), "2-D image"),
    (_image(shape=(12, 14, 10, 3)), "expected a 3-D image, got 4-D"),
    (_image(data=np.zeros((8, 8, 8), np.int16)), "all voxels are zero"),
    (_image(data=np.full((8, 8, 8), 5, np.int16)), "constant image"),
    (_image(zooms=(1.0, 1.0, 50.0)), "implausible voxel spacing 1×1×50 mm"),
])
def test_check_image_rejects(img, message):
    with pytest.raises(InputError, match=message):
        check_image(img, subject="s1", modality="flair", file="x.nii.gz")


def test_zero_spacing_in_the_header_is_rejected(tmp_path):
    path = tmp_path / "zero.nii"
    nib.save(_image(), path)
    blob = bytearray(path.read_bytes())
    blob[76 + 4 * 2: 76 + 4 * 3] = np.float32(0).tobytes()  # pixdim[2], the second axis' spacing
    path.write_bytes(bytes(blob))
    with pytest.raises(InputError, match=r"voxel spacing is 0 in the header \(pixdim\) along axis \[1\]"):
        load_image(path)


def test_check_image_rejects_nan_and_inf():
    data = np.ones((8, 8, 8), np.float32)
    data[1, 2, 3] = np.nan
    data[2, 2, 2] = np.inf
    with pytest.raises(InputError, match="2 voxels are NaN or infinite"):
        check_image(_image(data=data))


def test_check_image_accepts_singleton_fourth_axis():
    img = check_image(_image(shape=(8, 9, 10, 1)))
    assert img.shape == (8, 9, 10)


def test_reorient_keeps_world_coordinates():
    rng = np.random.default_rng(1)
    data = rng.random((5, 6, 7)).astype(np.float32)
    affine = np.array([[0, 0, -2.0, 10], [-1.0, 0, 0, 20], [0, 1.5, 0, -5], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, affine)
    out = reorient(img, "RAS")
    assert axcodes(out) == "RAS"
    for ijk in [(0, 0, 0), (4, 5, 6), (2, 3, 1)]:
        world = nib.affines.apply_affine(affine, ijk)
        out_ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(out.affine), world)).astype(int)
        assert np.asarray(out.dataobj)[tuple(out_ijk)] == data[ijk]


@pytest.mark.parametrize("codes", ["RAR", "XYZ", "RA", "RASL"])
def test_reorient_refuses_bad_codes(codes):
    with pytest.raises(ConfigError, match="not three axis codes"):
        reorient(_image(), codes)


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = save_image(_image(), tmp_path / "sub" / "a.nii.gz")
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.nii.gz"]
    assert len(sha256_file(path)) == 64
