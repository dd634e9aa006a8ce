"""The shipped demo ensemble (models/demo): checksums verify, every member loads on CPU and segments a tiny
synthetic subject; train-demo's own checks. No training here: `bratsflow models train-demo` takes an hour."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from bratsflow import models
from bratsflow.cli import main
from bratsflow.errors import ConfigError, ModelError
from bratsflow.io import save_image
from bratsflow.labels import region_mask
from bratsflow.metrics import dice
from bratsflow.segment import Member
from bratsflow.segment.nnunet import predict
from bratsflow.training.demo import (DEFAULT_SEED, HELD_OUT_SEED, MEMBERS, PLANS, RESERVED_SEEDS,
                                          atlas_inputs, dataset_json, member_configuration, reuse_preprocessed,
                                          train_demo)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "models" / "demo"
TEST_SUBJECT = "sub-002"


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: m.name)
def test_shipped_member_matches_its_record(member):
    folder = DEMO / member.name
    record = models.verify(folder)
    assert record["name"] == member.name
    assert set(record["files"]) == {"dataset.json", "plans.json", "training.json", "fold_all/checkpoint_final.pth"}
    training = json.loads((folder / "training.json").read_text())
    assert training["member"]["name"] == member.name
    assert training["training_cohort"]["seed"] not in RESERVED_SEEDS
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 10 * 2**20


def test_default_config_runs_the_shipped_members():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    members = config["segment"]["members"]
    assert [m["name"] for m in members] == [m.name for m in MEMBERS]
    for member in members:
        assert (REPO / member["model"]).resolve() == (DEMO / member["name"]).resolve()
    assert config["fuse"]["method"] == "majority"


def test_a_changed_checkpoint_is_refused_before_it_is_unpickled(tmp_path, tiny_subject):
    folder = shutil.copytree(DEMO / MEMBERS[0].name, tmp_path / MEMBERS[0].name)
    # Not a pickle at all: an error other than ModelError would mean it was loaded.
    (folder / "fold_all" / "checkpoint_final.pth").write_bytes(b"not the recorded checkpoint")
    with pytest.raises(ModelError, match="checkpoint_final.pth: SHA-256 differs from the record"):
        models.verify(folder)
    with pytest.raises(ModelError, match="SHA-256 differs"):
        predict(tiny_subject[0], Member(MEMBERS[0].name, model=str(folder), device="cpu"), subject=TEST_SUBJECT)


@pytest.fixture(scope="module")
def tiny_subject(tiny_cohort, tmp_path_factory):
    """A tiny-cohort subject prepared as the pipeline hands it to segmentation (3 mm atlas grid)."""
    folder = tmp_path_factory.mktemp("demo_inputs")
    images, truth = atlas_inputs(tiny_cohort, TEST_SUBJECT)
    return {m: save_image(img, folder / f"{m}.nii.gz") for m, img in images.items()}, np.asarray(truth.dataobj)


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: m.name)
def test_shipped_member_segments_a_tiny_subject_on_cpu(member, tiny_subject):
    files, truth = tiny_subject
    labels, probabilities, details = predict(files, Member(member.name, model=str(DEMO / member.name),
                                                           device="cpu"), subject=TEST_SUBJECT)
    assert labels.shape == truth.shape
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    assert details["regions"] is member.regions
    assert set(probabilities) == ({"WT", "TC", "ET"} if member.regions else {"background", "NETC", "SNFH", "ET"})
    # Coarse 3 mm input, yet the tumour must be found where it is.
    assert dice(region_mask(labels, "WT", "brats2023"), region_mask(truth, "WT", "brats2023")) > 0.6


def test_region_dataset_paints_label_values():
    conv = dataset_json(True, 3)
    assert conv["labels"]["WT"] == [1, 2, 3] and conv["labels"]["TC"] == [1, 3] and conv["labels"]["ET"] == [3]
    assert conv["regions_class_order"] == [2, 1, 3]  # WT painted SNFH, TC painted NETC, ET painted ET
    assert dataset_json(False, 3)["labels"] == {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3}
    assert "regions_class_order" not in dataset_json(False, 3)


def test_member_configuration_shrinks_the_planned_network():
    base = json.loads((DEMO / MEMBERS[0].name / "plans.json").read_text())["configurations"][MEMBERS[0].name]
    member = MEMBERS[1]
    config = member_configuration(base, member)
    arch = config["architecture"]["arch_kwargs"]
    assert config["spacing"] == [member.spacing_mm] * 3 and config["patch_size"] == [member.patch] * 3
    assert arch["features_per_stage"] == list(member.features) and arch["n_stages"] == len(member.features)
    assert len(arch["strides"]) == len(arch["kernel_sizes"]) == len(member.features)
    with pytest.raises(ConfigError, match="not divisible"):
        member_configuration(base, replace(member, patch=36))


def test_preprocessed_data_is_reused_only_when_every_case_exists(tmp_path):
    base = json.loads((DEMO / MEMBERS[0].name / "plans.json").read_text())["configurations"][MEMBERS[0].name]
    plans_file = tmp_path / f"{PLANS}.json"
    plans_file.write_text(json.dumps({"configurations": {"3d_fullres": base}}))
    member = MEMBERS[1]
    data = tmp_path / member_configuration(base, member)["data_identifier"]
    data.mkdir()
    for case in ("sub_001", "sub_002"):
        (data / f"{case}.pkl").touch()
    assert not reuse_preprocessed(tmp_path, [member], n_cases=3)
    assert set(json.loads(plans_file.read_text())["configurations"]) == {"3d_fullres"}
    (data / "sub_003.pkl").touch()
    assert reuse_preprocessed(tmp_path, [member], n_cases=3)
    assert json.loads(plans_file.read_text())["configurations"][member.name] == member_configuration(base, member)


def test_train_demo_refuses_an_unknown_member(tmp_path):
    with pytest.raises(ConfigError, match="unknown demo member.*demo_labels_c.*the demo members are demo_regions"):
        train_demo(tmp_path / "out", members=("demo_labels_c",))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seed", [42, HELD_OUT_SEED])
def test_train_demo_refuses_the_seeds_of_other_cohorts(seed, tmp_path):
    with pytest.raises(ConfigError, match=f"seed {seed} is the seed of"):
        train_demo(tmp_path / "out", seed=seed)
    assert not (tmp_path / "out").exists()


def test_cli_train_demo_reports_a_refused_seed(tmp_path, capsys):
    assert main(["models", "train-demo", "--seed", str(HELD_OUT_SEED), "--out", str(tmp_path / "out")]) == 2
    assert "held-out subjects" in capsys.readouterr().err
    assert DEFAULT_SEED not in RESERVED_SEEDS
