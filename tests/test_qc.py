"""The report step's data: ensemble vote fractions, disagreement, agreement per region, and QC flags."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from bratsflow.cli import main
from bratsflow.commands.report import _probability_files as parse
from bratsflow.errors import ConfigError, InputError
from bratsflow.io import label_image, save_image, save_probabilities, sha256_file
from bratsflow.labels import REGION_DEPTH, REGIONS, SUMMARY_REGIONS, region_mask
from bratsflow.qc import (QCParams, agreement, alignment_flags, binary_entropy, border_contact_cm2, cohort_tables,
                          disagreement_map, ensemble_maps, flags, images_nmi, mean_region_probabilities,
                          probability_entropy, record_flags, region_volumes, report_subject, tumour_box,
                          vote_counts, vote_fractions)

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])  # 8 µL voxels
VOXEL_ML = 0.008


def _cube(shape, corner, size, value, labels=None):
    labels = np.zeros(shape, np.uint8) if labels is None else labels
    x, y, z = corner
    labels[x:x + size, y:y + size, z:z + size] = value
    return labels


@pytest.fixture
def subject(tmp_path):
    """Three members: two agree on a 4³ tumour with a 2³ enhancing core, the third sees a 4³ oedema shifted by
    one voxel and no core; the fused map is the first member's; the brain covers the middle of the grid."""
    shape = (16, 16, 16)
    a = _cube(shape, (4, 4, 4), 2, 3, _cube(shape, (3, 3, 3), 4, 2))
    c = _cube(shape, (4, 3, 3), 4, 2)
    members = {}
    for name, labels in (("a", a), ("b", a.copy()), ("c", c)):
        members[name] = save_image(label_image(labels, AFFINE), tmp_path / f"{name}.nii.gz")
    fused = save_image(label_image(a, AFFINE), tmp_path / "fused.nii.gz")
    brain = save_image(label_image(_cube(shape, (1, 1, 1), 14, 1), AFFINE), tmp_path / "brain.nii.gz")
    return {"members": members, "fused": fused, "brain": brain, "arrays": (a, c)}


def test_votes_entropy_and_agreement():
    depths = np.stack([np.array([0, 1, 3, 3]), np.array([0, 1, 3, 1]), np.array([0, 0, 1, 3])])
    votes = vote_fractions(vote_counts(depths), len(depths))
    np.testing.assert_allclose(votes[0], [0, 2 / 3, 1, 1])  # WT: depth >= 1
    np.testing.assert_allclose(votes[2], [0, 0, 2 / 3, 2 / 3])  # ET: depth 3
    np.testing.assert_allclose(binary_entropy(np.array([0.0, 0.5, 1.0, 2 / 3])), [0, 1, 0, 0.9183], atol=1e-4)
    by_region = agreement(depths, VOXEL_ML)
    # WT: a = b = {1, 2, 3}, c = {2, 3}: Dice 1, 0.8, 0.8.
    assert by_region["WT"]["mean_pairwise_dice"] == pytest.approx((1 + 0.8 + 0.8) / 3, abs=1e-4)
    assert by_region["WT"]["disputed_ml"] == pytest.approx(VOXEL_ML)
    assert agreement(depths[:1], VOXEL_ML)["ET"] == {"mean_pairwise_dice": 1.0, "disputed_ml": 0.0}


