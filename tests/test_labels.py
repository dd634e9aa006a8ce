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
