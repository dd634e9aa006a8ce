from pathlib import Path

import pytest

from bratsflow.cohort import discover_bids, load_cohort, load_sheet
from bratsflow.errors import ConfigError, InputError

HEADER = "subject_id\tt1\tt1c\tt2\tflair\n"


def _sheet(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "cohort" / "subjects.tsv"
    path.parent.mkdir(exist_ok=True)
    path.write_text(header + body)
    return path


def test_relative_paths_resolve_against_the_sheet_folder(tmp_path):
    sheet = _sheet(tmp_path, "s1\ta/t1.nii.gz\ta/t1c.nii.gz\t/abs/t2.nii.gz\t../up/flair.nii.gz\n")
    (subject,) = load_sheet(sheet)
    assert subject.subject_id == "s1"
    assert subject.images["t1"] == tmp_path / "cohort" / "a" / "t1.nii.gz"
    assert subject.images["t2"] == Path("/abs/t2.nii.gz")
    assert subject.images["flair"] == tmp_path / "up" / "flair.nii.gz"


def test_empty_cell_is_a_per_subject_problem(tmp_path):
    sheet = _sheet(tmp_path, "s1\ta.nii.gz\t\tc.nii.gz\td.nii.gz\ns2\ta\tb\tc\td\n")
    s1, s2 = load_sheet(sheet)
    with pytest.raises(InputError, match="subject s1, t1c: no T1c image: column t1c of row 2 is empty"):
        s1.image("t1c")
    assert s2.image("t1c").name == "b"
    assert s1.missing == {"t1c"} and not s2.missing
    assert s1.modalities("fail") == ("t1", "t1c", "t2", "flair")
    assert s1.modalities("run-available") == ("t1", "t2", "flair")
    with pytest.raises(ConfigError, match="missing_modalities must be one of"):
        s1.modalities("skip")


@pytest.mark.parametrize("bad_id", ["../etc", "a/b", "with space", "..", ".hidden", "cohort", "report", "a..b",
                                    "x" * 65])
def test_bad_subject_ids_are_rejected(tmp_path, bad_id):
    sheet = _sheet(tmp_path, f"{bad_id}\ta\tb\tc\td\n")
    with pytest.raises(ConfigError, match="subject id"):
        load_sheet(sheet)


def test_duplicated_ids(tmp_path):
    sheet = _sheet(tmp_path, "s1\ta\tb\tc\td\ns2\ta\tb\tc\td\ns1\ta\tb\tc\td\n")
    with pytest.raises(ConfigError, match=r"duplicated subject id\(s\) \['s1'\]"):
        load_sheet(sheet)


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    (HEADER, "no subjects"),
    ("subject_id\tt1\tt2\ns1\ta\tb\n", r"lacks column\(s\) \['t1c', 'flair'\]"),
    ("subject_id,t1,t1c,t2,flair\ns1,a,b,c,d\n", "lacks column"),
])
def test_malformed_sheets(tmp_path, content, message):
    sheet = tmp_path / "s.tsv"
    sheet.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_sheet(sheet)


def test_csv_sheet_by_extension(tmp_path):
    sheet = tmp_path / "s.csv"
    sheet.write_text("subject_id,t1,t1c,t2,flair\ns1,a,b,c,d\n")
    assert [s.subject_id for s in load_sheet(sheet)] == ["s1"]


def test_missing_sheet():
    with pytest.raises(ConfigError, match="does not exist"):
        load_cohort(samples="no/such/sheet.tsv")


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_bids_discovery_with_sessions_contrast_entity_and_problems(tmp_path):
    for name in ["T1w", "ce-gd_T1w", "T2w", "FLAIR"]:
        _touch(tmp_path / "sub-01" / "anat" / f"sub-01_{name}.nii.gz")
    for name in ["T1w", "ce-gadolinium_acq-3d_T1w", "T2w", "run-1_FLAIR", "run-2_FLAIR"]:
        _touch(tmp_path / "sub-02" / "ses-pre" / "anat" / f"sub-02_ses-pre_{name}.nii.gz")
    _touch(tmp_path / "sub-02" / "ses-pre" / "anat" / "sub-02_ses-pre_T1w.json")
    subjects = {s.subject_id: s for s in discover_bids(tmp_path)}
    assert sorted(subjects) == ["sub-01", "sub-02_ses-pre"]
    assert subjects["sub-01"].images["t1c"].name == "sub-01_ce-gd_T1w.nii.gz"
    assert subjects["sub-01"].images["t1"].name == "sub-01_T1w.nii.gz"
    second = subjects["sub-02_ses-pre"]
    assert second.images["t1c"].name == "sub-02_ses-pre_ce-gadolinium_acq-3d_T1w.nii.gz"
    with pytest.raises(InputError, match="2 candidate FLAIR images"):
        second.image("flair")
    # Two candidates are a problem to resolve, not a missing image: run-available does not drop them.
    assert not second.missing and second.modalities("run-available") == ("t1", "t1c", "t2", "flair")


def test_bids_missing_modality_and_bad_root(tmp_path):
    _touch(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    (subject,) = discover_bids(tmp_path)
    with pytest.raises(InputError, match="no T2 image"):
        subject.image("t2")
    assert subject.modalities("run-available") == ("t1",)
    with pytest.raises(ConfigError, match="not a BIDS raw tree"):
        discover_bids(tmp_path / "sub-01")
    with pytest.raises(ConfigError, match="not a folder"):
        discover_bids(tmp_path / "nope")


def test_truth_column_present_empty_and_missing(tmp_path):
    truth = tmp_path / "cohort" / "truth" / "s1.nii.gz"
    truth.parent.mkdir(parents=True)
    truth.write_bytes(b"")
    sheet = _sheet(tmp_path, "s1\ta\tb\tc\td\ttruth/s1.nii.gz\ns2\ta\tb\tc\td\t\ns3\ta\tb\tc\td\tgone.nii.gz\n",
                   header=HEADER.rstrip("\n") + "\ttruth\n")
    s1, s2, s3 = load_sheet(sheet)
    assert s1.truth == truth and s1.truth_problem() is None
    assert s2.truth is None and s2.truth_problem() is None
    assert s3.truth == tmp_path / "cohort" / "gone.nii.gz"
    assert s3.truth_problem() == (f"ground truth {s3.truth} (column truth of row 4 of the sample sheet {sheet}) "
                                  "does not exist")
    # A sheet without the column: no subject has a truth.
    assert load_sheet(_sheet(tmp_path, "s1\ta\tb\tc\td\n"))[0].truth is None


def test_bids_truth_from_the_synthetic_layout(tmp_path):
    from bratsflow.paths import TruthFiles

    for sid in ("sub-01", "sub-02"):
        _touch(tmp_path / sid / "anat" / f"{sid}_T1w.nii.gz")
    _touch(TruthFiles(tmp_path, "sub-01").labels)
    first, second = discover_bids(tmp_path)
    assert first.truth == TruthFiles(tmp_path, "sub-01").labels and first.truth_problem() is None
    assert second.truth is None