@pytest.mark.parametrize("members", range(1, 7))
def test_maps_by_count_equal_the_maps_by_voxel(members):
    """Vote fractions and disagreement looked up by vote count are, bit for bit, the members' mean vote and the
    largest entropy computed voxel by voxel; region volumes counted per sub-region are those of the regions' masks."""
    rng = np.random.default_rng(members)
    depths = rng.integers(0, 4, (members, 40, 30, 20)).astype(np.uint8)
    by_voxel = np.stack([(depths >= REGION_DEPTH[r]).mean(axis=0, dtype=np.float32) for r in REGIONS])
    votes = vote_fractions(vote_counts(depths), len(depths))
    assert votes.dtype == np.float32 and np.array_equal(votes, by_voxel)
    disagreement = disagreement_map(vote_counts(depths), members)
    expected = np.max([binary_entropy(v) for v in by_voxel], axis=0)
    assert disagreement.dtype == np.float32 and np.array_equal(disagreement, expected)
    # The same maps computed around the tumours only, on a grid with tumour-free margins.
    margins = ((5, 2), (0, 3), (4, 4))
    padded = np.pad(depths, ((0, 0), *margins))
    votes, disagreement = ensemble_maps(padded, tumour_box(padded))
    assert votes.flags.f_contiguous and disagreement.flags.f_contiguous
    assert np.array_equal(np.moveaxis(votes, -1, 0), np.pad(by_voxel, ((0, 0), *margins)))
    assert np.array_equal(disagreement, np.pad(expected, margins))
    assert not np.signbit(disagreement).any() and not np.signbit(votes).any()
    none = np.zeros((members, 4, 4, 4), np.uint8)
    empty = ensemble_maps(none, tumour_box(none))
    assert not empty[0].any() and not empty[1].any()
    labels = np.array([0, 2, 1, 3], np.uint8)[depths[0]]  # brats2023 labels of the depths
    assert region_volumes(labels, VOXEL_ML, "brats2023") == {
        region: round(float(np.count_nonzero(region_mask(labels, region, "brats2023"))) * VOXEL_ML, 3)
        for region in SUMMARY_REGIONS}


def test_report_writes_maps_and_flags_disagreement(subject, tmp_path):
    out = tmp_path / "report"
    record = report_subject(subject["fused"], subject["members"], subject["brain"], out, subject="s1",
                            params=QCParams(min_agreement=0.9))
    votes = nib.load(out / "votes.nii.gz")
    assert votes.shape == (16, 16, 16, 3) and votes.get_data_dtype() == np.float32
    np.testing.assert_allclose(votes.affine, AFFINE)
    a, c = subject["arrays"]
    wt = np.asarray(votes.dataobj)[..., 0]
    np.testing.assert_allclose(wt, ((a > 0).astype(float) * 2 + (c > 0)) / 3, atol=1e-6)
    disagreement = np.asarray(nib.load(out / "disagreement.nii.gz").dataobj)
    assert disagreement.max() == pytest.approx(0.9183, abs=1e-4) and disagreement[0, 0, 0] == 0
    assert record["volumes_ml"]["WT"] == pytest.approx(64 * VOXEL_ML)
    assert record["volumes_ml"]["ET"] == pytest.approx(8 * VOXEL_ML)
    assert [f["flag"] for f in record["flags"]] == ["tiny_segmentation", "low_agreement"]
    assert record["inputs"]["member_c"]["sha256"] == sha256_file(subject["members"]["c"])
    assert record["outputs"]["votes"]["path"] == "votes.nii.gz"
    saved = json.loads((out / "report.json").read_text())
    assert saved["agreement"]["ET"]["mean_pairwise_dice"] == pytest.approx(1 / 3, abs=1e-4)  # c has no ET


def test_flags_fire_where_they_should():
    clean = {"WT": 20.0, "TC": 5.0, "ET": 2.0}
    agree = {"WT": {"mean_pairwise_dice": 0.95}}
    params = QCParams()
    assert flags(clean, agree, 3, 0.0, 0.5, params) == []
    empty = flags({"WT": 0.0, "ET": 0.0}, agree, 3, 0.0, 0.0, params)
    assert [f["flag"] for f in empty] == ["empty_segmentation"]
    raised = flags({"WT": 20.0, "ET": 0.0}, {"WT": {"mean_pairwise_dice": 0.5}}, 3, 0.1, 30.0, params)
    assert [f["flag"] for f in raised] == ["no_enhancing_tumour", "low_agreement", "tumour_outside_brain",
                                           "mask_at_border"]
    assert "10.0 % of the whole tumour lies outside the brain mask" in raised[2]["reason"]
    # One member agrees with itself: no agreement flag.
    assert flags(clean, {"WT": {"mean_pairwise_dice": 0.0}}, 1, 0.0, 0.0, params) == []
    mask = np.zeros((5, 5, 5), bool)
    mask[1:4, 1:4, 1:4] = True
    assert border_contact_cm2(mask, (2.0, 2.0, 3.0)) == 0
    mask[1:4, 1:3, 4] = True  # 6 voxels of 2 × 2 mm on the last z face
    assert border_contact_cm2(mask, (2.0, 2.0, 3.0)) == pytest.approx(0.24)


