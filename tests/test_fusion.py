"""Label fusion: ITK agreement, properties (hypothesis), tie rules, region mode, SIMPLE dropout, STAPLE, mean."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bratsflow import fusion
from bratsflow.cli import main
from bratsflow.errors import ConfigError, InputError
from bratsflow.fusion import SimpleParams, fuse, fuse_files
from bratsflow.io import label_image, load_probabilities, save_image, save_probabilities, sha256_file
from bratsflow.labels import get_convention, region_mask

LABELS_2023 = [0, 1, 2, 3]
VOTING = ("majority", "weighted", "simple")


def itk_vote(members, undecided):
    images = [sitk.GetImageFromArray(np.ascontiguousarray(m, dtype=np.uint8)) for m in members]
    voter = sitk.LabelVotingImageFilter()
    voter.SetLabelForUndecidedPixels(undecided)
    return sitk.GetArrayFromImage(voter.Execute(images))


def ensembles(convention="brats2023", max_members=6):
    values = [0, *get_convention(convention).values]
    return st.integers(1, max_members).flatmap(lambda k: st.lists(
        arrays(np.uint8, (3, 3, 2), elements=st.sampled_from(values)), min_size=k, max_size=k))


# ---------------------------------------------------------------------------------------------- ITK agreement

def test_label_mode_agrees_with_itk_label_voting_where_itk_decides():
    rng = np.random.default_rng(0)
    for k in range(2, 8):
        members = [rng.integers(0, 4, (12, 10, 8)).astype(np.uint8) for _ in range(k)]
        ours = fuse(members, mode="labels")
        theirs = itk_vote(members, undecided=255)
        decided = theirs != 255
        assert decided.sum() > 100
        np.testing.assert_array_equal(ours[decided], theirs[decided])
        # Ties: the outermost tied class (background, SNFH, NETC, ET) wins.
        counts = np.stack([sum((m == v) for m in members) for v in (0, 2, 1, 3)])  # depth order
        expected = np.array([0, 2, 1, 3])[np.argmax(counts, axis=0)]
        np.testing.assert_array_equal(ours, expected)


def test_region_mode_equals_itk_binary_votes_with_ties_to_background():
    rng = np.random.default_rng(1)
    for k in range(2, 8):
        members = [rng.integers(0, 4, (10, 9, 7)).astype(np.uint8) for _ in range(k)]
        fused = fuse(members, mode="regions")
        for region in ("WT", "TC", "ET"):
            binary = [region_mask(m, region, "brats2023") for m in members]
            np.testing.assert_array_equal(region_mask(fused, region, "brats2023"), itk_vote(binary, 0) == 1)


# ---------------------------------------------------------------------------------------------- properties

@settings(max_examples=60, deadline=None)
@given(members=ensembles(), method=st.sampled_from(VOTING), mode=st.sampled_from(["regions", "labels"]))
def test_unanimous_voxels_keep_their_label(members, method, mode):
    fused = fuse(members, method=method, mode=mode)
    unanimous = np.all([m == members[0] for m in members], axis=0)
    np.testing.assert_array_equal(fused[unanimous], members[0][unanimous])


@settings(max_examples=60, deadline=None)
@given(members=ensembles(), method=st.sampled_from(["majority", "simple"]),
       mode=st.sampled_from(["regions", "labels"]), seed=st.integers(0, 1000))
def test_member_order_does_not_matter(members, method, mode, seed):
    order = np.random.default_rng(seed).permutation(len(members))
    np.testing.assert_array_equal(fuse(members, method=method, mode=mode),
                                  fuse([members[i] for i in order], method=method, mode=mode))


@settings(max_examples=40, deadline=None)
@given(member=arrays(np.uint8, (3, 3, 2), elements=st.sampled_from([0, 1, 2, 4])), copies=st.integers(1, 5),
       method=st.sampled_from(["majority", "weighted", "simple", "staple"]),
       mode=st.sampled_from(["regions", "labels"]))
def test_identical_members_are_returned(member, copies, method, mode):
    fused = fuse([member] * copies, method=method, mode=mode, convention="brats2021")
    np.testing.assert_array_equal(fused, member)
    assert fused.dtype == np.uint8


@settings(max_examples=60, deadline=None)
@given(members=ensembles(), weights=st.lists(st.floats(0.1, 5.0), min_size=6, max_size=6))
def test_region_mode_fuses_each_nested_region_by_weighted_majority(members, weights):
    weights = weights[: len(members)]
    fused = fuse(members, method="weighted", weights=weights, mode="regions")
    total = sum(weights)
    for region in ("WT", "TC", "ET"):
        votes = sum(w * region_mask(m, region, "brats2023") for w, m in zip(weights, members))
        expected = votes > total / 2 + 1e-9 * total
        np.testing.assert_array_equal(region_mask(fused, region, "brats2023"), expected)
    # The hierarchy holds: ET ⊆ TC ⊆ WT, and no tumour appears where no member put any.
    wt, tc, et = (region_mask(fused, r, "brats2023") for r in ("WT", "TC", "ET"))
    assert np.all(tc <= wt) and np.all(et <= tc)
    assert not np.any(wt & ~np.any([m > 0 for m in members], axis=0))


@settings(max_examples=40, deadline=None)
@given(members=ensembles(), method=st.sampled_from(["simple", "staple"]))
def test_region_mode_output_is_a_valid_label_map(members, method):
    fused = fuse(members, method=method, mode="regions")
    assert set(np.unique(fused)) <= {0, 1, 2, 3}
    if method == "simple":  # SIMPLE votes among members: never tumour where none saw any
        assert not np.any((fused > 0) & ~np.any([m > 0 for m in members], axis=0))


# ---------------------------------------------------------------------------------------------- tie rules

def test_disputed_tumour_is_not_emptied_in_region_mode():
    # Three of four members call the voxel tumour, each a different sub-label, the fourth background.
    members = [np.full((1, 1, 1), v, dtype=np.uint8) for v in (1, 2, 3, 0)]
    assert fuse(members, mode="labels").item() == 0  # a four-way tie: label voting empties it
    # WT 3/4 → tumour; TC 2/4 is a tie → not core; so oedema.
    assert fuse(members, mode="regions").item() == 2
    # All three call it tumour, all disagree on the sub-label: core by 2/3 (NETC, ET), not enhancing (1/3).
    members = [np.full((1, 1, 1), v, dtype=np.uint8) for v in (1, 2, 3)]
    assert fuse(members, mode="regions").item() == 1
    assert fuse(members, mode="labels").item() == 2  # three-way tie → the outermost, SNFH


def test_exact_ties_never_promote_a_voxel():
    two = [np.array([[[0, 2, 1]]], dtype=np.uint8), np.array([[[2, 1, 3]]], dtype=np.uint8)]
    assert fuse(two, mode="regions").tolist() == [[[0, 2, 1]]]
    assert fuse(two, mode="labels").tolist() == [[[0, 2, 1]]]
    # Weighted sums that tie on paper tie here too (0.1 + 0.2 against 0.3).
    three = [np.array([[[2]]], dtype=np.uint8), np.array([[[2]]], dtype=np.uint8), np.array([[[0]]], dtype=np.uint8)]
    assert fuse(three, method="weighted", weights=[0.1, 0.2, 0.3]).item() == 0
    assert fuse(three, method="weighted", weights=[0.1, 0.2, 0.29]).item() == 2


@pytest.mark.parametrize("mode", ["regions", "labels"])
def test_the_vote_table_gives_the_direct_vote(mode):
    # Many voxels and few members: the vote is looked up per combination of member depths; it must equal the
    # vote computed voxel by voxel, ties and near-ties of weighted sums included.
    rng = np.random.default_rng(3)
    for k, weights in [(1, [1.0]), (3, [0.1, 0.2, 0.3]), (4, [1.0, 1.0, 1.0, 1.0]), (5, [0.3, 0.1, 0.2, 0.1, 0.5]),
                       (6, [1.0, 1.2, 0.8, 1.1, 0.9, 0.5]), (7, [2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])]:
        depths = rng.integers(0, 4, (k, 4 ** k + 1000)).astype(np.uint8)
        w = np.asarray(weights)
        np.testing.assert_array_equal(fusion._table_vote(depths, w, mode), fusion._vote(depths, w, mode))


def test_memory_layout_dtype_odd_sizes_and_blocks_do_not_change_the_result(monkeypatch):
    rng = np.random.default_rng(4)
    for shape in [(40, 30, 20), (7, 5, 3), (1, 1, 1)]:
        # Noisy nested spheres (members of random labels would keep STAPLE iterating for minutes).
        distance = np.linalg.norm(np.indices(shape) - (np.array(shape)[:, None, None, None] - 1) / 2, axis=0)
        members = [np.select([radius < 3, radius < 5, radius < 8], [3, 1, 2], 0).astype(np.uint8)
                   for radius in (distance + rng.normal(0, 1.0, shape) for _ in range(5))]
        weights = [1.0, 0.5, 2.0, 1.5, 0.7]
        variants = [[np.asfortranarray(m) for m in members],
                    [np.asfortranarray(members[0]), *members[1:]],
                    [m.astype(np.int16) for m in members],
                    [members[0].astype(np.float32), *members[1:]],
                    [np.swapaxes(np.swapaxes(m, 0, 1).copy(), 0, 1) for m in members]]  # neither C nor F
        for method in ("majority", "weighted", "simple", "staple"):
            for mode in ("regions", "labels"):
                w = weights if method in ("weighted", "simple") else None
                expected, details = fuse(members, method=method, mode=mode, weights=w, return_details=True)
                for variant in variants:
                    fused, other = fuse(variant, method=method, mode=mode, weights=w, return_details=True)
                    np.testing.assert_array_equal(fused, expected)
                    assert other == details
                with monkeypatch.context() as patch:  # many small blocks
                    patch.setattr(fusion, "BLOCK_WORDS", 5)
                    fused, other = fuse(members, method=method, mode=mode, weights=w, return_details=True)
                np.testing.assert_array_equal(fused, expected)
                assert other == details
        union = np.any(members, axis=0)
        _, details = fuse(members, return_details=True)
        assert details["tumour_voxels_union"] == union.sum()
        assert details["unanimous_voxels"] == (np.all([m == members[0] for m in members], axis=0) & union).sum()


# ---------------------------------------------------------------------------------------------- SIMPLE

def _blob_ensemble():
    core = np.zeros((20, 20, 20), dtype=np.uint8)
    core[5:15, 5:15, 5:15] = 2
    core[8:12, 8:12, 8:12] = 1
    slab = np.zeros_like(core, dtype=bool)
    slab[15, 5:15, 5:15] = True
    good = []
    for k in range(4):
        member = core.copy()
        if k < 2:
            member[slab] = 2  # two of the four good members extend the tumour by one slice
        good.append(member)
    bad = np.zeros_like(core)
    bad[0:4, 0:4, 0:20] = 2  # somewhere else entirely ...
    bad[slab] = 2            # ... but siding with the first two on the disputed slice
    return good, bad, slab


def test_simple_dropout_really_removes_a_bad_member():
    good, bad, slab = _blob_ensemble()
    members = [*good, bad]
    names = ["g1", "g2", "g3", "g4", "bad"]
    # With the bad member voting, the slice wins 3 of 5; without it, 2 of 4 is a tie.
    assert np.all(fuse(members, method="majority")[slab] == 2)
    fused, details = fuse(members, method="simple", names=names, return_details=True,
                          simple=SimpleParams(weight_power=0.0))
    wt = details["simple"]["WT"]
    assert wt["dropped"] == {"bad": 1}
    assert wt["kept"] == ["g1", "g2", "g3", "g4"]
    assert wt["final_weights"]["bad"] == 0.0
    np.testing.assert_array_equal(fused, fuse(good, method="majority"))
    assert not np.any(fused[slab])
    # Label mode drops it too.
    _, details = fuse(members, method="simple", mode="labels", names=names, return_details=True)
    assert "bad" in details["simple"]["dropped"]


def test_simple_keeps_at_least_min_members_and_can_be_disabled():
    good, bad, _ = _blob_ensemble()
    names = ["g1", "g2", "g3", "g4", "bad"]
    _, details = fuse([*good, bad], method="simple", names=names, return_details=True,
                      simple=SimpleParams(min_members=5))
    assert details["simple"]["WT"]["dropped"] == {}
    _, details = fuse([*good, bad], method="simple", names=names, return_details=True,
                      simple=SimpleParams(alpha=10.0))
    assert details["simple"]["WT"]["dropped"] == {}
    assert details["simple"]["WT"]["converged"]


# ---------------------------------------------------------------------------------------------- STAPLE

def test_staple_outvotes_a_poor_rater_and_fills_undecided_voxels():
    good, bad, slab = _blob_ensemble()
    fused = fuse([*good, bad], method="staple")
    assert np.all(fused[0:4, 0:4, :] == 0)
    assert np.array_equal(fused[5:15, 5:15, 5:15] > 0, np.ones((10, 10, 10), bool))
    labels = fuse([*good, bad], method="staple", mode="labels")
    assert set(np.unique(labels)) <= {0, 1, 2}
    with pytest.raises(ConfigError, match="takes no member weights"):
        fuse([*good, bad], method="staple", weights=[1, 1, 1, 1, 2])


# ---------------------------------------------------------------------------------------------- mean

def _probabilities_from(labels, convention="brats2023", soft=0.9):
    values = get_convention(convention).labels
    onehot = {"background": labels == 0, **{name: labels == v for name, v in values.items()}}
    rest = (1 - soft) / 3
    return {key: np.where(mask, soft, rest).astype(np.float16) for key, mask in onehot.items()}


def test_mean_of_label_probabilities_matches_the_vote_and_mixes_with_region_models(tmp_path):
    rng = np.random.default_rng(3)
    members = [rng.integers(0, 4, (6, 5, 4)).astype(np.uint8) for _ in range(3)]
    probabilities = [_probabilities_from(m) for m in members]
    for mode in ("labels", "regions"):
        assert np.array_equal(fuse(members, method="mean", mode=mode, probabilities=probabilities),
                              fuse(members, method="majority", mode=mode))
    # A region model's file: sigmoid outputs per region; saved and read back as float16 .npz.
    wt = np.full((6, 5, 4), 0.8)
    region_file = save_probabilities({"WT": wt, "TC": wt * 0.5, "ET": wt * 0.1}, tmp_path / "r_probabilities.npz")
    loaded = load_probabilities(region_file)
    assert set(loaded) == {"WT", "TC", "ET"} and loaded["WT"].dtype == np.float16
    only_region = fuse([members[0]], method="mean", probabilities=[region_file])
    assert np.all(only_region == 2)  # WT 0.8 > 0.5, TC 0.4: oedema everywhere
    assert np.all(fuse([members[0]], method="mean", mode="labels", probabilities=[region_file]) == 2)


def test_mean_thresholds_strictly_above_one_half():
    half = {"WT": np.full((2, 2, 2), 0.5), "TC": np.zeros((2, 2, 2)), "ET": np.zeros((2, 2, 2))}
    seg = np.zeros((2, 2, 2), dtype=np.uint8)
    assert not fuse([seg], method="mean", probabilities=[half]).any()
    # Label mode: tie between background and SNFH → background (outermost first).
    tie = {"background": np.full((2, 2, 2), 0.5), "SNFH": np.full((2, 2, 2), 0.5),
           "NETC": np.zeros((2, 2, 2)), "ET": np.zeros((2, 2, 2))}
    assert not fuse([seg], method="mean", mode="labels", probabilities=[tie]).any()


# Values at and around the thresholds the mean uses (1/8 for the voxels it skips, 1/2 for the result).
EDGE_VALUES = (0.0, 0.0625, 0.124, 0.125, 0.126, 0.25, 0.375, 0.4995, 0.5, 0.5005, 0.75, 0.875, 1.0)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kinds=st.lists(st.sampled_from(["labels", "regions"]), min_size=1,
                                                      max_size=4),
       mode=st.sampled_from(["labels", "regions"]), dtype=st.sampled_from([np.float16, np.float32]),
       weighted=st.booleans())
def test_mean_skips_only_voxels_that_are_background_whatever_the_weights(seed, kinds, mode, dtype, weighted):
    """The mean computed on its support equals the mean computed on every voxel."""
    rng = np.random.default_rng(seed)
    shape = (9, 8, 7)
    members = []
    for kind in kinds:
        keys = ("WT", "TC", "ET") if kind == "regions" else ("background", "NETC", "SNFH", "ET")
        members.append({key: np.where(rng.random(shape) < 0.6, rng.choice(EDGE_VALUES, shape),
                                      rng.random(shape)).astype(dtype) for key in keys})
    weights = rng.uniform(0.2, 3.0, len(kinds)) if weighted else np.ones(len(kinds))
    segmentations = [np.zeros(shape, np.uint8)] * len(kinds)
    every_voxel = fusion._mean_depths([(m, k) for m, k in zip(members, kinds)], weights, mode, shape)
    fused = fuse(segmentations, method="mean", mode=mode, weights=list(weights), probabilities=members)
    assert np.array_equal(fused, fusion.from_depth(every_voxel, "brats2023"))


def test_mean_input_errors(tmp_path):
    seg = np.zeros((2, 2, 2), dtype=np.uint8)
    with pytest.raises(InputError, match="one probability file per member"):
        fuse([seg, seg], method="mean", probabilities=[_probabilities_from(seg)])
    with pytest.raises(InputError, match=r"member #1: probability maps have shape \(3, 2, 2\)"):
        fuse([seg], method="mean", probabilities=[_probabilities_from(np.zeros((3, 2, 2), np.uint8))])
    with pytest.raises(InputError, match="neither"):
        fuse([seg], method="mean", probabilities=[{"WT": np.zeros((2, 2, 2))}])
    with pytest.raises(InputError, match="outside"):
        fuse([seg], method="mean", probabilities=[{k: np.full((2, 2, 2), 1.5) for k in ("WT", "TC", "ET")}])
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable"):
        fuse([seg], method="mean", probabilities=[tmp_path / "x.npz"])


# ---------------------------------------------------------------------------------------------- inputs

@pytest.mark.parametrize("convention, et", [("brats2023", 3), ("brats2021", 4)])
def test_both_conventions(convention, et):
    members = [np.array([[[et, 1, 2, 0]]]), np.array([[[et, 1, 0, 0]]]), np.array([[[1, et, 2, 2]]])]
    for method in ("majority", "simple", "staple"):
        fused = fuse(members, method=method, convention=convention)
        assert fused.tolist() == [[[et, 1, 2, 0]]]
    other = 4 if et == 3 else 3
    with pytest.raises(InputError, match=rf"member #2: label values \[{other}\] are not part of convention"):
        fuse([members[0], np.array([[[other, 0, 0, 0]]])], convention=convention)


def test_images_keep_their_geometry_and_mismatches_name_the_member(tmp_path):
    affine = np.array([[-1.5, 0, 0, 90], [0, 1.5, 0, -120], [0, 0, 2.0, -60], [0, 0, 0, 1]])
    data = np.zeros((6, 5, 4), dtype=np.int16)
    data[2:4, 2:4, 1:3] = 2
    paths = []
    for name in ("alpha", "beta", "gamma"):
        img = nib.Nifti1Image(data, affine)
        img.set_sform(affine, code=2)
        paths.append(save_image(img, tmp_path / f"{name}.nii.gz"))
    fused = fuse([nib.load(p) for p in paths])
    assert isinstance(fused, nib.Nifti1Image)
    assert fused.get_data_dtype() == np.uint8
    np.testing.assert_allclose(fused.affine, affine)
    assert int(fused.header["sform_code"]) == 2
    np.testing.assert_array_equal(np.asanyarray(fused.dataobj), data)

    shifted = affine.copy()
    shifted[0, 3] += 1.0
    save_image(nib.Nifti1Image(data, shifted), tmp_path / "delta.nii.gz")
    with pytest.raises(InputError, match=r"member delta: not on member alpha's grid \(the affines differ by up to 1 "):
        fuse([*paths, tmp_path / "delta.nii.gz"])
    with pytest.raises(InputError, match=r"member b: shape \(6, 5, 3\) differs from member a's \(6, 5, 4\)"):
        fuse([data, data[:, :, :3]], names=["a", "b"])


def test_bad_arguments_are_errors():
    seg = np.zeros((2, 2, 2), dtype=np.uint8)
    with pytest.raises(ConfigError, match="unknown fusion method"):
        fuse([seg], method="vote")
    with pytest.raises(ConfigError, match="unknown fusion mode"):
        fuse([seg], mode="voxels")
    with pytest.raises(ConfigError, match="2 weights for 3 members"):
        fuse([seg] * 3, method="weighted", weights=[1, 2])
    with pytest.raises(ConfigError, match="finite and > 0"):
        fuse([seg] * 2, method="weighted", weights=[1, 0])
    with pytest.raises(ConfigError, match="method majority takes no member weights"):
        fuse([seg] * 2, method="majority", weights=[1, 2])
    with pytest.raises(InputError, match="nothing to fuse"):
        fuse([])
    with pytest.raises(InputError, match="non-integer"):
        fuse([seg, np.full((2, 2, 2), 0.5)])
    with pytest.raises(ConfigError, match="not unique"):
        fuse([seg, seg], names=["a", "a"])
    with pytest.raises(ConfigError, match="alpha"):
        SimpleParams(alpha=-1)


# ---------------------------------------------------------------------------------------------- files and CLI

def test_fuse_cli_writes_image_and_record(tmp_path, capsys):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    rng = np.random.default_rng(5)
    paths = []
    for k in range(3):
        labels = rng.integers(0, 4, (8, 7, 6)).astype(np.uint8)
        paths.append(save_image(label_image(labels, affine), tmp_path / f"m{k}.nii.gz"))
    out, record = tmp_path / "fused.nii.gz", tmp_path / "fuse.json"
    assert main(["fuse", *map(str, paths), "-o", str(out), "--method", "weighted", "--weights", "1", "2", "1",
                 "--record", str(record), "--subject", "s1"]) == 0
    expected = fuse([nib.load(p) for p in paths], method="weighted", weights=[1, 2, 1])
    np.testing.assert_array_equal(np.asanyarray(nib.load(out).dataobj), np.asanyarray(expected.dataobj))
    meta = json.loads(record.read_text())
    parameters = meta["parameters"]
    assert parameters["method"] == "weighted" and parameters["mode"] == "regions"
    assert parameters["weights"] == [1.0, 2.0, 1.0] and parameters["members"] == ["m0", "m1", "m2"]
    assert {name: entry["sha256"] for name, entry in meta["inputs"].items()} == \
        {f"m{k}": sha256_file(path) for k, path in enumerate(paths)}
    assert meta["outputs"]["segmentation"]["path"] == "fused.nii.gz"
    assert meta["environment"]["packages"]["SimpleITK"]
    assert main(["fuse", str(paths[0]), "-o", str(out), "--method", "mean"]) == 2
    assert "method mean needs one probability file per member" in capsys.readouterr().err


def test_fuse_files_with_probability_files(tmp_path):
    affine = np.eye(4)
    seg = np.zeros((4, 4, 4), dtype=np.uint8)
    seg[1:3, 1:3, 1:3] = 3
    path = save_image(label_image(seg, affine), tmp_path / "a.nii.gz")
    npz = save_probabilities(_probabilities_from(seg), tmp_path / "a_probabilities.npz")
    fuse_files([path], tmp_path / "out.nii.gz", record=tmp_path / "r.json", method="mean", probabilities=[npz])
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "out.nii.gz").dataobj), seg)
    meta = json.loads((tmp_path / "r.json").read_text())
    assert meta["inputs"]["a_probabilities"]["sha256"] == sha256_file(npz)
