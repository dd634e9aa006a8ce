"""DICOM out: a subject's fused segmentation, mapped to its native T1c space, as a DICOM Segmentation object
(highdicom) on the grid of the T1c series it came from, so a PACS shows it over that series, and a DICOM SR
measurement report (TID 1500) of its volumes beside it (README, DICOM out).

The object refers to the source images (their study, series and frame of reference carry over); one BINARY
segment per label of the run's label set, coded by LABEL_CODES. The report holds one volume per segment and one
per scored region of the label set. Their UIDs and dates come from the inputs, so a rerun writes the same bytes
and the manifest can list them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .dicom_study import Series, files_sha256, scan
from .errors import InputError
from .io import load_image
from .labels import DEFAULT_CONVENTION, check_labels, get_convention
from .paths import StepFiles
from .step import StepRun, read_record

if TYPE_CHECKING:
    from pydicom import Dataset

STEP = "export"
# The native space the object lies in: the series a reader most often reviews a glioma on.
SPACE = "t1c"
# High enough to sort after the scanner's series in a PACS viewer.
DEFAULT_SERIES_NUMBER = 9901
DEFAULT_SERIES_DESCRIPTION = "bratsflow tumour segmentation"
# The report's series sorts right after the segmentation's.
REPORT_SERIES_OFFSET = 1
REPORT_SERIES_DESCRIPTION = "bratsflow tumour volumes"
CONFIG_DEFAULTS = {"export.series_number": DEFAULT_SERIES_NUMBER,
                   "export.series_description": DEFAULT_SERIES_DESCRIPTION}

# A private coding scheme (the "99" prefix) for what SNOMED CT has no concept for.
LOCAL_SCHEME = "99BRATSFLOW"
# (code value, coding scheme, code meaning). Every segment is a morphologically abnormal structure in the brain.
CATEGORY = ("49755003", "SCT", "Morphologically Abnormal Structure")
ANATOMY = ("12738006", "SCT", "Brain")
# Label name -> its segmented property type. Names mean the same in every label set (bratsflow.labels), so one
# table serves them all. SNOMED CT has no concept for "enhancing": ET is the neoplasm itself, NETC its necrotic
# and non-enhancing core.
LABEL_CODES: dict[str, tuple[str, str, str]] = {
    "NETC": ("6574001", "SCT", "Necrosis"),
    "SNFH": ("79654002", "SCT", "Edema"),
    "ET": ("108369006", "SCT", "Neoplasm"),
    "ED": ("79654002", "SCT", "Edema"),
    "CC": ("367643001", "SCT", "Cyst"),
    "GTV": ("228791009", "SCT", "Gross Tumor Volume"),
    "RC": ("RC", LOCAL_SCHEME, "Resection cavity"),
}
# What the report's TID 1500 names: the procedure (LOINC's MR brain), what is measured, its unit, and each region's
# finding (regions are sets of labels, which SNOMED CT has no concept for).
PROCEDURE = ("24590-2", "LN", "MR Brain")
VOLUME = ("118565006", "SCT", "Volume")
MILLILITRE = ("mL", "UCUM", "milliliter")
REGION_FINDING = ("REGION", LOCAL_SCHEME, "Tumour region")

# How far (in voxels) a DICOM pixel centre may lie from a voxel centre of the label map and still be that voxel:
# dcm2niix stores the affine in float32, so the same grid agrees to about 1e-5 voxel.
GRID_TOLERANCE = 1e-2
# Content date and time when the source images carry none (they are taken from the inputs, never the clock).
FALLBACK_DATETIME = ("19700101", "000000")

# Type 2 attributes of the patient and study modules that the object copies from the source: exports from some
# PACS leave them out, where the standard asks for them present, if empty.
PATIENT_STUDY_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                       "StudyDate", "StudyTime", "ReferringPhysicianName")

# NIfTI world coordinates are RAS, DICOM's patient coordinates LPS.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def source_series(ingest_record: str | Path, subject: str | None = None) -> tuple[Series, Path]:
    """The T1c series ingest converted, and its study (or series) folder: found again by the UID in the record,
    and refused when its files changed since."""
    record = read_record(ingest_record, subject)
    entry = record["inputs"].get(SPACE)
    if entry is None or entry.get("format") != "dicom":
        raise InputError(f"the T1c image did not come from DICOM ({entry and entry.get('format')}): there is no "
                         "series to export onto", subject=subject, file=ingest_record)
    folder = Path(entry["path"])
    found, _ = scan(folder, subject)
    uid = entry.get("series_uid")
    matches = [s for s in found if uid is None or s.uid == uid]
    if len(matches) != 1:
        what = f"series {uid} is not in the folder any more" if uid else f"folder holds {len(matches)} series"
        raise InputError(f"the T1c {what}: rerun the subject's ingest", subject=subject, modality=SPACE, file=folder)
    series = matches[0]
    # A study's checksum covers the chosen series' files, a series folder's every file in it (ingest).
    if uid is None:
        files = [p for p in folder.rglob("*") if p.is_file()]
    else:
        files = [path for _, path in series.files]
    if files_sha256(files, folder) != entry["sha256"]:
        raise InputError("the T1c DICOM files changed since ingest (SHA-256 differs from ingest.json): rerun the "
                         "subject", subject=subject, modality=SPACE, file=folder)
    return series, folder


def read_headers(series: Series, subject: str | None = None) -> list[Dataset]:
    """The series' single-frame images, headers only, in InstanceNumber order."""
    from pydicom import dcmread

    datasets = [dcmread(path, stop_before_pixels=True) for path in series.sorted_files()]
    multi = [ds for ds in datasets if int(ds.get("NumberOfFrames", 1) or 1) > 1]
    if multi:
        raise InputError("the T1c series holds multi-frame images: only single-frame series can be exported onto",
                         subject=subject, modality=SPACE)
    for ds in datasets:
        for keyword in PATIENT_STUDY_TYPE2:
            if keyword not in ds:
                setattr(ds, keyword, None)
    return datasets


