"""Study-level DICOM input: a PACS-like export (localiser, DWI, derived reformats, a report, two studies) is sorted
into the four modalities by the config's rules, the choice is recorded, and ambiguity fails only that subject."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from bratsflow.cli import main
from bratsflow.cohort import load_sheet
from bratsflow.dicom_study import (DEFAULT_RULES, Series, StudyChoice, _choose_by_rules, classify, files_sha256,
                                   load_rules)
from bratsflow.errors import ConfigError
from bratsflow.ingest import cohort_table, ingest_subject
from dicom_helpers import write_dicom_series, write_report_object

REPO = Path(__file__).resolve().parents[1]
SHAPE = (32, 32, 20)


def _image(shape, spacing_mm, offset: int, axes=np.eye(3)) -> nib.Nifti1Image:
    """int16 with an off-centre blob and a gradient along each axis; `offset` makes each series its own."""
    i, j, k = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    blob = 900 * np.exp(-((i - 10) ** 2 / 40 + (j - 20) ** 2 / 50 + (k - shape[2] / 3) ** 2 / 6))
    data = np.rint(blob + 5 * i + 3 * j + 7 * k + offset).astype(np.int16)
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ axes @ np.diag(spacing_mm)
    affine[:3, 3] = [20.0, 15.0, -10.0]
    return nib.Nifti1Image(data, affine)


# SeriesNumber -> (description, image, tags, written in reverse instance order). The T1c is 3-D like the T1; the
# FLAIR is 2-D with 5 mm slices; the T2 is written against its slice order.
def _structural() -> dict[int, tuple[str, nib.Nifti1Image, dict, bool]]:
    return {
        2: ("t1_mprage_sag_p2", _image(SHAPE, (1.0, 1.0, 1.0), 10),
            {"MRAcquisitionType": "3D", "EchoTime": 2.3, "RepetitionTime": 2300, "InversionTime": 900,
             "ScanningSequence": ["GR", "IR"]}, False),
        4: ("T2 TSE AX", _image(SHAPE, (1.0, 1.0, 3.0), 20),
            {"MRAcquisitionType": "2D", "EchoTime": 95, "RepetitionTime": 6000, "ScanningSequence": "SE"}, True),
        5: ("AX FLAIR", _image((32, 32, 8), (1.0, 1.0, 5.0), 30),
            {"MRAcquisitionType": "2D", "EchoTime": 90, "RepetitionTime": 9000, "InversionTime": 2500,
             "ScanningSequence": ["SE", "IR"]}, False),
        8: ("AX T1 POST GAD", _image(SHAPE, (1.0, 1.0, 1.0), 40),
            {"MRAcquisitionType": "3D", "EchoTime": 2.3, "RepetitionTime": 2300, "ContrastBolusAgent": "Gadobutrol"},
            False),
    }


def _write_study(folder: Path, patient: str, *, tie: bool = False) -> dict[int, tuple]:
    """A PACS export of one patient: two studies (an earlier one with only a T1), localiser, DWI, a derived
    reformat, a report and a non-DICOM file; `tie` adds a second T1c that looks exactly like the first, and a 3-D
    FLAIR that the rule prefers to the 2-D one."""
    series = _structural()
    if tie:
        description, img, tags, _ = series[8]
        series[9] = ("T1+C", _image(SHAPE, (1.0, 1.0, 1.0), 50), tags, False)
        series[11] = ("SAG CUBE FLAIR", _image(SHAPE, (1.0, 1.0, 1.2), 55),
                      {"MRAcquisitionType": "3D", "EchoTime": 120, "InversionTime": 1800}, False)
    latest = dict(patient_id=patient, study="2", study_datetime="20240301 093000")
    for number, (description, img, tags, reverse) in series.items():
        write_dicom_series(img, folder / "study2" / f"s{number}", series_number=number, description=description,
                           tags=tags, reverse=reverse, **latest)
    # A three-plane localiser: one slice each, axial, sagittal and coronal, in one series.
    planes = (np.eye(3), np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]]), np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]]))
    for index, axes in enumerate(planes):
        write_dicom_series(_image((32, 32, 1), (2.0, 2.0, 5.0), 0, axes), folder / "study2" / "s1", series_number=1,
                           description="localizer", first_instance=index + 1, tags={"MRAcquisitionType": "2D"},
                           **latest)
    for index, b in enumerate((0, 1000)):
        write_dicom_series(_image((32, 32, 10), (2.0, 2.0, 4.0), 60 + b // 10), folder / "study2" / "s6",
                           series_number=6, description="ep2d_diff_3scan_trace", first_instance=10 * index + 1,
                           tags={"MRAcquisitionType": "2D", "SequenceName": f"*ep_b{b}t", "DiffusionBValue": b},
                           **latest)
    write_dicom_series(_image((32, 32, 6), (1.0, 1.0, 5.0), 70), folder / "study2" / "s10", series_number=10,
                       description="AX T1 POST GAD MPR COR",
                       tags={"ImageType": ["DERIVED", "SECONDARY", "MPR"], "ContrastBolusAgent": "Gadobutrol"},
                       **latest)
    write_report_object(folder / "study2" / "sr", series_number=99, patient_id=patient, study="2")
    (folder / "README.txt").write_text("exported by a PACS\n")
    write_dicom_series(_image(SHAPE, (1.0, 1.0, 1.0), 80), folder / "study1" / "s2", series_number=2,
                       description="t1_mprage_sag_p2", patient_id=patient, study="1",
                       study_datetime="20230105 101500", tags={"MRAcquisitionType": "3D"})
    return series


def _sheet(path: Path, rows: list[dict]) -> Path:
    columns = sorted({key for row in rows for key in row}, key=lambda c: (c != "subject_id", c))
    lines = ["\t".join(columns)] + ["\t".join(row.get(c, "") for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _ingest(sheet: Path, subject: str, out: Path, *extra: str) -> int:
    return main(["ingest", "--subject", subject, "--samples", str(sheet), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("pacs")
    good = _write_study(root / "P1", "P1")
    _write_study(root / "P2", "P2", tie=True)
    # The same four acquisitions, one series per folder: the path bratsflow took before studies.
    for number, (description, img, tags, reverse) in good.items():
        write_dicom_series(img, root / "alone" / str(number), series_number=number, description=description,
                           tags=tags, reverse=reverse, patient_id="P1", study="2",
                           study_datetime="20240301 093000")
    return root, good


def _tags(description: str = "", **tags) -> dict:
    base = {tag: "" for tag in ("SeriesDescription", "ProtocolName", "ContrastBolusAgent", "ScanningSequence",
                                "SequenceVariant", "SequenceName", "MRAcquisitionType", "ImageType", "Modality")}
    base.update({tag: None for tag in ("EchoTime", "RepetitionTime", "InversionTime", "FlipAngle", "SliceThickness")})
    base.update({"SeriesDescription": description, "Modality": "MR", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.4",
                 "ImageType": "ORIGINAL\\PRIMARY\\M\\ND", **tags})
    base["text"] = f"{base['SeriesDescription']} {base['ProtocolName']}".strip()
    return base


@pytest.mark.parametrize("description, tags, expected", [
    ("t1_mprage_sag_p2", {}, "t1"),
    ("T1 SE", {}, "t1"),
    ("AX T1 FLAIR", {}, "t1"),
    ("SAG 3D BRAVO", {}, "t1"),
    ("T1+C", {}, "t1c"),
    ("AX T1 POST GAD", {}, "t1c"),
    ("t1_mprage_tra", {"ContrastBolusAgent": "Dotarem"}, "t1c"),
    ("T1W_3D_TFE_GD", {}, "t1c"),
    ("T2 TSE", {}, "t2"),
    ("AX T2 PROPELLER", {}, "t2"),
    ("FLAIR", {}, "flair"),
    ("T2_FLAIR_3D", {}, "flair"),
    ("SAG CUBE FLAIR", {}, "flair"),
    ("t2_tirm_tra_dark-fluid", {}, "flair"),
    ("Ax IR", {"InversionTime": 2500.0, "EchoTime": 120.0}, "flair"),
    ("AAHead_Scout_64ch", {}, "ignore"),
    ("3-plane localizer", {}, "ignore"),
    ("ep2d_diff_3scan_trace", {}, "ignore"),
    ("AX DWI", {}, "ignore"),
    ("ep2d_diff_ADC", {"ImageType": "DERIVED\\PRIMARY\\DIFFUSION\\ADC"}, "ignore"),
    ("Ax T2 FLAIR DWI", {}, "ignore"),
    ("ep2d_perf", {}, "ignore"),
    ("SWI_Images", {}, "ignore"),
    ("AX T1 POST MPR", {"ImageType": "DERIVED\\SECONDARY\\MPR"}, "ignore"),
    ("Radiology report", {"Modality": "SR", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.11"}, "ignore"),
    ("Segmentation", {"Modality": "SEG", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.66.4"}, "ignore"),
    ("Screen save", {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"}, "ignore"),
    ("mystery", {}, "ignore"),
])
def test_default_rules_classify_common_vendor_names(description, tags, expected):
    series = Series("1.2.3", "1.2", 1, _tags(description, **tags), {})
    classify([series], load_rules())
    assert series.target == expected, (series.rule, series.why)


def test_the_package_rules_are_the_configs():
    assert DEFAULT_RULES.read_text() == (REPO / "config" / "dicom_rules.yaml").read_text()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert config["dicom"]["rules"] == "config/dicom_rules.yaml"


@pytest.mark.parametrize("rule, message", [
    ({"name": "x", "class": "t1w", "why": "w", "match": {"text": "t1"}}, "class 't1w'"),
    ({"name": "x", "class": "t1", "why": "w", "match": {"Echo": {"min": 1}}}, "unknown tag"),
    ({"name": "x", "class": "t1", "why": "w", "match": {"text": "(t1"}}, "not a regular expression"),
    ({"name": "x", "class": "t1", "match": {"text": "t1"}}, "exactly the keys"),
])
def test_a_broken_rules_file_is_refused_naming_the_rule(tmp_path, rule, message):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": [rule]}))
    with pytest.raises(ConfigError, match=message) as info:
        load_rules(path)
    assert "rule 1 (x)" in str(info.value) and str(path) in str(info.value)


def test_a_study_is_sorted_recorded_and_converted_like_single_series(cohort, tmp_path):
    root, good = cohort
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    sheet = _sheet(tmp_path / "sheet.tsv", [
        {"subject_id": "P1", "dicom": str(root / "P1")},
        {"subject_id": "P1alone", "t1": str(root / "alone" / "2"), "t1c": str(root / "alone" / "8"),
         "t2": str(root / "alone" / "4"), "flair": str(root / "alone" / "5")},
    ])
    assert _ingest(sheet, "P1", tmp_path / "P1") == 0
    assert _ingest(sheet, "P1alone", tmp_path / "alone") == 0
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before  # the export is untouched

    record = json.loads((tmp_path / "P1" / "ingest.json").read_text())
    study = record["dicom_study"]
    assert study["study"]["date"] == "20240301" and "latest" in study["study"]["why"]
    assert [s["date"] for s in study["other_studies"]] == ["20230105"]
    assert study["files_not_dicom"] == 1
    classes = {s["number"]: (s["class"], s["rule"]) for s in study["series"]}
    assert classes == {1: ("ignore", "localiser"), 2: ("t1", "t1"), 4: ("t2", "t2"), 5: ("flair", "flair"),
                       6: ("ignore", "diffusion"), 8: ("t1c", "t1-contrast-name"), 10: ("ignore", "derived"),
                       99: ("ignore", "not-mr-image")}
    for modality, number in {"t1": 2, "t1c": 8, "t2": 4, "flair": 5}.items():
        decision = study["modalities"][modality]
        assert decision["number"] == number and decision["description"] == good[number][0]
        assert "the only" in decision["why"] and decision["rejected"] == []
        source = record["inputs"][modality]
        assert source["path"] == str(root / "P1") and source["series_number"] == number
        files = sorted((root / "P1" / "study2" / f"s{number}").iterdir())
        assert source["files"] == len(files)
        assert source["sha256"] == files_sha256(files, root / "P1")
        assert decision["series"] == source["series_uid"]
        # The same acquisition reaches the same image either way.
        from_study, alone = (nib.load(d / f"{modality}.nii.gz") for d in (tmp_path / "P1", tmp_path / "alone"))
        np.testing.assert_array_equal(np.asanyarray(from_study.dataobj), np.asanyarray(alone.dataobj))
        np.testing.assert_allclose(from_study.affine, alone.affine, atol=1e-5)
    assert record["images"]["flair"]["spacing_mm"][2] == pytest.approx(5.0)
    table = cohort_table([tmp_path / "P1" / "ingest.json", tmp_path / "alone" / "ingest.json"])
    assert list(table["series_description"]) == [good[n][0] for n in (2, 8, 4, 5)] + [""] * 4
    assert list(table["series_uid"][:4]) == [record["inputs"][m]["series_uid"] for m in ("t1", "t1c", "t2", "flair")]


def test_a_tie_fails_that_subject_only_and_the_sheet_resolves_it(cohort, tmp_path, capsys):
    root, _ = cohort
    rows = [{"subject_id": "P2", "dicom": str(root / "P2")}, {"subject_id": "P1", "dicom": str(root / "P1")}]
    sheet = _sheet(tmp_path / "sheet.tsv", rows)
    assert _ingest(sheet, "P2", tmp_path / "P2") == 2
    message = capsys.readouterr().err
    assert "subject P2" in message and str(root / "P2") in message
    assert "2 series could be the T1c image" in message
    for shown in ("series 8 ('AX T1 POST GAD'", "series 9 ('T1+C'", "1 mm slices", "3-D", "t1c_series"):
        assert shown in message
    assert not (tmp_path / "P2").exists()
    # One bad subject does not stop the rest of the sheet.
    assert _ingest(sheet, "P1", tmp_path / "P1") == 0

    rows[0]["t1c_series"] = "9"
    assert _ingest(_sheet(tmp_path / "sheet.tsv", rows), "P2", tmp_path / "P2") == 0
    decisions = json.loads((tmp_path / "P2" / "ingest.json").read_text())["dicom_study"]["modalities"]
    assert decisions["t1c"]["number"] == 9 and "column t1c_series" in decisions["t1c"]["why"]
    assert [(r["number"], "names another series" in r["why"]) for r in decisions["t1c"]["rejected"]] == [(8, True)]
    assert decisions["flair"]["number"] == 11 and "preferred of 2 FLAIR candidates" in decisions["flair"]["why"]
    assert decisions["flair"]["rejected"] == [{"series": decisions["flair"]["rejected"][0]["series"], "number": 5,
                                               "description": "AX FLAIR", "why": "2-D; the chosen series is 3-D"}]

    # Or by the config: the later of the two.
    rows[0]["t1c_series"] = ""
    _sheet(tmp_path / "sheet.tsv", rows)
    assert _ingest(sheet, "P2", tmp_path / "P2latest", "--dicom-tie", "latest") == 0
    decision = json.loads((tmp_path / "P2latest" / "ingest.json").read_text())["dicom_study"]["modalities"]["t1c"]
    assert decision["number"] == 9 and "on_tie: latest" in decision["why"]
    assert decision["rejected"][0]["number"] == 8


def _candidate(number: int, acquisition: str, thickness: float, images: int) -> Series:
    series = Series(f"1.2.{number}", "1.2", number, _tags("t2_tse", MRAcquisitionType=acquisition,
                                                          SliceThickness=thickness), {"AcquisitionTime": "",
                                                                                       "SeriesTime": ""})
    series.files = [(i, Path(f"{number}-{i}.dcm")) for i in range(images)]
    return series


@pytest.mark.parametrize("candidates, chosen, why", [
    ([("2D", 5.0, 30), ("2D", 3.0, 20)], 2, "5 mm slices; the chosen series' are 3 mm"),
    ([("2D", 3.0, 30), ("2D", 3.0, 40)], 2, "30 images; the chosen series has 40"),
    ([("3D", 1.2, 150), ("2D", 0.5, 200)], 1, "2-D; the chosen series is 3-D"),
])
def test_the_choice_rule_prefers_3d_then_thin_slices_then_more_images(candidates, chosen, why):
    series = [_candidate(n, *spec) for n, spec in enumerate(candidates, start=1)]
    classify(series, load_rules())
    choice = StudyChoice(Path("study"), DEFAULT_RULES, "fail", {}, [], series, 0)
    _choose_by_rules(choice, "t2")
    assert choice.chosen["t2"].number == chosen and not choice.problems
    assert [r["why"] for r in choice.decisions["t2"]["rejected"]] == [why]


def test_explicit_cells_override_the_study(cohort, tmp_path):
    root, good = cohort
    nifti = tmp_path / "t2.nii.gz"
    nib.save(_image(SHAPE, (1.0, 1.0, 2.0), 99), nifti)
    sheet = _sheet(tmp_path / "sheet.tsv", [{"subject_id": "P1", "dicom": str(root / "P1"), "t2": nifti.name,
                                             "t1": str(root / "alone" / "2")}])
    subject = load_sheet(sheet)[0]
    assert [m for m in ("t1", "t1c", "t2", "flair") if subject.from_study(m)] == ["t1c", "flair"]
    record = ingest_subject(subject, tmp_path / "out")
    assert record["inputs"]["t2"]["format"] == "nifti" and record["inputs"]["t2"]["path"] == str(nifti)
    assert record["inputs"]["t1"]["path"] == str(root / "alone" / "2")
    assert "series_uid" not in record["inputs"]["t1"]
    assert set(record["dicom_study"]["modalities"]) == {"t1c", "flair"}
    assert record["inputs"]["flair"]["series_description"] == "AX FLAIR"


def test_the_sheet_names_an_earlier_study(cohort, tmp_path):
    root, _ = cohort
    alone = {m: str(root / "alone" / n) for m, n in (("t1c", "8"), ("t2", "4"), ("flair", "5"))}
    sheet = _sheet(tmp_path / "sheet.tsv", [{"subject_id": "P1", "dicom": str(root / "P1"), "dicom_study": "1",
                                             **alone}])
    record = ingest_subject(load_sheet(sheet)[0], tmp_path / "out")
    study = record["dicom_study"]
    assert study["study"]["date"] == "20230105" and "column dicom_study" in study["study"]["why"]
    assert [s["date"] for s in study["other_studies"]] == ["20240301"]
    assert record["inputs"]["t1"]["sha256"] == files_sha256(list((root / "P1" / "study1").rglob("*.dcm")),
                                                            root / "P1")


def test_a_study_without_a_modality_names_its_series_and_none_marks_it_missing(cohort, tmp_path, capsys):
    root, _ = cohort
    rules = tmp_path / "rules.yaml"
    data = yaml.safe_load(DEFAULT_RULES.read_text())
    data["rules"] = [r for r in data["rules"] if r["class"] != "flair"]
    rules.write_text(yaml.safe_dump(data))
    rows = [{"subject_id": "P1", "dicom": str(root / "P1")}]
    sheet = _sheet(tmp_path / "sheet.tsv", rows)
    assert _ingest(sheet, "P1", tmp_path / "a", "--dicom-rules", str(rules)) == 2
    message = capsys.readouterr().err
    assert "FLAIR" in message and "no series of the study is classified as FLAIR" in message
    assert "series 5 ('AX FLAIR'" in message and "flair_series" in message and str(rules) in message

    rows[0]["flair_series"] = "none"
    sheet = _sheet(tmp_path / "sheet.tsv", rows)
    assert _ingest(sheet, "P1", tmp_path / "b", "--dicom-rules", str(rules), "--missing-modalities",
                   "run-available") == 0
    record = json.loads((tmp_path / "b" / "ingest.json").read_text())
    assert record["missing_modalities"] == ["flair"] and set(record["inputs"]) == {"t1", "t1c", "t2"}
    assert record["dicom_study"]["rules"]["file"] == str(rules)


def test_a_folder_without_dicom_fails_the_subject(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images\n")
    sheet = _sheet(tmp_path / "sheet.tsv", [{"subject_id": "P3", "dicom": "empty"}])
    assert _ingest(sheet, "P3", tmp_path / "out") == 2
    message = capsys.readouterr().err
    assert "subject P3" in message and "no DICOM series in the study folder (1 files, none DICOM)" in message
    _sheet(tmp_path / "sheet.tsv", [{"subject_id": "P3", "dicom": "absent"}])
    assert _ingest(tmp_path / "sheet.tsv", "P3", tmp_path / "out") == 2
    assert "the DICOM study folder does not exist" in capsys.readouterr().err