def test_report_refuses_a_member_on_another_grid(subject, tmp_path):
    affine = AFFINE.copy()
    affine[0, 3] += 5.0
    labels = np.asarray(nib.load(subject["members"]["c"]).dataobj)
    moved = save_image(label_image(labels, affine), tmp_path / "moved.nii.gz")
    with pytest.raises(InputError, match="not on the fused segmentation's grid .*: member c"):
        report_subject(subject["fused"], {**subject["members"], "c": moved}, subject["brain"], tmp_path / "out")
    assert not (tmp_path / "out" / "report.json").exists()


def test_cli_report_and_cohort_tables(subject, tmp_path):
    records = []
    for sid in ("s1", "s2"):
        out = tmp_path / sid / "report"
        members = [str(p) for p in subject["members"].values()]
        assert main(["report", "--subject", sid, "--segmentation", str(subject["fused"]), "--members", *members,
                     "--brain-mask", str(subject["brain"]), "--out", str(out), "--min-tumour-ml", "0.1",
                     "--min-agreement", "0.9"]) == 0
        records.append(str(out / "report.json"))
    volumes_csv, qc_tsv = tmp_path / "volumes.csv", tmp_path / "qc.tsv"
    assert main(["report-cohort", "--volumes", str(volumes_csv), "--qc", str(qc_tsv), *records]) == 0
    volumes = pd.read_csv(volumes_csv)
    assert list(volumes["subject"]) == ["s1", "s2"]
    assert volumes.loc[0, "WT_ml"] == pytest.approx(0.512) and volumes.loc[0, "brain_ml"] == pytest.approx(21.95)
    qc = pd.read_csv(qc_tsv, sep="\t")
    assert list(qc["flags"]) == ["low_agreement", "low_agreement"]
    assert qc.loc[0, "members"] == 3 and qc.loc[0, "WT_mean_pairwise_dice"] == pytest.approx(0.8333)
    assert not any(column.endswith("_dice_truth") for column in qc.columns)


def test_cohort_qc_table_has_the_fused_dice_where_a_subject_has_a_truth(subject, tmp_path):
    shifted = save_image(label_image(subject["arrays"][1], AFFINE), tmp_path / "truth.nii.gz")
    records = []
    for sid, truth in (("s1", None), ("s2", shifted)):
        report_subject(subject["fused"], subject["members"], subject["brain"], tmp_path / sid, subject=sid,
                       truth=truth)
        records.append(tmp_path / sid / "report.json")
    _, qc = cohort_tables(records)
    assert qc["WT_dice_truth"].isna().tolist() == [True, False]
    assert qc.loc[1, "WT_dice_truth"] == 0.75 and qc.loc[1, "ET_dice_truth"] == 0.0


def test_report_scores_the_members_and_the_fused_segmentation_against_a_truth(subject, tmp_path):
    truth = save_image(label_image(subject["arrays"][0], AFFINE), tmp_path / "truth.nii.gz")
    record = report_subject(subject["fused"], subject["members"], subject["brain"], tmp_path / "report",
                            subject="s1", truth=truth)
    metrics = record["metrics"]
    assert list(metrics) == ["fused", "a", "b", "c"]
    assert all(metrics[name][r]["dice"] == 1.0 and metrics[name][r]["hd95"] == 0.0
               for name in ("fused", "a") for r in ("WT", "TC", "ET"))
    # c: the 4³ whole tumour shifted by one voxel (48 of 64 voxels shared), no core.
    assert metrics["c"]["WT"]["dice"] == 0.75 and metrics["c"]["WT"]["hd95"] > 0
    assert metrics["c"]["ET"]["dice"] == 0.0 and metrics["c"]["ET"]["hd95"] == 374.0
    assert metrics["c"]["WT"]["volume_gt_ml"] == pytest.approx(64 * VOXEL_ML)
    assert isinstance(metrics["c"]["WT"]["gt_lesions"], int) and "lesion_dice" in metrics["c"]["WT"]
    assert record["inputs"]["truth"]["sha256"] == sha256_file(truth)
    assert json.loads((tmp_path / "report" / "report.json").read_text())["metrics"] == metrics
    # Without a truth: no metrics.
    assert report_subject(subject["fused"], subject["members"], subject["brain"], tmp_path / "plain")["metrics"] == {}


