"""DICOM ingest: a synthetic MR series written with pydicom goes through dcm2niix and lands in the same place."""

import json

import nibabel as nib
import numpy as np
import pydicom
import pytest

from bratsflow.cohort import MODALITIES, Subject
from bratsflow.errors import InputError
from bratsflow.ingest import convert_dicom, folder_sha256, ingest_subject
from bratsflow.io import reorient, sha256_file
from dicom_helpers import write_dicom_series

SHAPE = (40, 48, 20)
SPACING_MM = (0.9, 1.2, 3.0)  # unequal in-plane, so a PixelSpacing order mistake shows


def _rotation(axis: int, degrees: float) -> np.ndarray:
    a, b = [(1, 2), (0, 2), (0, 1)][axis]
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    rot = np.eye(3)
    rot[a, a], rot[a, b], rot[b, a], rot[b, b] = c, -s, s, c
    return rot


def _affine(oblique: bool) -> np.ndarray:
    """LPS voxel axes (i -> left, j -> posterior, k -> superior), optionally tilted by 20° and 10°."""
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ np.diag(SPACING_MM)
    if oblique:
        affine[:3, :3] = _rotation(2, 20) @ _rotation(0, 10) @ affine[:3, :3]
    affine[:3, 3] = [30.5, -20.25, -25.0]
    return affine


def _volume(oblique: bool = True) -> nib.Nifti1Image:
    """int16 with an off-centre blob and a different gradient along each axis, so any flip or swap shows."""
    i, j, k = np.meshgrid(*(np.arange(n, dtype=float) for n in SHAPE), indexing="ij")
    blob = 1500 * np.exp(-((i - 12) ** 2 / 60 + (j - 30) ** 2 / 90 + (k - 6) ** 2 / 8))
    data = np.rint(blob + 7 * i + 3 * j + 11 * k - 100).astype(np.int16)  # some voxels negative
    img = nib.Nifti1Image(data, _affine(oblique))
    img.header.set_data_dtype(np.int16)
    return img


def _assert_same_world_image(expected: nib.Nifti1Image, actual: nib.Nifti1Image) -> None:
    assert actual.shape[:3] == expected.shape
    a, b = reorient(expected, "RAS"), reorient(actual, "RAS")
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asanyarray(b.dataobj).reshape(a.shape), np.asanyarray(a.dataobj))
    # And without trusting reorient: the same world point holds the same value.
    src, dst = np.asanyarray(expected.dataobj), np.asanyarray(actual.dataobj).reshape(actual.shape[:3])
    to_actual = np.linalg.inv(actual.affine) @ expected.affine
    for ijk in np.random.default_rng(0).integers(0, expected.shape, size=(200, 3)):
        out = nib.affines.apply_affine(to_actual, ijk)
        np.testing.assert_allclose(out, np.rint(out), atol=1e-3)
        assert dst[tuple(np.rint(out).astype(int))] == src[tuple(ijk)]


def test_helper_writes_lps_geometry(tmp_path):
    img = _volume()
    folder = write_dicom_series(img, tmp_path / "dcm")
    files = sorted(folder.iterdir())
    assert len(files) == SHAPE[2]
    first, last = (pydicom.dcmread(f) for f in (files[0], files[-1]))
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine
    np.testing.assert_allclose([float(v) for v in first.ImagePositionPatient], lps[:3, 3], atol=1e-4)
    np.testing.assert_allclose([float(v) for v in last.ImagePositionPatient],
                               (lps @ [0, 0, SHAPE[2] - 1, 1])[:3], atol=1e-4)
    assert [float(v) for v in first.PixelSpacing] == [SPACING_MM[1], SPACING_MM[0]]
    assert (first.Rows, first.Columns) == (SHAPE[1], SHAPE[0])
    assert first.SeriesInstanceUID == last.SeriesInstanceUID and first.SOPInstanceUID != last.SOPInstanceUID
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    pixels = last.pixel_array
    assert pixels.dtype == np.int16
    np.testing.assert_array_equal(pixels, np.asanyarray(img.dataobj)[:, :, -1].T)


