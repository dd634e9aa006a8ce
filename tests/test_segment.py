"""nnU-Net v2 ensemble members: label- and region-based tiny models trained here, run through the real
predictor on the tiny cohort's atlas-space images."""

import json

import nibabel as nib
import numpy as np
import pytest

from bratsflow.cli import main
from bratsflow.cohort import MODALITIES
from bratsflow.errors import ConfigError, ModelError
from bratsflow.io import load_probabilities
from bratsflow.labels import region_mask
from bratsflow.metrics import dice
from bratsflow.segment import Member, segment
from bratsflow.segment import nnunet as nnunet_member
from nnunet_helpers import atlas_space_subject


@pytest.fixture(scope="module")
def subject_files(tiny_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("segment_inputs")
    files = {}
    for sid in ("sub-001", "sub-002"):
        images, labels = atlas_space_subject(tiny_cohort, sid)
        files[sid] = {}
        for modality, img in images.items():
            files[sid][modality] = out / f"{sid}_{modality}.nii.gz"
            nib.save(img, files[sid][modality])
        files[sid]["truth"] = labels
    return files


@pytest.mark.parametrize("kind", ["labels", "regions"])
def test_member_writes_labels_and_probabilities_that_agree(tiny_members, subject_files, tmp_path, kind):
    files = subject_files["sub-001"]
    member = Member(name=f"tiny_{kind}", model=str(tiny_members[kind]))
    record = segment({m: files[m] for m in MODALITIES}, member, tmp_path, subject="sub-001", threads=2)
    labels_img = nib.load(tmp_path / f"tiny_{kind}.nii.gz")
    labels = np.asarray(labels_img.dataobj)
    assert labels_img.get_data_dtype() == np.uint8
    assert np.allclose(labels_img.affine, nib.load(files["t1"]).affine) and labels.shape == files["truth"].shape
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    # A model that has seen this subject finds its tumour where it is: the voxel order came back right.
    assert dice(region_mask(labels, "WT", "brats2023"), region_mask(files["truth"], "WT", "brats2023")) > 0.6
    probabilities = load_probabilities(tmp_path / f"tiny_{kind}_probabilities.npz")
    if kind == "regions":
        assert sorted(probabilities) == ["ET", "TC", "WT"]
        for region in ("WT", "TC", "ET"):
            agree = (probabilities[region] > 0.5) == region_mask(labels, region, "brats2023")
            assert agree.mean() > 0.999, region
    else:
        assert sorted(probabilities) == ["ET", "NETC", "SNFH", "background"]
        stacked = np.stack([probabilities[k] for k in ("background", "NETC", "SNFH", "ET")])
        assert (np.argmax(stacked, axis=0) == labels).mean() > 0.999
    assert record["method"]["regions"] is (kind == "regions")
    assert record["method"]["channels"] == (["flair", "t1", "t1c", "t2"] if kind == "labels" else list(MODALITIES))


def test_channels_are_read_in_the_models_order(tiny_members, subject_files, tmp_path, monkeypatch):
    files = subject_files["sub-002"]
    seen = []
    read = nnunet_member.read_channels
    monkeypatch.setattr(nnunet_member, "read_channels", lambda f: seen.extend(f) or read(f))
    segment({m: files[m] for m in MODALITIES}, Member(name="a", model=str(tiny_members["labels"])), tmp_path)
    assert seen == [files["flair"], files["t1"], files["t1c"], files["t2"]]


def test_pipeline_convention_brats2021(tiny_members, subject_files, tmp_path):
    files = subject_files["sub-001"]
    segment({m: files[m] for m in MODALITIES}, Member(name="old", model=str(tiny_members["labels"])), tmp_path,
            convention="brats2021")
    values = set(np.unique(np.asarray(nib.load(tmp_path / "old.nii.gz").dataobj)).tolist())
    assert 4 in values and 3 not in values


def test_bad_member_settings(tiny_members, subject_files, tmp_path):
    files = {m: subject_files["sub-002"][m] for m in MODALITIES}
    folder = str(tiny_members["labels"])
    with pytest.raises(ModelError, match="fold_0/checkpoint_final.pth is not part of the model .*fold_all"):
        segment(files, Member(name="a", model=folder, folds=("0",)), tmp_path)
    with pytest.raises(ModelError, match="the config pins 0{64}"):
        segment(files, Member(name="a", model=folder, sha256="0" * 64), tmp_path)
    with pytest.raises(ConfigError, match="channels lists 2 modalities, the model takes 4"):
        segment(files, Member(name="a", model=folder, channels=("t1", "t2")), tmp_path)
    with pytest.raises(ConfigError, match="channel name 'DWI' of the model is not a known modality name"):
        nnunet_member.channel_modalities({"channel_names": {"0": "DWI"}})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['foldz'\]"):
        Member.from_config({"name": "a", "model": "x", "foldz": [0]})
    assert not list(tmp_path.glob("*.nii.gz"))


def test_segment_cli_with_spec_and_config(tiny_members, subject_files, tmp_path):
    files = subject_files["sub-002"]
    args = [f"--{m}={files[m]}" for m in MODALITIES]
    spec = json.dumps({"model": str(tiny_members["regions"]), "kind": "nnunetv2", "weight": 2.0})
    assert main(["--threads", "2", "segment", *args, "--member", "r", "--spec", spec, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "r.nii.gz").is_file() and (tmp_path / "r_probabilities.npz").is_file()
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"segment": {"members": [{"name": "l", "model": str(tiny_members["labels"])}]}}))
    assert main(["segment", *args, "--member", "l", "--config", str(config), "--out", str(tmp_path)]) == 0
    assert main(["segment", *args, "--member", "zz", "--config", str(config), "--out", str(tmp_path)]) == 2


def test_a_member_of_another_task_is_refused_before_it_runs(tmp_path):
    # No images, no model: the label sets are compared before anything is loaded or predicted.
    member = Member(name="ped", model="absent", labels="brats-ped")
    with pytest.raises(ConfigError, match="member ped writes label set brats-ped .* no exact mapping .*brats2023"):
        segment({}, member, tmp_path / "out", convention="brats2023", subject="s1")
    assert not (tmp_path / "out").exists()