def test_report_refuses_a_truth_off_the_atlas_grid_or_with_foreign_labels(subject, tmp_path):
    labels = subject["arrays"][0]
    native = save_image(label_image(labels, np.diag([1.0, 1.0, 1.0, 1.0])), tmp_path / "native.nii.gz")
    with pytest.raises(InputError, match="not on the fused segmentation's grid .*truth in native space is not "
                                         "supported yet"):
        report_subject(subject["fused"], subject["members"], subject["brain"], tmp_path / "out", truth=native)
    foreign = save_image(label_image(np.where(labels == 3, 4, labels), AFFINE), tmp_path / "brats2021.nii.gz")
    with pytest.raises(InputError, match=r"label values \[4\] are not part of convention brats2023") as error:
        report_subject(subject["fused"], subject["members"], subject["brain"], tmp_path / "out", truth=foreign)
    assert str(foreign) in str(error.value)
    assert not (tmp_path / "out" / "report.json").exists()


def _registration(moving: str, fixed: str, nmi: float, first_failed: list[str] | None = None) -> dict:
    attempts = [{"nmi": 1.0, "failed": first_failed}] if first_failed else []
    return {"moving": moving, "fixed": fixed, "nmi_after": nmi, "method": "registered",
            "attempts": [*attempts, {"nmi": nmi, "failed": []}]}


def test_flags_from_the_earlier_steps_records():
    params = QCParams()
    good = {"registrations": {"t1": _registration("t1", "t1c", 1.09), "t1c": _registration("t1c", "atlas", 1.03),
                              "flair": {"moving": "flair", "fixed": "t1c", "nmi_after": 1.0, "method": "kept as given",
                                        "attempts": []}}}
    brain = {"brain_volume_ml": 1400.0, "field_of_view": {"in_view_ml": 1400.0, "clipped_ml": 0.0}}
    assert record_flags(good, brain, params) == []
    assert record_flags(None, None, params) == []
    marginal = {"registrations": {"t2": _registration("t2", "t1c", 1.05),
                                  "t1c": _registration("t1c", "atlas", 1.015, ["coverage 0.85 is below 0.9"])}}
    small = {"brain_volume_ml": 640.0, "field_of_view": {"in_view_ml": 640.0, "clipped_ml": 35.5}}
    raised = {f["flag"]: f["reason"] for f in record_flags(marginal, small, params)}
    assert list(raised) == ["registration_marginal", "registration_retried", "brain_volume",
                            "brain_cut_by_field_of_view"]
    assert raised["registration_marginal"] == ("t2 → t1c NMI 1.050 < report.min_nmi 1.06; t1c → atlas NMI 1.015 < "
                                               "report.min_nmi_atlas 1.02")
    assert "t1c → atlas (first attempt: coverage 0.85 is below 0.9)" in raised["registration_retried"]
    assert "640 mL outside" in raised["brain_volume"] and "35.5 mL" in raised["brain_cut_by_field_of_view"]


def test_an_unreadable_record_is_named(subject, tmp_path):
    broken = tmp_path / "coregister.json"
    broken.write_text("{not json")
    with pytest.raises(InputError, match="not a readable step record") as error:
        report_subject(subject["fused"], subject["members"], subject["brain"], tmp_path / "report", subject="s1",
                       coregister_record=broken)
    assert str(broken) in str(error.value)


def test_images_moved_out_of_alignment_are_flagged():
    """Two contrasts of one textured head (the FLAIR an inverted, noisy T1c) and the FLAIR moved by 10 voxels."""
    rng = np.random.default_rng(0)
    shape = (60, 60, 50)
    grid = np.indices(shape).astype(float)
    brain = sum(((g - (s - 1) / 2) / r) ** 2 for g, s, r in zip(grid, shape, (26, 26, 21))) <= 1
    texture = ndi.gaussian_filter(rng.normal(size=shape), 3)
    t1c = np.where(brain, 100 + 400 * texture, 0).astype(np.float32)
    flair = np.where(brain, 300 - 500 * texture + rng.normal(0, 5, shape), 0).astype(np.float32)
    moved = ndi.shift(flair, (10, 0, 0), order=1)
    nmi = images_nmi({"t1c": t1c, "flair": flair, "moved": moved}, "t1c", brain, (1.0, 1.0, 1.0))
    assert nmi["flair"] > 1.2 and nmi["moved"] < 1.02
    raised = alignment_flags(nmi, "t1c", QCParams())
    assert raised == [{"flag": "images_misaligned", "reason": "NMI with t1c inside the brain below "
                                                              f"report.min_image_nmi 1.06: moved {nmi['moved']:.3f}"}]
    assert alignment_flags({"flair": nmi["flair"]}, "t1c", QCParams()) == []


