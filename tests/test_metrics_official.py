"""`bratsflow metrics --official TASK`: the BraTS 2024-2025 official scorer (brats-evaluation, on panoptica).

The package is the optional extra `official` (AGPL-3.0, and it caps numpy below 2.3), not part of the test extra:
the tests that run it skip where it is not installed, and only the message for the missing package runs
everywhere. .ci/run runs them in an environment of their own (numpy below 2.3) with the extra."""

import importlib.util
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bratsflow.errors import ConfigError

# .ci/run runs this file again in an environment with the extra and BRATSFLOW_REQUIRE_OFFICIAL=1: there a missing
# package fails the tests instead of skipping them.
needs_package = pytest.mark.skipif(importlib.util.find_spec("brats_evaluation") is None
                                   and os.environ.get("BRATSFLOW_REQUIRE_OFFICIAL") != "1",
                                   reason="brats-evaluation is the optional extra `official`, not installed here")

# Real pairs (prediction, truth) of ../shared/real, in the 2023 label values; the TCGA-DU-7294 candidates are in
# the 2017-2021 values (ET 4) and are relabelled. xfeng has a false-positive TC component; isen's NETC is many small
# components, where the 2023 and 2024-25 lesion definitions part most.
TOOLKIT = "tcga-du-7294/seg_candidates_bratstoolkit"
GLI = "brats-gli-00001-000/seg_candidates"
PAIRS = {"xfeng": (f"{TOOLKIT}/xfeng.nii.gz", f"{TOOLKIT}/mic-dkfz.nii.gz"),
         "lfb_rwth": (f"{TOOLKIT}/lfb_rwth.nii.gz", f"{TOOLKIT}/mic-dkfz.nii.gz"),
         "isen": (f"{GLI}/seg-bratstoolkit_isen.nii.gz", f"{GLI}/seg-BraTS23_1.nii.gz")}


def _in_2023_values(source: Path, target: Path) -> Path:
    image = nib.load(source)
    labels = np.rint(np.asanyarray(image.dataobj)).astype(np.uint8)
    labels[labels == 4] = 3
    nib.save(nib.Nifti1Image(labels, image.affine), target)
    return target


@pytest.fixture(scope="module")
def pairs(shared_real, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("official_pairs")
    return {name: tuple(_in_2023_values(shared_real / path, folder / f"{name}_{role}.nii.gz")
                        for role, path in zip(("pred", "gt"), files))
            for name, files in PAIRS.items()}


def _direct(pred: Path, gt: Path, task: str, tmp_path: Path) -> pd.Series:
    """The package run as its README runs it, on one case: evaluate, write the summary JSON, parse it."""
    import json

    from brats_evaluation import config_path, evaluate_single_exam, parse_seg_results
    from panoptica import Panoptica_Evaluator

    evaluator = Panoptica_Evaluator.load_from_config(str(config_path(task)))
    result = evaluate_single_exam(str(pred), str(gt), pred.name, evaluator)
    (tmp_path / "summary.json").write_text(json.dumps({"metrics": [result], "missings": []}))
    parse_seg_results(str(tmp_path / "summary.json"), str(tmp_path / "parsed.csv"))
    return pd.read_csv(tmp_path / "parsed.csv").iloc[0]


@needs_package
@pytest.mark.parametrize("name, convention, task", [("xfeng", "brats2023", "GoAT"), ("lfb_rwth", "brats2023", "MenPre"),
                                                    ("isen", "brats-gli-post", "gli")])
def test_the_wrapper_returns_what_the_package_returns(pairs, tmp_path, name, convention, task):
    from bratsflow.metrics import evaluate
    from bratsflow.official import evaluate_official

    pred, gt = pairs[name]
    table = evaluate_official(pred, gt, convention, task).set_index("region")
    direct = _direct(pred, gt, task, tmp_path)
    shown = {f"{column}_{region.lower()}": value for region, row in table.iterrows() for column, value in row.items()}
    assert set(shown) == set(direct.index) - {"subject_id"}
    for key, value in shown.items():
        assert value == direct[key] or (np.isnan(value) and np.isnan(direct[key])), key
    # Where the definitions coincide, bratsflow's own numbers agree: global Dice of each region with voxels.
    # Where a region is empty in both, the official scorer has no instances (NaN) and the 2023 script says 1.
    own, _ = evaluate(pred, gt, convention)
    for region, dice in own.set_index("region")["dice"].items():
        official = table.loc[region, "global_dsc"]
        assert dice == pytest.approx(official, abs=1e-12) if not np.isnan(official) else dice == 1.0, region


@needs_package
def test_each_label_set_is_scored_by_the_tasks_whose_groups_are_its_regions():
    from bratsflow.labels import CONVENTIONS
    from bratsflow.official import tasks_for

    # GoAT's and MenPre's configs are the same; brats2021's enhancing tumour 4 is in no official config.
    assert {name: tasks_for(name) for name in CONVENTIONS} == {
        "brats2023": ["MenPre", "GoAT"], "brats2021": [], "brats-men": ["MenPre", "GoAT"],
        "brats-ssa": ["MenPre", "GoAT"], "brats-gli-post": ["gli"], "brats-met": ["mets"], "brats-ped": ["ped"],
        "brats-men-rt": ["MenRT"]}


@needs_package
def test_a_task_of_other_groups_is_refused_with_the_ones_that_fit(pairs):
    from bratsflow.official import evaluate_official

    pred, gt = pairs["xfeng"]
    with pytest.raises(ConfigError, match=r"official task gli scores .*rc.* brats2023 .*use --official MenPre or GoAT"):
        evaluate_official(pred, gt, "brats2023", "gli")
    with pytest.raises(ConfigError, match="no official task scores this label set"):
        evaluate_official(pred, gt, "brats2021", "GoAT")


@needs_package
def test_command_prints_one_row_per_region(pairs, capsys):
    from bratsflow.cli import main

    pred, gt = pairs["xfeng"]
    assert main(["metrics", str(pred), str(gt), "--official", "GoAT"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["region", "all_instance_tp"] and "lesionwise_dsc_mean" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["WT", "TC", "ET"]


def test_without_the_package_the_error_names_the_extra(monkeypatch):
    import sys

    from bratsflow.official import evaluate_official

    monkeypatch.setitem(sys.modules, "brats_evaluation", None)
    with pytest.raises(ConfigError, match=r"brats-evaluation .*pip install 'bratsflow\[official\]'"):
        evaluate_official("pred.nii.gz", "gt.nii.gz", "brats2023", "GoAT")
