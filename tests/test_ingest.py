import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from bratsflow.cohort import MODALITIES, Subject, load_sheet
from bratsflow.errors import InputError
from bratsflow.ingest import cohort_table, ingest_subject
from bratsflow.io import sha256_file
from conftest import TINY_SPACING_RANGE_MM


@pytest.fixture
def subject(tiny_cohort) -> Subject:
    return load_sheet(tiny_cohort / "subjects.tsv")[0]


def test_ingest_reorients_without_moving_anything(subject, tmp_path):
    record = ingest_subject(subject, tmp_path / "ingest", spacing_range_mm=TINY_SPACING_RANGE_MM)
    for modality in MODALITIES:
        source = nib.load(subject.image(modality))
        out = nib.load(tmp_path / "ingest" / f"{modality}.nii.gz")
        assert "".join(nib.aff2axcodes(out.affine)) == "RAS"
        assert np.prod(out.shape) == np.prod(source.shape)
        # The same world point holds the same value in the source and the output.
        src = np.asarray(source.dataobj)
        dst = np.asarray(out.dataobj)
        rng = np.random.default_rng(0)
        for ijk in rng.integers(0, source.shape, size=(50, 3)):
            world = nib.affines.apply_affine(source.affine, ijk)
            out_ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(out.affine), world)).astype(int)
            assert dst[tuple(out_ijk)] == src[tuple(ijk)]
        assert record["inputs"][modality]["sha256"] == sha256_file(subject.image(modality))
        assert record["outputs"][modality] == {"path": f"{modality}.nii.gz",
                                               "sha256": sha256_file(tmp_path / "ingest" / f"{modality}.nii.gz")}
    saved = json.loads((tmp_path / "ingest" / "ingest.json").read_text())
    assert saved["subject"] == subject.subject_id
    assert saved["environment"]["packages"]["nibabel"]


def test_other_orientation(subject, tmp_path):
    ingest_subject(subject, tmp_path, orientation="LPI", spacing_range_mm=TINY_SPACING_RANGE_MM)
    assert "".join(nib.aff2axcodes(nib.load(tmp_path / "t1.nii.gz").affine)) == "LPI"


def test_all_problems_of_a_subject_are_reported_and_good_output_is_kept(subject, tmp_path):
    out = tmp_path / "ingest"
    ingest_subject(subject, out, spacing_range_mm=TINY_SPACING_RANGE_MM)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    broken = tmp_path / "broken"
    broken.mkdir()
    t2 = broken / "t2.nii.gz"
    t2.write_bytes(subject.image("t2").read_bytes()[:5000])
    source = nib.load(subject.image("t1c"))
    flair = broken / "flair.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(source.shape, np.int16), source.affine), flair)
    bad = Subject(subject.subject_id, {**subject.images, "t2": t2, "flair": flair})
    with pytest.raises(InputError) as info:
        ingest_subject(bad, out, spacing_range_mm=TINY_SPACING_RANGE_MM)
    message = str(info.value)
    assert message.startswith(f"subject {subject.subject_id}: ")
    assert f"T2 {t2}: corrupt or truncated gzip" in message
    assert f"FLAIR {flair}: all voxels are zero" in message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "existing outputs untouched"


def test_a_named_truth_that_does_not_exist_fails_the_subject_at_ingest(subject, tmp_path):
    from dataclasses import replace

    absent = replace(subject, truth=tmp_path / "gone.nii.gz", truth_source="column truth of row 2 of the sample sheet")
    with pytest.raises(InputError, match=f"ground truth {tmp_path / 'gone.nii.gz'} \\(column truth of row 2 of the "
                                         "sample sheet\\) does not exist"):
        ingest_subject(absent, tmp_path / "ingest", spacing_range_mm=TINY_SPACING_RANGE_MM)
    assert not (tmp_path / "ingest").exists() or not list((tmp_path / "ingest").iterdir())


def test_inputs_are_not_modified(subject, tmp_path):
    copies = tmp_path / "inputs"
    copies.mkdir()
    images = {}
    for modality in MODALITIES:
        images[modality] = copies / subject.image(modality).name
        shutil.copy2(subject.image(modality), images[modality])
        images[modality].chmod(0o444)
    stamps = {m: (p.stat().st_mtime_ns, sha256_file(p)) for m, p in images.items()}
    ingest_subject(Subject("s1", images), tmp_path / "out", spacing_range_mm=TINY_SPACING_RANGE_MM)
    assert stamps == {m: (p.stat().st_mtime_ns, sha256_file(p)) for m, p in images.items()}


def test_cohort_table(subject, tmp_path):
    ingest_subject(subject, tmp_path / "a", spacing_range_mm=TINY_SPACING_RANGE_MM)
    table = cohort_table([tmp_path / "a" / "ingest.json"])
    assert list(table["modality"]) == list(MODALITIES)
    assert set(table["subject"]) == {subject.subject_id}
    assert table["source_sha256"].str.len().eq(64).all()


def test_one_image_given_for_two_modalities_is_refused(subject, tmp_path):
    bad = Subject(subject.subject_id, {**subject.images, "t1c": subject.image("t1")})
    with pytest.raises(InputError) as info:
        ingest_subject(bad, tmp_path / "out", spacing_range_mm=TINY_SPACING_RANGE_MM)
    assert str(info.value) == (f"subject {subject.subject_id}: T1 and T1c are the same image ({subject.image('t1')}, "
                               f"{subject.image('t1')}): each modality needs its own acquisition")
    assert not (tmp_path / "out").exists()
