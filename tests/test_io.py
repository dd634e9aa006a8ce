import gzip
import json
import os
import shutil
import subprocess
import sys

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


def test_qform_and_sform_that_disagree_are_refused(tmp_path):
    img = _image()
    img.set_qform(np.diag([-1.0, 1.0, 1.0, 1.0]), code=1)
    path = tmp_path / "flipped.nii.gz"
    nib.save(img, path)
    with pytest.raises(InputError, match=r"subject s1, t1, file .*flipped.nii.gz: the header's qform \(LAS\) and "
                                         r"sform \(RAS\) disagree on the orientation"):
        load_image(path, subject="s1", modality="t1")
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    img.set_qform(shifted, code=1)
    nib.save(img, path)
    assert load_image(path).shape == img.shape, "a qform that differs only in its offset is not an orientation error"


def test_truncated_uncompressed_nifti_is_one_clear_line(tmp_path):
    path = tmp_path / "a.nii"
    nib.save(_image(shape=(20, 20, 20)), path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InputError) as info:
        load_image(path, subject="s1", modality="t2")
    message = str(info.value)
    assert message.startswith(f"subject s1, t2, file {path}: cannot read image data (Expected 16000 bytes, got ")
    assert "\n" not in message


# Runs inside a private mount namespace with a small tmpfs at argv[1]: ingest once, fill the disk, ingest again.
FULL_DISK_DRIVER = r'''
import json, os, subprocess, sys
from pathlib import Path
disk, sheet = Path(sys.argv[1]), sys.argv[2]
out = disk / "ingest"
ingest = [sys.executable, "-m", "bratsflow.cli", "ingest", "--subject", "sub-001", "--samples", sheet,
          "--out", str(out), "--max-spacing", "16"]
def state():
    return {p.name: p.read_bytes().hex() for p in sorted(out.iterdir())}
first = subprocess.run(ingest, capture_output=True, text=True)
before = state()
with open(disk / "filler", "wb") as handle:
    try:
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    except OSError:
        pass
second = subprocess.run(ingest, capture_output=True, text=True)
print(json.dumps({"first": first.returncode, "first_err": first.stderr[-2000:], "second": second.returncode,
                  "second_err": second.stderr, "unchanged": state() == before, "files": sorted(before)}))
'''


def test_a_full_disk_fails_with_a_clear_message_and_keeps_the_earlier_output(tiny_cohort, tmp_path):
    """A real full disk: an 8 MiB tmpfs in a private mount namespace (gone with the process)."""
    unshare = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        unshare = ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare to mount a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(FULL_DISK_DRIVER)
    mount = subprocess.run([*unshare, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a private namespace here: {mount.stderr.strip()}")
    result = subprocess.run(
        [*unshare, "sh", "-c", 'mount -t tmpfs -o size=8m tmpfs "$1" && exec "$2" "$3" "$1" "$4"', "sh",
         str(disk), sys.executable, str(driver), str(tiny_cohort / "subjects.tsv")],
        capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    assert report["first"] == 0, report["first_err"]
    assert report["files"] == ["flair.nii.gz", "ingest.json", "t1.nii.gz", "t1c.nii.gz", "t2.nii.gz"]
    assert report["second"] == 2
    assert report["second_err"].strip() == (
        f"bratsflow ingest: error: subject sub-001, file {disk}/ingest/t1.nii.gz: cannot write the file (No space "
        f"left on device); an earlier file of this name, if any, is unchanged")
    assert report["unchanged"], "the earlier outputs are byte for byte the same, and no temporary file is left"
    assert not any(disk.iterdir()), "the tmpfs lived only in the test's mount namespace"