@pytest.mark.parametrize("oblique", [True, False], ids=["oblique", "axial-LPS"])
def test_convert_dicom_keeps_world_geometry(tmp_path, oblique):
    img = _volume(oblique)
    folder = write_dicom_series(img, tmp_path / "dcm")
    workdir = tmp_path / "work"
    workdir.mkdir()
    out = convert_dicom(folder, workdir, subject="S01", modality="t1")
    assert workdir in out.parents and out.name.endswith(".nii.gz")
    converted = nib.load(out)
    assert converted.get_data_dtype() == np.int16
    _assert_same_world_image(img, converted)


def _variant(img: nib.Nifti1Image, modality: str) -> nib.Nifti1Image:
    """The test volume with a per-modality offset: ingest refuses one image given for two modalities."""
    data = np.asanyarray(img.dataobj) + MODALITIES.index(modality)
    return nib.Nifti1Image(data.astype(img.get_data_dtype()), img.affine, img.header)


def _nifti_subject(img: nib.Nifti1Image, tmp_path, sid: str, **images) -> Subject:
    paths = {}
    for modality in MODALITIES:
        paths[modality] = images.get(modality) or tmp_path / "nifti" / f"{modality}.nii.gz"
        if modality not in images:
            paths[modality].parent.mkdir(parents=True, exist_ok=True)
            nib.save(_variant(img, modality), paths[modality])
    return Subject(sid, paths)


def test_ingest_mixes_dicom_and_nifti(tmp_path):
    img = _volume()
    folder = write_dicom_series(img, tmp_path / "t1_dicom")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    subject = _nifti_subject(img, tmp_path, "S01", t1=folder)
    out_dir = tmp_path / "ingest"
    record = ingest_subject(subject, out_dir)

    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # dcm2niix wrote nothing there
    saved = json.loads((out_dir / "ingest.json").read_text())
    assert saved["inputs"] == record["inputs"]
    t1 = saved["inputs"]["t1"]
    assert t1["format"] == "dicom"
    assert t1["path"] == str(folder)
    assert t1["sha256"] == folder_sha256(folder)
    assert len(t1["sha256"]) == 64
    assert saved["images"]["t1"]["output_orientation"] == "RAS"
    for modality in ("t1c", "t2", "flair"):
        assert saved["inputs"][modality]["format"] == "nifti"
        assert saved["inputs"][modality]["sha256"] == sha256_file(subject.images[modality])
    for modality in MODALITIES:
        written = nib.load(out_dir / f"{modality}.nii.gz")
        assert "".join(nib.aff2axcodes(written.affine)) == "RAS"
        _assert_same_world_image(img if modality == "t1" else _variant(img, modality), written)


def test_two_series_in_one_folder_is_refused(tmp_path):
    img = _volume()
    folder = tmp_path / "t1_dicom"
    write_dicom_series(img, folder, series_number=3, description="T1")
    write_dicom_series(img, folder, series_number=4, description="T1_repeat")
    series = {pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID for f in folder.iterdir()}
    assert len(series) == 2
    subject = _nifti_subject(img, tmp_path, "S02", t1=folder)
    out_dir = tmp_path / "ingest"
    with pytest.raises(InputError) as info:
        ingest_subject(subject, out_dir)
    message = str(info.value)
    assert "S02" in message
    assert "T1" in message
    assert "2 image series" in message
    assert str(folder) in message
    assert not out_dir.exists()


def test_empty_dicom_folder_is_refused(tmp_path):
    img = _volume()
    folder = tmp_path / "t2_dicom"
    folder.mkdir()
    with pytest.raises(InputError, match="empty"):
        convert_dicom(folder, tmp_path, subject="S03", modality="t2")
    subject = _nifti_subject(img, tmp_path, "S03", t2=folder)
    out_dir = tmp_path / "ingest"
    with pytest.raises(InputError, match="empty") as info:
        ingest_subject(subject, out_dir)
    assert "S03" in str(info.value) and "T2" in str(info.value)
    assert not out_dir.exists()
