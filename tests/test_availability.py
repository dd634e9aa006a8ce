"""The missing-modality policy: what a subject without all four modalities runs on, and what it still needs."""

import json
from dataclasses import replace

import pytest

from bratsflow.availability import (Need, absent, format_skipped, parse_skipped, pipeline_needs, skipped_members,
                                    unmet)
from bratsflow.cohort import load_sheet
from bratsflow.errors import ConfigError, InputError, ModelError
from bratsflow.fusion import fuse_files
from bratsflow.ingest import ingest_subject
from bratsflow.modalities import MODALITIES
from bratsflow.paths import StepFiles
from bratsflow.segment import Member, required_modalities
from conftest import TINY_SPACING_RANGE_MM

NEEDS = pipeline_needs("t1c", "t1", "t1", "t1c")


def test_needs_parse_print_and_check():
    assert [str(n) for n in NEEDS] == ["coregister=t1c,t1", "skullstrip=t1,t1c"]
    assert Need.parse("coregister=t1c,t1") == NEEDS[0]
    assert pipeline_needs("t1c", "t1c", "t1", "t1")[0].modalities == ("t1c",)
    assert unmet(("t1", "t2"), NEEDS) == []
    assert unmet(("t2", "flair"), NEEDS) == list(NEEDS)
    assert NEEDS[0].describe() == "coregister needs T1c or T1"
    for bad in ("coregister", "=t1", "coregister=t3", "coregister="):
        with pytest.raises(ConfigError, match="STEP=MODALITY"):
            Need.parse(bad)


def test_members_that_need_a_missing_modality_are_skipped():
    requirements = {"four": MODALITIES, "no_flair": ("t1", "t1c", "t2"), "t1c_only": ("t1c",)}
    assert skipped_members(requirements, MODALITIES) == {}
    skipped = skipped_members(requirements, ("t1", "t1c", "t2"))
    assert skipped == {"four": ["flair"]}
    assert skipped_members(requirements, ("t2",)) == {"four": ["t1", "t1c", "flair"], "no_flair": ["t1", "t1c"],
                                                      "t1c_only": ["t1c"]}
    assert parse_skipped(format_skipped(skipped)) == skipped
    assert absent(("t2", "t1")) == ["t1c", "flair"]


def test_member_declares_its_inputs(tmp_path):
    assert required_modalities(Member(name="c", kind="container", model="img")) == MODALITIES
    assert required_modalities(Member(name="n", model="x", channels=("t1c", "flair"))) == ("t1c", "flair")
    folder = tmp_path / "model"
    folder.mkdir()
    with pytest.raises(ModelError, match="no dataset.json"):
        required_modalities(Member(name="n", model=str(folder)))
    # Read from the model's dataset.json (BraTS 2023 file names here), in the model's channel order.
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "t2f", "1": "t1c", "2": "t2w"}}))
    assert required_modalities(Member(name="n", model=str(folder))) == ("flair", "t1c", "t2")


def test_fusion_without_members_names_the_skipped_ones(tmp_path):
    with pytest.raises(InputError, match=r"subject s1: no ensemble member can run on the modalities present "
                                         r"\(a needs FLAIR; b needs T1c, FLAIR\)"):
        fuse_files([], tmp_path / "fused.nii.gz", subject="s1", skipped={"a": ["flair"], "b": ["t1c", "flair"]})


def _sheet_without(tiny_cohort, tmp_path, *modalities: str):
    """The tiny cohort's first subject with empty cells for `modalities`."""
    subject = load_sheet(tiny_cohort / "subjects.tsv")[0]
    cells = ["" if m in modalities else str(subject.images[m]) for m in MODALITIES]
    sheet = tmp_path / "subjects.tsv"
    sheet.write_text("subject_id\t" + "\t".join(MODALITIES) + "\n" + "\t".join([subject.subject_id, *cells]) + "\n")
    return load_sheet(sheet)[0], sheet


def test_run_available_ingests_what_is_there_and_records_what_is_missing(tiny_cohort, tmp_path):
    subject, _ = _sheet_without(tiny_cohort, tmp_path, "flair")
    record = ingest_subject(subject, tmp_path / "out", spacing_range_mm=TINY_SPACING_RANGE_MM,
                            policy="run-available", needs=NEEDS)
    files = StepFiles(tmp_path / "out", "ingest")
    assert record["missing_modalities"] == ["flair"]
    assert record["parameters"]["missing_modalities"] == "run-available"
    assert sorted(record["images"]) == ["t1", "t1c", "t2"]
    assert files.image("t2").is_file() and not files.image("flair").exists()
    assert json.loads(files.record.read_text())["missing_modalities"] == ["flair"]


def test_fail_names_subject_modality_and_cell(tiny_cohort, tmp_path):
    subject, sheet = _sheet_without(tiny_cohort, tmp_path, "flair")
    with pytest.raises(InputError) as error:
        ingest_subject(subject, tmp_path / "out", spacing_range_mm=TINY_SPACING_RANGE_MM, needs=NEEDS)
    assert str(error.value) == (
        f"subject {subject.subject_id}: FLAIR: no FLAIR image: column flair of row 2 is empty in the sample sheet "
        f"{sheet} (missing_modalities is fail; run-available runs the subject on the modalities it has)")
    assert not (tmp_path / "out").exists()


def test_run_available_still_needs_a_centre(tiny_cohort, tmp_path):
    subject, sheet = _sheet_without(tiny_cohort, tmp_path, "t1", "t1c")
    with pytest.raises(InputError) as error:
        ingest_subject(subject, tmp_path / "out", spacing_range_mm=TINY_SPACING_RANGE_MM, policy="run-available",
                       needs=NEEDS)
    message = str(error.value)
    assert message.startswith(f"subject {subject.subject_id}: coregister needs T1c or T1, skullstrip needs T1 or "
                              f"T1c (missing_modalities: run-available still needs these): no T1 image: column t1")
    assert "no T1c image: column t1c of row 2" in message
    assert not (tmp_path / "out").exists()
    # A named file that does not exist is a mistake to fix, not a missing modality.
    typo = replace(subject, images={**subject.images, "t1": tmp_path / "absent.nii.gz",
                                    "t1c": subject.images["t2"]}, problems={}, missing=frozenset())
    with pytest.raises(InputError, match="absent.nii.gz: file does not exist"):
        ingest_subject(typo, tmp_path / "out", spacing_range_mm=TINY_SPACING_RANGE_MM, policy="run-available",
                       needs=NEEDS)