def test_a_member_named_fused_is_refused(subject, tmp_path):
    with pytest.raises(InputError, match="a member named 'fused'"):
        report_subject(subject["fused"], {"fused": subject["members"]["a"]}, subject["brain"], tmp_path / "r")


def _regions(shape, wt, tc, et):
    return {key: np.full(shape, value, np.float16) for key, value in (("WT", wt), ("TC", tc), ("ET", et))}


def test_mean_probability_entropy_by_hand():
    """Two region models unsure (0.5) in a box: 1 bit there, 0 elsewhere. A label model (background 0.5, NETC
    0.25, SNFH 0.25: WT 0.5, TC 0.25, ET 0) with a region model (WT 1, TC 0.75, ET 0): mean WT 0.75, TC 0.5, ET 0."""
    shape = (4, 4, 4)
    unsure = _regions(shape, 0.0, 0.0, 0.0)
    for key in unsure:
        unsure[key][:2, :2, :2] = 0.5
    mean = mean_region_probabilities(iter([unsure, {k: v.copy() for k, v in unsure.items()}]), shape)
    assert mean.dtype == np.float32 and mean.shape == (3, *shape)
    entropy, uncertain = probability_entropy(mean, VOXEL_ML)
    assert entropy[:2, :2, :2].min() == 1.0 and entropy.sum() == 8.0
    assert uncertain == {"WT": 8 * VOXEL_ML, "TC": 8 * VOXEL_ML, "ET": 8 * VOXEL_ML}

    label_model = {"background": np.full(shape, 0.5, np.float16), "NETC": np.full(shape, 0.25, np.float16),
                   "SNFH": np.full(shape, 0.25, np.float16), "ET": np.zeros(shape, np.float16)}
    mean = mean_region_probabilities([label_model, _regions(shape, 1.0, 0.75, 0.0)], shape)
    np.testing.assert_array_equal(mean[:, 0, 0, 0], [0.75, 0.5, 0.0])  # REGIONS order WT, TC, ET
    entropy, uncertain = probability_entropy(mean, VOXEL_ML)
    assert np.all(entropy == 1.0)  # TC's 1 bit is the largest (WT's 0.75: 0.811 bit)
    assert uncertain == {"WT": 64 * VOXEL_ML, "TC": 64 * VOXEL_ML, "ET": 0.0}


def test_uncertain_volume_starts_at_half_a_bit():
    """H(0.1) = 0.47 bit is not counted, H(0.2) = 0.72 and H(0.9) = 0.47 vs H(0.85) = 0.61: only 0.2 and 0.85."""
    mean = np.zeros((3, 4, 1, 1), np.float32)
    mean[0, :, 0, 0] = [0.1, 0.2, 0.85, 0.9]
    entropy, uncertain = probability_entropy(mean, 1.0)
    np.testing.assert_allclose(entropy[:, 0, 0], [0.469, 0.7219, 0.6098, 0.469], atol=1e-3)
    assert uncertain == {"WT": 2.0, "TC": 0.0, "ET": 0.0}


def _probability_files(subject, tmp_path):
    """Member a a region model unsure (0.5) over its 4³ tumour; member b a label model sure of its own labels;
    member c (a container, say) none."""
    a, _ = subject["arrays"]
    unsure = _regions(a.shape, 0.0, 0.0, 0.0)
    for key in unsure:
        unsure[key][a > 0] = 0.5
    sure = {"background": (a == 0), "NETC": (a == 1), "SNFH": (a == 2), "ET": (a == 3)}
    return {"a": save_probabilities(unsure, tmp_path / "a_probabilities.npz"),
            "b": save_probabilities({k: v.astype(np.float16) for k, v in sure.items()},
                                    tmp_path / "b_probabilities.npz")}