def pixel_voxels(ds: Dataset, affine: np.ndarray) -> np.ndarray:
    """The (rows, columns, 3) voxel coordinates in a NIfTI of this `affine` of each pixel centre of one image."""
    position = np.asarray(ds.ImagePositionPatient, dtype=float)
    orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
    row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    # DICOM PS3.3 C.7.6.2.1.1: along a row the column index moves by the row direction cosine (first triplet).
    rows, columns = np.meshgrid(np.arange(ds.Rows), np.arange(ds.Columns), indexing="ij")
    lps = (position + columns[..., None] * column_spacing * orientation[:3]
           + rows[..., None] * row_spacing * orientation[3:])
    ras = lps @ _LPS_TO_RAS.T
    inverse = np.linalg.inv(affine)
    return ras @ inverse[:3, :3].T + inverse[:3, 3]


def frames_on_series(labels: np.ndarray, affine: np.ndarray, datasets: list[Dataset],
                     subject: str | None = None, file: Path | None = None) -> np.ndarray:
    """The label map read at every pixel of every source image: (images, rows, columns). Each pixel centre must be
    a voxel centre of the map (the same grid, no resampling), or an InputError says how far off it is."""
    frames = np.zeros((len(datasets), int(datasets[0].Rows), int(datasets[0].Columns)), dtype=labels.dtype)
    for index, ds in enumerate(datasets):
        voxels = pixel_voxels(ds, affine)
        nearest = np.rint(voxels).astype(int)
        off = float(np.abs(voxels - nearest).max())
        outside = (nearest < 0) | (nearest >= np.asarray(labels.shape[:3]))
        if off > GRID_TOLERANCE or outside.any():
            raise InputError(f"not on the grid of the T1c series (image {ds.get('InstanceNumber')}: pixel centres "
                             f"{off:.3g} voxels off the map's voxel centres"
                             f"{', some outside the map' if outside.any() else ''}): export needs the segmentation "
                             "in native T1c space", subject=subject, file=file)
        frames[index] = labels[nearest[..., 0], nearest[..., 1], nearest[..., 2]]
    return frames


def _date_time(ds: Dataset) -> tuple[str, str]:
    for date, time in (("ContentDate", "ContentTime"), ("SeriesDate", "SeriesTime"), ("StudyDate", "StudyTime")):
        if ds.get(date):
            return str(ds.get(date)), str(ds.get(time) or "000000").split(".")[0]
    return FALLBACK_DATETIME


def _unstamp(dataset: Dataset, date: str, time: str) -> None:
    """The source's date and time where highdicom stamps the clock's: they would make every rerun's bytes differ."""
    dataset.InstanceCreationDate, dataset.InstanceCreationTime = date, time
    for equipment in dataset.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in equipment:
            equipment.ContributionDateTime = date + time


