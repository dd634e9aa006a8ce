"""The BraTS 2024-2025 challenges' own scorer on one prediction and ground truth: the `brats-evaluation` package
(BraTS/BraTS_evaluation, AGPL-3.0, built on panoptica), installed with the `official` extra and called, not
copied. Lesions are the connected components of each label group, matched by maximum bipartite Dice; DSC, NSD and
HD95 per matched lesion and over the whole group, with the package's edge-case rules and its parser's column
names (`parse_seg_results`, or `parse_mets_results` for the metastasis task). bratsflow only checks that the
task's label groups are the label set's regions and turns the parser's one row per case into one row per region.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, InputError
from .labels import get_convention

if TYPE_CHECKING:  # pandas and bratsflow.metrics load when scoring, not when the command line starts
    import pandas as pd

TASKS = ("gli", "mets", "ped", "MenPre", "MenRT", "GoAT")
# The metastasis parser's size and overlap thresholds: the defaults of `brats-parse-metrics mets`, as the
# package's README runs it for the challenge.
METS_VOLUME_THRESHOLD = 20.0
METS_OVERLAP_THRESHOLD = 0.1
INSTALL_HINT = "pip install 'bratsflow[official]'"


def _package():
    try:
        import brats_evaluation
        from panoptica import Panoptica_Evaluator
    except ImportError as exc:
        raise ConfigError(f"the official BraTS scorer needs the brats-evaluation package ({exc}); install the "
                          f"optional extra: {INSTALL_HINT}") from None
    return brats_evaluation, Panoptica_Evaluator


@contextlib.contextmanager
def _package_output():
    """The package prints (panoptica's citation reminder, its warning that the nested groups share labels, the
    parser's progress and table): to stderr, so that stdout holds only bratsflow's table."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


@functools.cache
def _evaluator(task: str):
    if task not in TASKS:
        raise ConfigError(f"unknown official task {task!r}; expected one of {list(TASKS)}")
    brats_evaluation, Panoptica_Evaluator = _package()
    with _package_output():
        return Panoptica_Evaluator.load_from_config(str(brats_evaluation.config_path(task)))


@functools.cache
def task_groups(task: str) -> dict[str, tuple[int, ...]]:
    """The label groups of an official task's config: group name -> the label values it merges."""
    from panoptica.utils.label_group import LabelGroup, LabelMergeGroup

    # The groups are private to the evaluator; its config representation is how panoptica itself saves them.
    evaluator = _evaluator(task)
    groups = type(evaluator)._yaml_repr(evaluator)["segmentation_class_groups"]
    out = {}
    for name, group in groups.items():
        labels = tuple(sorted(group.value_labels))
        # A plain group of several labels would keep them as separate classes, not the union a region is.
        if type(group) not in (LabelGroup, LabelMergeGroup) or (len(labels) > 1 and type(group) is LabelGroup):
            raise ConfigError(f"official task {task}: group {name} ({type(group).__name__} {list(labels)}) is not a "
                              "union of labels, which bratsflow's regions are")
        out[name] = labels
    return out


def _set_groups(convention: str) -> dict[str, tuple[int, ...]]:
    label_set = get_convention(convention)
    return {region.lower(): tuple(sorted(label_set.region_labels(region))) for region in label_set.regions}


def tasks_for(convention: str) -> list[str]:
    """The official tasks whose label groups are exactly the label set's regions."""
    wanted = _set_groups(convention)
    return [task for task in TASKS if task_groups(task) == wanted]


def require_task(convention: str, task: str) -> None:
    """Raise unless the task's label groups are exactly the label set's regions (names and label values)."""
    groups, wanted = task_groups(task), _set_groups(convention)
    if groups != wanted:
        matching = tasks_for(convention)
        hint = f"use --official {' or '.join(matching)}" if matching else "no official task scores this label set"
        raise ConfigError(f"official task {task} scores the groups {groups}, but label set "
                          f"{get_convention(convention).describe()} has the regions {wanted}: {hint}")


def evaluate_official(pred: str | Path, gt: str | Path, convention: str, task: str) -> pd.DataFrame:
    """The official scorer's metrics, one row per region of the label set (in its order; `region` upper-case as
    bratsflow names it), columns as the official parser names them without their `_<group>` suffix."""
    import pandas as pd

    from .metrics import _prepare

    brats_evaluation, _ = _package()
    require_task(convention, task)
    _prepare(Path(pred), Path(gt), convention, None)  # bratsflow's checks: labels in the set, the same grid
    with tempfile.TemporaryDirectory() as tmp, _package_output():
        result = brats_evaluation.evaluate_single_exam(str(pred), str(gt), Path(pred).name, _evaluator(task))
        if "error" in result:
            raise InputError(f"the official scorer failed: {result['error']}", file=pred)
        summary, parsed = Path(tmp) / "summary.json", Path(tmp) / "parsed.csv"
        summary.write_text(json.dumps({"metrics": [result], "missings": []}))
        if task == "mets":
            brats_evaluation.parse_mets_results(str(summary), METS_VOLUME_THRESHOLD, METS_OVERLAP_THRESHOLD,
                                                str(parsed))
        else:
            brats_evaluation.parse_seg_results(str(summary), str(parsed))
        row = pd.read_csv(parsed).iloc[0]  # the case; the parser appends mean, std and median rows
    return _by_region(row, convention)


def _by_region(row: pd.Series, convention: str) -> pd.DataFrame:
    import pandas as pd

    regions = get_convention(convention).regions
    rows = []
    for region in regions:
        suffix = f"_{region.lower()}"
        # Group names hold no underscore, so the suffix names one group (`_tc` is not the end of `_netc`).
        rows.append({"region": region, **{key[:-len(suffix)]: float(value) for key, value in row.items()
                                          if key.endswith(suffix)}})
    return pd.DataFrame(rows)
