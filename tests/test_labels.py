import numpy as np
import pytest

from bratsflow.errors import InputError
from bratsflow.labels import check_labels, convert, get_convention, region_mask


def test_conventions_differ_only_in_enhancing_label():
    assert get_convention("brats2023").labels == {"NETC": 1, "SNFH": 2, "ET": 3}
    assert get_convention("brats2021").labels == {"NETC": 1, "SNFH": 2, "ET": 4}


@pytest.mark.parametrize("convention, et", [("brats2023", 3), ("brats2021", 4)])
def test_regions_are_nested(convention, et):
    labels = np.array([0, 1, 2, et])
    assert region_mask(labels, "WT", convention).tolist() == [False, True, True, True]
    assert region_mask(labels, "TC", convention).tolist() == [False, True, False, True]
    assert region_mask(labels, "ET", convention).tolist() == [False, False, False, True]


def test_convert_round_trip():
    labels = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    old = convert(labels, "brats2023", "brats2021")
    assert old.tolist() == [[0, 1], [2, 4]]
    assert convert(old, "brats2021", "brats2023").tolist() == labels.tolist()


def test_label_outside_convention_is_an_error():
    with pytest.raises(InputError, match=r"\[4\].*brats2023"):
        check_labels(np.array([0, 1, 4]), "brats2023", subject="s1")


def test_unknown_convention():
    with pytest.raises(InputError, match="unknown label convention"):
        get_convention("brats2019")


@pytest.mark.parametrize("convention", ["brats2023", "brats2021"])
def test_depths_order_sub_regions_from_the_outside_in(convention):
    from bratsflow.labels import NESTING, REGION_DEPTH, from_depth, to_depth

    assert NESTING == ("SNFH", "NETC", "ET") and REGION_DEPTH == {"WT": 1, "TC": 2, "ET": 3}
    values = get_convention(convention).labels
    labels = np.array([0, values["SNFH"], values["NETC"], values["ET"]], dtype=np.int16)
    depth = to_depth(labels, convention)
    assert depth.tolist() == [0, 1, 2, 3] and depth.dtype == np.uint8
    assert from_depth(depth, convention).tolist() == labels.tolist()
    for region, d in REGION_DEPTH.items():
        assert (depth >= d).tolist() == region_mask(labels, region, convention).tolist()
    with pytest.raises(InputError, match="not part of convention"):
        to_depth(np.array([0, 7]), convention)
    with pytest.raises(InputError, match="non-integer"):
        to_depth(np.array([0.0, 1.5]), convention)


# The official BraTS evaluation configs' groups (BraTS/BraTS_evaluation, configs/config_*.yaml), written out here
# as they stand there, so the table is checked against its source and not against itself.
OFFICIAL_GROUPS = {
    "brats-gli-post": {"snfh": [2], "et": [3], "netc": [1], "rc": [4], "tc": [1, 3], "wt": [1, 2, 3]},
    "brats-met": {"et": [3], "rc": [4], "tc": [1, 3], "wt": [1, 2, 3]},
    "brats-ped": {"et": [1], "netc": [2], "cc": [3], "ed": [4], "tc": [1, 2, 3], "wt": [1, 2, 3, 4]},
    "brats-men": {"et": [3], "tc": [1, 3], "wt": [1, 2, 3]},
    "brats-ssa": {"et": [3], "tc": [1, 3], "wt": [1, 2, 3]},
    "brats-men-rt": {"gtv": [1]},
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_GROUPS))
def test_task_label_sets_score_the_official_regions(name):
    label_set = get_convention(name)
    scored = {region.lower(): sorted(label_set.region_labels(region)) for region in label_set.regions}
    assert scored == OFFICIAL_GROUPS[name]


def test_nested_sets_are_the_ones_the_steps_handle():
    from bratsflow.errors import ConfigError
    from bratsflow.labels import CONVENTIONS, nested_convention, to_depth

    assert [s.name for s in CONVENTIONS.values() if s.nested] == ["brats2023", "brats2021", "brats-men", "brats-ssa"]
    # The resection cavity lies outside the whole tumour: depths would call it tumour, so the steps refuse it.
    with pytest.raises(ConfigError, match=r"brats-gli-post .*4 RC.* is not nested .*\(brats2023, brats2021"):
        to_depth(np.array([0, 4], np.uint8), "brats-gli-post")
    with pytest.raises(ConfigError, match="brats-ped"):
        nested_convention("brats-ped")


def test_maps_move_between_sets_only_when_exact():
    from bratsflow.errors import ConfigError
    from bratsflow.labels import require_exact_mapping

    labels = np.array([0, 1, 2, 3], np.uint8)
    assert convert(labels, "brats-men", "brats2023").tolist() == labels.tolist()
    assert convert(labels, "brats-ssa", "brats2021").tolist() == [0, 1, 2, 4]
    # A pre-treatment member in a post-treatment ensemble could never vote for the cavity; a paediatric one's 1 is
    # enhancing tumour, not necrosis.
    with pytest.raises(ConfigError, match="member pre writes label set brats2023 .* no exact mapping .*brats-gli-post"):
        require_exact_mapping("brats2023", "brats-gli-post", member="pre")
    with pytest.raises(ConfigError, match="brats-ped .*1 ET, 2 NETC, 3 CC, 4 ED"):
        convert(labels, "brats-ped", "brats2023")


def test_schema_offers_every_label_set():
    from pathlib import Path

    import yaml

    from bratsflow.labels import CONVENTIONS

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow" / "schemas" /
                             "config.schema.yaml").read_text())
    member = schema["properties"]["segment"]["properties"]["members"]["items"]["properties"]["labels"]
    assert schema["properties"]["convention"]["enum"] == list(CONVENTIONS) == member["enum"]