def test_report_writes_the_mean_probability_entropy(subject, tmp_path):
    """Over a's tumour the mean WT probability is (0.5 + 1) / 2 = 0.75 (0.811 bit); over its enhancing core the
    same for TC and ET; over the oedema TC and ET are (0.5 + 0) / 2 = 0.25, 0.811 bit too; 0 outside."""
    out = tmp_path / "report"
    files = _probability_files(subject, tmp_path)
    record = report_subject(subject["fused"], subject["members"], subject["brain"], out, probabilities=files)
    entropy = nib.load(out / "probability_entropy.nii.gz")
    assert entropy.get_data_dtype() == np.float32
    np.testing.assert_allclose(entropy.affine, AFFINE)
    data = np.asarray(entropy.dataobj)
    a, _ = subject["arrays"]
    np.testing.assert_allclose(data[a > 0], 0.8113, atol=1e-4)
    assert np.all(data[a == 0] == 0)
    assert record["probability_entropy"] == {
        "members": ["a", "b"], "without_probabilities": ["c"], "uncertain_bits": 0.5,
        "uncertain_ml": {"WT": 64 * VOXEL_ML, "TC": 64 * VOXEL_ML, "ET": 64 * VOXEL_ML}}
    assert record["inputs"]["probabilities_b"]["sha256"] == sha256_file(files["b"])
    assert "probability_entropy" in record["maps"] and record["outputs"]["probability_entropy"]

    # Without probabilities no map; with an empty set (the subject's members that write them were skipped), NaN.
    bare = report_subject(subject["fused"], subject["members"], subject["brain"], tmp_path / "bare")
    assert "probability_entropy" not in bare and not (tmp_path / "bare" / "probability_entropy.nii.gz").exists()
    none = report_subject(subject["fused"], subject["members"], subject["brain"], tmp_path / "none",
                          probabilities={})
    assert none["probability_entropy"]["uncertain_ml"] is None
    assert none["probability_entropy"]["without_probabilities"] == ["a", "b", "c"]
    assert np.isnan(np.asarray(nib.load(tmp_path / "none" / "probability_entropy.nii.gz").dataobj)).all()


def test_report_refuses_probabilities_of_a_stranger_or_on_another_grid(subject, tmp_path):
    files = _probability_files(subject, tmp_path)
    with pytest.raises(InputError, match=r"probability files of \['d'\], which are not among the members"):
        report_subject(subject["fused"], subject["members"], subject["brain"], tmp_path / "r",
                       probabilities={"d": files["a"]})
    small = save_probabilities(_regions((8, 8, 8), 0.5, 0.5, 0.5), tmp_path / "small.npz")
    with pytest.raises(InputError, match=r"member a's probability maps have shape \(8, 8, 8\), the fused "
                                         r"segmentation \(16, 16, 16\)"):
        report_subject(subject["fused"], subject["members"], subject["brain"], tmp_path / "r",
                       probabilities={"a": small})


def test_cli_report_takes_probabilities_by_member_name(subject, tmp_path):
    files = _probability_files(subject, tmp_path)
    names = list(subject["members"])
    common = ["report", "--segmentation", str(subject["fused"]), "--brain-mask", str(subject["brain"]),
              "--members", *(str(p) for p in subject["members"].values()), "--names", *names]
    out = tmp_path / "report"
    assert main([*common, "--out", str(out), "--probabilities", f"b={files['b']}", f"a={files['a']}"]) == 0
    record = json.loads((out / "report.json").read_text())
    assert record["probability_entropy"]["members"] == ["a", "b"]
    assert record["probability_entropy"]["uncertain_ml"]["WT"] == pytest.approx(64 * VOXEL_ML)
    empty = tmp_path / "empty"
    assert main([*common, "--out", str(empty), "--probabilities"]) == 0
    assert json.loads((empty / "report.json").read_text())["probability_entropy"]["members"] == []
    assert (empty / "probability_entropy.nii.gz").is_file()
    _, qc = cohort_tables([out / "report.json", empty / "report.json"])
    assert qc.loc[0, "WT_uncertain_ml"] == pytest.approx(64 * VOXEL_ML) and pd.isna(qc.loc[1, "WT_uncertain_ml"])
    with pytest.raises(ConfigError, match="'d' is not one of the members"):
        parse([f"d={files['a']}"], names)
    with pytest.raises(ConfigError, match="expected NAME=NPZ"):
        parse([str(files["a"])], names)