def _concept(code: tuple[str, str, str]):
    from highdicom.sr import CodedConcept

    return CodedConcept(*code)


def _uid_factory(seed: list[str]):
    import highdicom as hd
    from pydicom.uid import generate_uid

    def uid(role: str) -> str:
        # highdicom's version is written into the objects (their contributing equipment), so it names them too.
        return generate_uid(entropy_srcs=[*seed, f"highdicom={hd.__version__}", role])
    return uid


def volumes_ml(labels: np.ndarray, voxel_ml: float, convention: str) -> dict[str, dict[str, float]]:
    """Each label's and each scored region's volume (mL, unrounded): what the report holds."""
    label_set = get_convention(convention)
    counts = {name: int(np.count_nonzero(labels == value)) for name, value in label_set.labels.items()}
    return {"labels": {name: count * voxel_ml for name, count in counts.items()},
            "regions": {region: sum(counts[name] for name in members) * voxel_ml
                        for region, members in label_set.regions.items()}}


def build_report(seg: Dataset, datasets: list[Dataset], volumes: dict[str, dict[str, float]], *, convention: str,
                 seed: list[str], series_number: int, version: str) -> Dataset:
    """The TID 1500 measurement report on `seg`: a volumetric ROI group (TID 1411) per segment, referencing it,
    and a group (TID 1501) per scored region of `convention`. TID 1411 references exactly one segment, so a
    region of several labels cannot be one; its group names its labels, whose own groups reference them."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    label_set = get_convention(convention)
    uid = _uid_factory(seed)
    volume, unit, anatomy = _concept(VOLUME), _concept(MILLILITRE), _concept(ANATOMY)
    algorithm = hd.sr.AlgorithmIdentification(name="bratsflow", version=version)
    # The series, not its images: an empty segment (no ET) has no frames to name images by.
    source = hd.sr.SourceSeriesForSegmentation(datasets[0].SeriesInstanceUID)

    def measurement(value: float) -> hd.sr.Measurement:
        return hd.sr.Measurement(name=volume, value=value, unit=unit, algorithm_id=algorithm)

    groups: list = [
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=uid(f"tracking:{name}"), identifier=name),
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=number,
                source_series=source),
            finding_type=_concept(LABEL_CODES[name]), finding_sites=[hd.sr.FindingSite(anatomy)],
            algorithm_id=algorithm, measurements=[measurement(volumes["labels"][name])])
        for number, name in enumerate(label_set.labels, start=1)]
    groups += [
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=uid(f"tracking:region:{region}"), identifier=f"{region} ({' + '.join(members)})"),
            finding_type=_concept(REGION_FINDING), finding_sites=[hd.sr.FindingSite(anatomy)],
            algorithm_id=algorithm, measurements=[measurement(volumes["regions"][region])])
        for region, members in label_set.regions.items()]
    # The device's identity is bratsflow's version, not the subject's inputs.
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=["bratsflow", version]), name="bratsflow", manufacturer_name="bratsflow",
        model_name="bratsflow", serial_number=version)
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=_concept(PROCEDURE),
                                     imaging_measurements=groups)
    date, time = _date_time(datasets[0])
    sr = hd.sr.Comprehensive3DSR(
        evidence=[seg, *datasets], content=report, series_instance_uid=uid("report-series"),
        series_number=series_number, sop_instance_uid=uid("report-instance"), instance_number=1,
        manufacturer="bratsflow", is_complete=True, series_description=REPORT_SERIES_DESCRIPTION,
        content_date=date, content_time=time)
    _unstamp(sr, date, time)
    return sr


def build_segmentation(datasets: list[Dataset], frames: np.ndarray, *, convention: str, members: list[str],
                       seed: list[str], series_number: int, series_description: str, version: str) -> Dataset:
    """The Segmentation object: one BINARY segment per label of `convention` (segment i is the i-th label), its
    UIDs generated from `seed` (the inputs' checksums and the parameters)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    label_set = get_convention(convention)
    unknown = sorted(set(label_set.labels) - set(LABEL_CODES))
    if unknown:
        raise InputError(f"no DICOM code for label(s) {unknown} of convention {convention}")
    algorithm = hd.AlgorithmIdentificationSequence(
        name="bratsflow", family=codes.cid7162.ArtificialIntelligence, version=version,
        parameters={"convention": convention, "ensemble": " ".join(members)})
    segments = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=name, segmented_property_category=_concept(CATEGORY),
            segmented_property_type=_concept(LABEL_CODES[name]), algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm, anatomic_regions=[_concept(ANATOMY)])
        for number, name in enumerate(label_set.labels, start=1)]
    binary = np.stack([frames == value for value in label_set.labels.values()], axis=-1).astype(np.uint8)
    uid = _uid_factory(seed)
    date, time = _date_time(datasets[0])
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=binary, segmentation_type="BINARY", segment_descriptions=segments,
        series_instance_uid=uid("series"), series_number=series_number, sop_instance_uid=uid("instance"),
        instance_number=1, manufacturer="bratsflow", manufacturer_model_name="bratsflow", software_versions=version,
        device_serial_number="0", content_label="TUMOUR", content_description=series_description[:64],
        series_description=series_description, content_date=date, content_time=time)
    _unstamp(seg, date, time)
    # highdicom draws this one at random.
    organisation = uid("dimension-organisation")
    for item in (*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence):
        item.DimensionOrganizationUID = organisation
    return seg


