"""Write a NIfTI image as a real single-frame MR DICOM series, for tests of DICOM ingest.

Geometry: voxel axis i runs along a DICOM row (column index), axis j down the columns (row index) and axis k
across the slices, one file per slice. NIfTI affines are RAS+ world, DICOM patient coordinates are LPS+.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import BasicTextSRStorage, MRImageStorage, PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6g}"


def _dataset(sop_class: str, sop_uid: str) -> Dataset:
    """An empty DICOM object of `sop_class` with its file meta information, explicit VR little endian."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    return ds


def write_dicom_series(img: nib.Nifti1Image, folder: Path, *, series_number: int = 1, description: str = "T1",
                       patient_id: str = "SYNTH", study: str = "1", study_datetime: str = "20240101 120000",
                       tags: dict | None = None, reverse: bool = False, first_instance: int = 1) -> Path:
    """Write `img` (3-D) as one DICOM file per slice along its third voxel axis into `folder`; return `folder`.

    study: names the study (its UID is made from it and the patient); tags: more attributes by keyword
    (EchoTime, ContrastBolusAgent, ...); reverse: instance numbers run against the slice order, as some scanners
    write them; first_instance: the first instance number, so several calls can fill one series (a localiser's
    three planes, a DWI's b-values)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = np.asarray(img.dataobj)
    if data.ndim != 3:
        raise ValueError(f"expected a 3-D image, got shape {data.shape}")
    data = np.rint(data).astype(np.int16) if data.dtype != np.int16 else data

    lps = RAS_TO_LPS @ img.affine[:3, :]  # 3x4: voxel (i, j, k, 1) -> LPS mm
    steps = lps[:, :3]
    sizes = np.linalg.norm(steps, axis=0)  # mm per voxel along i, j, k
    row_dir, col_dir = steps[:, 0] / sizes[0], steps[:, 1] / sizes[1]
    orientation = [_ds(v) for v in (*row_dir, *col_dir)]
    # PixelSpacing is (spacing between rows, spacing between columns) = (step along j, step along i).
    pixel_spacing = [_ds(sizes[1]), _ds(sizes[0])]

    study_uid = _uid(patient_id, "study", study)
    series_uid = _uid(patient_id, study, "series", series_number, description)
    frame_uid = _uid(patient_id, study, "frame")
    study_date, study_time = study_datetime.split()
    for k in range(data.shape[2]):
        instance = first_instance + (data.shape[2] - 1 - k if reverse else k)
        sop_uid = _uid(patient_id, study, "image", series_number, description, instance)
        ds = _dataset(MRImageStorage, sop_uid)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "MR"
        ds.PatientName = patient_id
        ds.PatientID = patient_id
        ds.StudyDate = ds.SeriesDate = study_date
        ds.StudyTime = ds.SeriesTime = study_time
        ds.StudyID = study
        ds.SeriesNumber = series_number
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = instance
        ds.SeriesDescription = ds.ProtocolName = description
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.Manufacturer = "bratsflow-tests"
        ds.PatientPosition = "HFS"

        ds.ImagePositionPatient = [_ds(v) for v in lps @ [0.0, 0.0, k, 1.0]]
        ds.ImageOrientationPatient = orientation
        ds.PixelSpacing = pixel_spacing
        ds.SliceThickness = _ds(sizes[2])
        ds.SpacingBetweenSlices = _ds(sizes[2])

        plane = np.ascontiguousarray(data[:, :, k].T)  # rows follow j, columns follow i
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1  # signed
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.PixelData = plane.astype("<i2").tobytes()
        for keyword, value in (tags or {}).items():
            setattr(ds, keyword, value)

        name = "".join(c if c.isalnum() else "_" for c in description)
        ds.save_as(folder / f"{name}_s{series_number:03d}_{instance:04d}.dcm", enforce_file_format=True)
    return folder


def write_report_object(folder: Path, *, series_number: int, patient_id: str = "SYNTH", study: str = "1") -> Path:
    """A DICOM structured report (no pixels) in the study, as PACS exports carry beside the images."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sop_uid = _uid(patient_id, study, "report", series_number)
    ds = _dataset(BasicTextSRStorage, sop_uid)
    ds.StudyInstanceUID = _uid(patient_id, "study", study)
    ds.SeriesInstanceUID = _uid(patient_id, study, "report-series", series_number)
    ds.Modality = "SR"
    ds.PatientID = patient_id
    ds.StudyDate, ds.StudyTime = "20240101", "120000"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    ds.SeriesDescription = "Radiology report"
    path = folder / f"report_s{series_number:03d}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path
