"""DICOM out: the fused segmentation as a DICOM Segmentation object on the source T1c series' own grid."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from bratsflow.cli import main
from bratsflow.cohort import Subject
from bratsflow.dicom_export import CATEGORY, LABEL_CODES, PROCEDURE, export_subject
from bratsflow.errors import InputError
from bratsflow.ingest import ingest_subject
from bratsflow.labels import CONVENTIONS, get_convention
from bratsflow.paths import StepFiles
from bratsflow.step import StepRun
from dicom_helpers import write_dicom_series

try:
    import highdicom  # noqa: F401
except ImportError:
    # A dependency (pyproject.toml): an environment installed before it was added skips, CI fails.
    if os.environ.get("CI"):
        raise
    pytest.skip("highdicom is not installed (pip install -e .)", allow_module_level=True)

SHAPE = (24, 20, 12)
MEMBERS = ["member_a", "member_b"]


def _image(offset: int, affine: np.ndarray) -> nib.Nifti1Image:
    i, j, k = np.meshgrid(*(np.arange(n, dtype=float) for n in SHAPE), indexing="ij")
    return nib.Nifti1Image(np.rint(100 + 5 * i + 3 * j + 7 * k + offset).astype(np.int16), affine)


def _oblique_lps_affine() -> np.ndarray:
    """A T1c stored as a scanner would write an axial series: columns run right to left, rows front to back, slices
    foot to head, tilted a few degrees (RAS affine, 0.9 × 1.1 × 2.5 mm)."""
    angle = np.deg2rad(7.0)
    tilt = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = tilt @ np.diag([-1.0, -1.0, 1.0]) @ np.diag([0.9, 1.1, 2.5])
    affine[:3, 3] = [30.0, 12.0, -20.0]
    return affine


def _labels(convention: str) -> np.ndarray:
    """Every label of the set, in blocks that differ along all three source axes (an axis flipped or swapped
    shows), with empty slices at both ends."""
    values = np.asarray(get_convention(convention).values, dtype=np.uint8)
    i, j, k = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    labels = values[(i // 5 + 2 * (j // 7) + k) % len(values)]
    labels[(i < 3) | (j > 16)] = 0
    labels[:, :, [0, SHAPE[2] - 1]] = 0
    return labels.astype(np.uint8)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """A study of four series, the T1c oblique and written against its slice order; ingested."""
    root = tmp_path_factory.mktemp("export")
    folder = root / "pacs" / "P1"
    affine = _oblique_lps_affine()
    series = {
        "t1": (2, "t1_mprage_sag_p2", {"MRAcquisitionType": "3D"}, False),
        "t1c": (8, "AX T1 POST GAD", {"MRAcquisitionType": "3D", "ContrastBolusAgent": "Gadobutrol"}, True),
        "t2": (4, "T2 TSE AX", {"MRAcquisitionType": "2D", "EchoTime": 95}, False),
        "flair": (5, "AX FLAIR", {"MRAcquisitionType": "2D", "EchoTime": 90, "InversionTime": 2500}, False),
    }
    for index, (modality, (number, description, tags, reverse)) in enumerate(series.items()):
        write_dicom_series(_image(10 * index, affine), folder / f"s{number}", series_number=number,
                           description=description, tags=tags, reverse=reverse, patient_id="P1",
                           study_datetime="20240301 093000")
    subject = Subject("P1", {}, study=folder)
    ingest_out = root / "results" / "P1" / "ingest"
    ingest_subject(subject, ingest_out)
    fuse = StepFiles(root / "results" / "P1" / "fuse", "fuse")
    fuse.folder.mkdir(parents=True)
    StepRun("fuse", "P1", fuse.record, parameters={"members": MEMBERS}).finish()
    return {"root": root, "folder": folder, "t1c": folder / "s8", "affine": affine,
            "ingest": StepFiles(ingest_out, "ingest"), "fuse": fuse}


def _native(study: dict, labels: np.ndarray, path: Path) -> Path:
    """The label map (given on the source series' voxel grid) on the grid of ingest's converted T1c, as
    to-native writes a native segmentation: each voxel takes the label at its world position."""
    grid = nib.load(study["ingest"].image("t1c"))
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij"), axis=-1).reshape(-1, 3)
    world = ijk @ grid.affine[:3, :3].T + grid.affine[:3, 3]
    inverse = np.linalg.inv(study["affine"])
    source = np.rint(world @ inverse[:3, :3].T + inverse[:3, 3]).astype(int)
    native = labels[source[:, 0], source[:, 1], source[:, 2]].reshape(grid.shape)
    nib.save(nib.Nifti1Image(native, grid.affine), path)
    return path


def _export(study: dict, labels: np.ndarray, out: Path, convention: str = "brats2023") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    native = _native(study, labels, out / "native.nii.gz")
    return export_subject("P1", native, study["ingest"].record, study["fuse"].record, out / "export",
                          convention=convention)


def _sources(study: dict) -> dict[str, pydicom.Dataset]:
    return {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(p) for p in sorted(study["t1c"].iterdir()))}


def _expected_frame(labels: np.ndarray, ds: pydicom.Dataset, value: int) -> np.ndarray:
    """The source image's slice of the label map: the helpers write slice k of the source grid as the image whose
    position is voxel (0, 0, k), rows along j and columns along i."""
    positions = {tuple(np.round(np.asarray(_lps(k), float), 3)): k for k in range(SHAPE[2])}
    k = positions[tuple(np.round(np.asarray(ds.ImagePositionPatient, float), 3))]
    return (labels[:, :, k].T == value).astype(np.uint8)


def _lps(k: int) -> np.ndarray:
    affine = _oblique_lps_affine()
    return np.diag([-1.0, -1.0, 1.0]) @ (affine[:3, :3] @ [0, 0, k] + affine[:3, 3])


@pytest.mark.parametrize("convention", ["brats2023", "brats2021", "brats-gli-post"])
def test_read_back_each_segment_equals_the_label_map_frame_by_frame(study, tmp_path, convention):
    labels = _labels(convention)
    seg = pydicom.dcmread(_export(study, labels, tmp_path, convention))
    sources = _sources(study)
    label_set = get_convention(convention)
    values = dict(enumerate(label_set.values, start=1))
    pixels = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    seen = set()
    for index, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        source_uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        source = sources[source_uid]
        position = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float)
        np.testing.assert_allclose(position, np.asarray(source.ImagePositionPatient, float), atol=1e-4)
        segment = frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        np.testing.assert_array_equal(pixels[index], _expected_frame(labels, source, values[segment]))
        seen.add((source_uid, segment))
    # Frames left out are empty: every voxel of every label is in a frame that was written.
    for uid, source in sources.items():
        for segment, value in values.items():
            if (uid, segment) not in seen:
                assert not _expected_frame(labels, source, value).any()
    assert {(s, n) for s in sources for n, v in values.items() if _expected_frame(labels, sources[s], v).any()} == seen


def test_segments_are_coded_and_the_object_refers_to_the_source(study, tmp_path):
    seg = pydicom.dcmread(_export(study, _labels("brats2023"), tmp_path))
    source = next(iter(_sources(study).values()))
    assert seg.SOPClassUID == pydicom.uid.SegmentationStorage and seg.SegmentationType == "BINARY"
    assert (seg.StudyInstanceUID, seg.FrameOfReferenceUID, seg.PatientID) == (
        source.StudyInstanceUID, source.FrameOfReferenceUID, source.PatientID)
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == set(_sources(study))
    orientation = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    np.testing.assert_allclose(np.asarray(orientation, float), np.asarray(source.ImageOrientationPatient, float),
                               atol=1e-6)
    spacing = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    np.testing.assert_allclose(np.asarray(spacing, float), np.asarray(source.PixelSpacing, float))
    described = {item.SegmentNumber: item for item in seg.SegmentSequence}
    for number, name in enumerate(get_convention("brats2023").labels, start=1):
        item = described[number]
        assert item.SegmentLabel == name
        code = item.SegmentedPropertyTypeCodeSequence[0]
        assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == LABEL_CODES[name]
        category = item.SegmentedPropertyCategoryCodeSequence[0]
        assert (category.CodeValue, category.CodingSchemeDesignator) == CATEGORY[:2]
        algorithm = item.SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == "bratsflow"
        assert "member_a member_b" in str(algorithm.AlgorithmParameters)
    # Dates from the source, not the clock.
    assert (seg.ContentDate, seg.InstanceCreationDate) == ("20240301", "20240301")


def test_every_label_set_has_codes():
    assert {name for label_set in CONVENTIONS.values() for name in label_set.labels} <= set(LABEL_CODES)


def _report(export_folder: Path):
    import highdicom as hd

    return hd.sr.srread(StepFiles(export_folder, "export").dicom_measurements)


def _voxel_ml(native: Path) -> float:
    return float(np.prod(nib.load(native).header.get_zooms()[:3])) / 1000.0


@pytest.mark.parametrize("convention", ["brats2023", "brats-gli-post"])
def test_the_report_holds_each_region_and_label_volume_of_the_native_map(study, tmp_path, convention):
    """The SR's volumes are the native map's, unrounded: a volume per segment, referencing it, and one per scored
    region of the label set, naming its labels."""
    from highdicom.sr import VolumetricROIMeasurementsAndQualitativeEvaluations as Volumetric

    seg = pydicom.dcmread(_export(study, _labels(convention), tmp_path, convention))
    native = np.asarray(nib.load(tmp_path / "native.nii.gz").dataobj)
    voxel_ml = _voxel_ml(tmp_path / "native.nii.gz")
    label_set = get_convention(convention)
    sr = _report(tmp_path / "export")
    groups = {group.tracking_identifier: group for group in (*sr.content.get_volumetric_roi_measurement_groups(),
                                                             *sr.content.get_image_measurement_groups())}
    assert len(groups) == len(label_set.labels) + len(label_set.regions)
    for number, (name, value) in enumerate(label_set.labels.items(), start=1):
        group = groups[name]
        assert isinstance(group, Volumetric)
        segment = group.referenced_segment
        assert (segment.referenced_sop_instance_uid, segment.referenced_segment_numbers) == (
            seg.SOPInstanceUID, [number])
        (volume,) = group.get_measurements()
        assert volume.unit.value == "mL"
        assert volume.value == pytest.approx(np.count_nonzero(native == value) * voxel_ml, rel=1e-12)
    for region, members in label_set.regions.items():
        group = groups[f"{region} ({' + '.join(members)})"]
        (volume,) = group.get_measurements()
        expected = np.isin(native, label_set.region_labels(region)).sum() * voxel_ml
        assert volume.value == pytest.approx(expected, rel=1e-12) and volume.value > 0
    record = json.loads(StepFiles(tmp_path / "export", "export").record.read_text())
    assert record["outputs"]["measurements"]["volumes_ml"]["regions"] == pytest.approx(
        {r: groups[f"{r} ({' + '.join(m)})"].get_measurements()[0].value for r, m in label_set.regions.items()})


def test_the_report_refers_to_the_segmentation_and_the_source_study(study, tmp_path):
    seg = pydicom.dcmread(_export(study, _labels("brats2023"), tmp_path))
    sr = pydicom.dcmread(tmp_path / "export" / "measurements.dcm")
    source = next(iter(_sources(study).values()))
    assert sr.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage
    assert (sr.StudyInstanceUID, sr.PatientID) == (source.StudyInstanceUID, source.PatientID)
    assert sr.SeriesInstanceUID not in (seg.SeriesInstanceUID, source.SeriesInstanceUID)
    evidence = {item.ReferencedSOPInstanceUID for study_item in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study_item.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    assert seg.SOPInstanceUID in evidence
    report = _report(tmp_path / "export")
    (observer,) = report.content.get_observer_contexts()
    assert observer.observer_type.value == "121007"  # Device
    assert (observer.observer_identifying_attributes.name, sr.ContentDate, sr.InstanceCreationDate) == (
        "bratsflow", "20240301", "20240301")
    procedures = [item.ConceptCodeSequence[0].CodeValue for item in sr.ContentSequence
                  if item.ConceptNameCodeSequence[0].CodeValue == "121058"]  # Procedure reported
    assert procedures == [PROCEDURE[0]]


def test_a_rerun_writes_identical_bytes_and_other_labels_other_uids(study, tmp_path):
    labels = _labels("brats2023")
    first = _export(study, labels, tmp_path / "a").read_bytes()
    assert _export(study, labels, tmp_path / "b").read_bytes() == first
    assert ((tmp_path / "a" / "export" / "measurements.dcm").read_bytes()
            == (tmp_path / "b" / "export" / "measurements.dcm").read_bytes())
    changed = labels.copy()
    changed[changed == 2] = 1
    other = pydicom.dcmread(_export(study, changed, tmp_path / "c"))
    assert other.SOPInstanceUID != pydicom.dcmread(tmp_path / "a" / "export" / "segmentation.dcm").SOPInstanceUID
    assert (pydicom.dcmread(tmp_path / "c" / "export" / "measurements.dcm").SOPInstanceUID
            != pydicom.dcmread(tmp_path / "a" / "export" / "measurements.dcm").SOPInstanceUID)


def test_a_map_off_the_series_grid_is_refused(study, tmp_path):
    native = _native(study, _labels("brats2023"), tmp_path / "native.nii.gz")
    img = nib.load(native)
    shifted = img.affine.copy()
    shifted[:3, 3] += 0.4
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), shifted), native)
    with pytest.raises(InputError, match="not on the grid of the T1c series"):
        export_subject("P1", native, study["ingest"].record, study["fuse"].record, tmp_path / "export")


def test_changed_source_files_are_refused(study, tmp_path):
    copy = tmp_path / "pacs"
    shutil.copytree(study["folder"], copy)
    record = study["ingest"].record.read_text().replace(str(study["folder"]), str(copy))
    moved = tmp_path / "ingest.json"
    moved.write_text(record)
    first = sorted((copy / "s8").iterdir())[0]
    ds = pydicom.dcmread(first)
    ds.SeriesDescription = "edited"
    ds.save_as(first)
    native = _native(study, _labels("brats2023"), tmp_path / "native.nii.gz")
    with pytest.raises(InputError, match="changed since ingest"):
        export_subject("P1", native, moved, study["fuse"].record, tmp_path / "export")


def test_dciodvfy_finds_no_errors(study, tmp_path):
    """dciodvfy (Debian's dicom3tools) checks the segmentation and the report against the standard's IODs: no
    error lines."""
    binary = shutil.which("dciodvfy")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("dciodvfy is not installed (.ci/run installs dicom3tools)")
        pytest.skip("dciodvfy is not installed (apt-get install dicom3tools)")
    path = _export(study, _labels("brats2023"), tmp_path)
    for dicom in (path, StepFiles(path.parent, "export").dicom_measurements):
        result = subprocess.run([binary, str(dicom)], capture_output=True, text=True)
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
        assert not errors, f"{dicom.name}:\n" + "\n".join(errors)


def test_the_command_exports_a_t1c_given_as_a_series_folder_and_records_it(study, tmp_path):
    """A sheet cell naming the T1c's series folder (no study) works too; the record names the series, the
    segments and the members."""
    folders = {m: study["folder"] / f"s{n}" for m, n in (("t1", 2), ("t1c", 8), ("t2", 4), ("flair", 5))}
    ingest = StepFiles(tmp_path / "ingest", "ingest")
    ingest_subject(Subject("P1", folders), ingest.folder)
    native = _native(study, _labels("brats2023"), tmp_path / "native.nii.gz")
    out = tmp_path / "export"
    assert main(["export", "--subject", "P1", "--segmentation", str(native), "--ingest-record", str(ingest.record),
                 "--fuse-record", str(study["fuse"].record), "--out", str(out)]) == 0
    files = StepFiles(out, "export")
    record = json.loads(files.record.read_text())
    assert record["outputs"]["segmentation"]["path"] == files.dicom_segmentation.name
    assert record["outputs"]["measurements"]["path"] == files.dicom_measurements.name
    assert record["source_series"]["uid"] == pydicom.dcmread(next(folders["t1c"].iterdir())).SeriesInstanceUID
    assert record["segments"] == {"1": "NETC", "2": "SNFH", "3": "ET"} and record["members"] == MEMBERS
    assert record["parameters"]["series_number"] == pydicom.dcmread(files.dicom_segmentation).SeriesNumber