def export_subject(subject: str, segmentation: str | Path, ingest_record: str | Path, fuse_record: str | Path,
                   out: str | Path, *, convention: str = DEFAULT_CONVENTION,
                   series_number: int = DEFAULT_SERIES_NUMBER,
                   series_description: str = DEFAULT_SERIES_DESCRIPTION) -> Path:
    """Write RESULTS/<subject>/export/segmentation.dcm, measurements.dcm (its volumes, DICOM SR) and export.json
    from the native-T1c segmentation."""
    from . import __version__

    files = StepFiles(out, STEP)
    run = StepRun(STEP, subject, files.record, parameters={
        "convention": convention, "series_number": series_number, "series_description": series_description,
        "space": SPACE, "version": __version__})
    with run.phase("read"):
        series, folder = source_series(ingest_record, subject)
        datasets = read_headers(series, subject)
        image = load_image(segmentation, subject=subject)
        labels = np.asarray(image.dataobj)
        check_labels(labels, convention, subject=subject, file=segmentation)
        members = read_record(fuse_record, subject)["parameters"].get("members") or []
        run.add_inputs({"segmentation": segmentation, "ingest_record": ingest_record, "fuse_record": fuse_record})
        # The records hold timings: the object's identity comes from the images, not from them.
        seed_inputs = {"segmentation": run.inputs["segmentation"]["sha256"],
                       "t1c_series": files_sha256([path for _, path in series.files], folder)}
        run.add_input("t1c_series", {"path": str(folder), "format": "dicom", "series_uid": series.uid,
                                     "files": len(series.files), "sha256": seed_inputs["t1c_series"]})
    with run.phase("map"):
        frames = frames_on_series(labels, image.affine, datasets, subject, Path(segmentation))
    with run.phase("build"):
        seed = [f"{k}={v}" for k, v in sorted(seed_inputs.items())] + [
            f"{k}={v}" for k, v in sorted(run.parameters.items())] + [f"members={' '.join(members)}"]
        seg = build_segmentation(datasets, frames, convention=convention, members=members, seed=seed,
                                 series_number=series_number, series_description=series_description,
                                 version=__version__)
        volumes = volumes_ml(labels, float(np.prod(image.header.get_zooms()[:3])) / 1000.0, convention)
        sr = build_report(seg, datasets, volumes, convention=convention, seed=seed,
                          series_number=series_number + REPORT_SERIES_OFFSET, version=__version__)
    with run.phase("save"):
        voxels = {name: int(np.count_nonzero(frames == value))
                  for name, value in get_convention(convention).labels.items()}
        path = run.save_dicom("segmentation", seg, files.dicom_segmentation, voxels=voxels,
                              sop_instance_uid=str(seg.SOPInstanceUID))
        run.save_dicom("measurements", sr, files.dicom_measurements, volumes_ml=volumes,
                       sop_instance_uid=str(sr.SOPInstanceUID))
    run.finish(source_series={"uid": series.uid, "study_uid": series.study_uid, "number": series.number,
                              "description": series.description, "images": len(datasets)},
               segmentation_series_uid=str(seg.SeriesInstanceUID), members=members,
               segments={str(n): name for n, name in enumerate(get_convention(convention).labels, start=1)},
               seed_sha256=hashlib.sha256("\n".join(seed).encode()).hexdigest())
    return path
