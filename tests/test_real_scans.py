"""Co-registration of the real glioma cases in ../shared/real with the default checks, coarsened to 3 mm (and the
atlas with them) so that each registration takes seconds: the checks must pass on the real cases and their
degradations and refuse inputs that are wrong."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bratsflow import degrade
from bratsflow.cohort import MODALITIES, Subject
from bratsflow.coregister import CoregisterParams, coregister
from bratsflow.errors import InputError, RegistrationError
from bratsflow.ingest import ingest_subject
from bratsflow.metrics import dice
from conftest import TINY_SPACING_RANGE_MM

CASES = {
    "tcga": {m: f"tcga-du-7294/native_hdbet/{m}_hdbet_brain.nii.gz" for m in MODALITIES},
    "gli": {m: f"brats-gli-00001-000/BraTS-GLI-00001-000-{name}.nii.gz"
            for m, name in zip(MODALITIES, ("t1n", "t1c", "t2w", "t2f"))},
}
VOXEL_MM = 3.0


@pytest.fixture(scope="module")
def real(shared_real) -> Path:
    return shared_real


def _ingested(real: Path, case: str, folder: Path, change=None) -> dict[str, Path]:
    """The case's four images coarsened to 3 mm (each on its own grid), changed by `change(modality, image)`,
    through ingest."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = {}
    for modality, relative in CASES[case].items():
        img = degrade.coarsen(nib.load(real / relative), VOXEL_MM)
        if change is not None:
            img = change(modality, img)
        sources[modality] = folder / f"source_{modality}.nii.gz"
        nib.save(img, sources[modality])
    ingest_subject(Subject(case, sources), folder / "ingest", spacing_range_mm=TINY_SPACING_RANGE_MM)
    return {m: folder / "ingest" / f"{m}.nii.gz" for m in MODALITIES}


def _params(tiny_atlas, **extra) -> CoregisterParams:
    """The default checks; only the atlas is the 3 mm copy."""
    return CoregisterParams(atlas=str(tiny_atlas[0]), atlas_mask=str(tiny_atlas[1]), **extra)


def _brain_dice(out: Path, tiny_atlas) -> float:
    """The atlas-space T1c's brain (the given, stripped one) against the atlas brain: a gross misregistration
    shows here whatever the checks say."""
    moved = nib.load(out / "t1c.nii.gz").get_fdata() > 0
    return dice(moved, np.asarray(nib.load(tiny_atlas[1]).dataobj) > 0)


@pytest.mark.parametrize("case", ["tcga", "gli"])
def test_real_cases_pass_the_default_checks(real, case, tiny_atlas, tmp_path):
    images = _ingested(real, case, tmp_path / "case")
    record = coregister(images, tmp_path / "out", _params(tiny_atlas), subject=case, threads=2)
    registrations = record["registrations"]
    assert set(registrations) == set(MODALITIES)
    for modality, registration in registrations.items():
        checks = registration["checks"]
        assert checks["coverage"] >= 0.9 and checks["overlap"] >= 0.9, (modality, checks)
        # Offsets from the similarity optimum (mm, degrees): measured ≤ 1.1 here, ≤ 1.3 against the atlas.
        limit = 3.0 if registration["fixed"] == "atlas" else 1.5
        assert all(abs(offset) < limit for offset in checks["offsets"].values()), (modality, checks)
    kept = {m for m, r in registrations.items() if r["method"].startswith("kept")}
    # BraTS format: one grid, already aligned; TCGA: three scanner grids, each registered.
    assert kept == ({"t1", "t2", "flair"} if case == "gli" else set())
    assert _brain_dice(tmp_path / "out", tiny_atlas) > 0.8


def test_thick_slices_and_a_short_field_of_view_pass(real, tiny_atlas, tmp_path):
    def change(modality, img):
        img = degrade.thick_slices(img, 6.0) if modality in ("t2", "flair") else img
        return degrade.crop_top(img, 30.0) if modality == "t1c" else img

    images = _ingested(real, "tcga", tmp_path / "case", change)
    record = coregister(images, tmp_path / "out", _params(tiny_atlas), subject="tcga", threads=2)
    assert record["registrations"]["t1c"]["checks"]["overlap"] < 0.95, "the top of the brain is out of view"
    assert _brain_dice(tmp_path / "out", tiny_atlas) > 0.75


def test_an_upside_down_flair_is_refused(real, tiny_atlas, tmp_path):
    def change(modality, img):
        return degrade.upside_down(img) if modality == "flair" else img

    images = _ingested(real, "gli", tmp_path / "case", change)
    out = tmp_path / "out"
    with pytest.raises(RegistrationError, match=r"subject gli, FLAIR, file .*flair\.nii\.gz: registration to t1c "
                                                r"failed its checks \(2 attempts\): .*covers"):
        coregister(images, out, _params(tiny_atlas), subject="gli", threads=2)
    assert not out.exists()


def test_declared_coregistered_inputs_are_checked(real, tiny_atlas, tmp_path):
    tcga = _ingested(real, "tcga", tmp_path / "tcga")
    with pytest.raises(InputError, match=r"subject tcga, T1, file .*t1\.nii\.gz: coregister.inputs is 'coregistered' "
                                         r"but the image is not on the grid of t1c \(shape \(\d+, \d+, 34\)"):
        coregister(tcga, tmp_path / "out", _params(tiny_atlas, inputs="coregistered"), subject="tcga")
    # On one grid but not aligned: the FLAIR shifted by 15 mm inside its header.
    def change(modality, img):
        if modality != "flair":
            return img
        return nib.Nifti1Image(np.roll(np.asarray(img.dataobj), 5, axis=0), img.affine, img.header)

    gli = _ingested(real, "gli", tmp_path / "gli", change)
    with pytest.raises(RegistrationError, match=r"FLAIR, .*coregister.inputs is 'coregistered' but the image is not "
                                                r"aligned with t1c: .*(covers|similarity peaks)"):
        coregister(gli, tmp_path / "out", _params(tiny_atlas, inputs="coregistered"), subject="gli")
    record = coregister(gli, tmp_path / "registered", _params(tiny_atlas, inputs="native"), subject="gli",
                        threads=2)
    assert not any(r["method"].startswith("kept") for r in record["registrations"].values())


def test_a_label_map_with_a_lost_header_is_refused_by_name(real):
    """seg-BraTS23_1_mapped is a real label map whose header was replaced by the identity: it must not be scored
    against a correctly placed one as if it overlapped."""
    from bratsflow.metrics import evaluate

    folder = real / "brats-gli-00001-000" / "seg_candidates"
    lost = folder / "seg-BraTS23_1_mapped.nii.gz"
    with pytest.raises(InputError, match=rf"file {lost}: prediction and ground truth affines differ .* its affine is "
                                         r"the identity"):
        evaluate(folder / "seg-bratstoolkit_isen.nii.gz", lost, convention="brats2021")
