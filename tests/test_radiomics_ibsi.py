"""IBSI 1 digital phantom: every feature pyradiomics computes through bratsflow, against the IBSI consensus values.

The phantom (IBSI reference manual, "Digital phantom"): 5 × 4 × 4 (x, y, z) voxels of 2 × 2 × 2 mm; grey levels
1–6 (2 and 5 absent); several voxels at the outside and one inside excluded from the ROI. It needs no
discretisation (a bin width of 1 keeps it as it is). tests/data/ibsi1_digital_phantom.csv lists, per pyradiomics
feature, the consensus value and tolerance and whether pyradiomics follows IBSI (compliant), deviates in a
documented way (deviation: the relation that maps pyradiomics onto IBSI) or has no IBSI counterpart.
"""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from bratsflow.io import label_image, save_image
from bratsflow.radiomics import load_params, radiomics_image

REFERENCE = Path(__file__).parent / "data" / "ibsi1_digital_phantom.csv"
README = Path(__file__).resolve().parents[1] / "README.md"

# Slices z = 1..4, rows y = 1..4, columns x = 1..5 as drawn in the manual; None: outside the ROI.
PHANTOM = [
    [[1, 4, 4, 1, 1], [1, 4, 6, 1, 1], [4, 1, 6, 4, 1], [4, 4, 6, 4, 1]],
    [[1, 4, 4, 1, 1], [1, 1, 6, 1, 1], [None, 1, 3, 1, 1], [4, 4, 6, 1, 1]],
    [[1, 4, 4, None, None], [1, 1, 1, 1, 1], [1, 1, None, 1, 1], [1, 1, 6, 1, 1]],
    [[1, 4, 4, None, None], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 6, 1, 1]],
]
IBSI_PARAMS = {
    "imageType": {"Original": {}},
    "featureClass": {name: None for name in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")},
    "setting": {"binWidth": 1, "voxelArrayShift": 0},
}


def phantom_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(image, ROI mask) in nibabel's (x, y, z) order; voxels outside the ROI hold 0."""
    grid = np.array([[[np.nan if v is None else v for v in row] for row in plane] for plane in PHANTOM])
    grid = grid.transpose(2, 1, 0)  # (z, y, x) -> (x, y, z)
    return np.nan_to_num(grid, nan=0.0), ~np.isnan(grid)


def tolerance(reference: float, given: float) -> float:
    """The manual's tolerance, or half a unit in the third significant digit when it gives none."""
    if not math.isnan(given):
        return given
    if reference == 0:
        return 5e-4
    return 0.5 * 10 ** (math.floor(math.log10(abs(reference))) - 2)


def matches(value: float, reference: float, tol: float) -> bool:
    return abs(value - reference) <= tol * (1 + 1e-9)


def to_ibsi(relation: str, value: float, voxels: int) -> float:
    """A pyradiomics value mapped onto the IBSI definition by a documented deviation."""
    if relation == "excess_kurtosis":
        return value - 3.0
    if relation == "sample_covariance":
        return value * math.sqrt(voxels / (voxels - 1))
    raise ValueError(f"unknown relation {relation!r}")


@pytest.fixture(scope="module")
def phantom_features(tmp_path_factory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("ibsi")
    image, roi = phantom_arrays()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    save_image(nib.Nifti1Image(image.astype(np.int16), affine), folder / "phantom.nii.gz")
    save_image(label_image(roi, affine), folder / "mask.nii.gz")
    (folder / "ibsi.yaml").write_text(yaml.safe_dump(IBSI_PARAMS))
    table = radiomics_image(folder / "phantom.nii.gz", folder / "mask.nii.gz", folder / "features.csv",
                            params=load_params(folder / "ibsi.yaml"), label=1)
    return table[table["feature_class"] != "volume"]


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return pd.read_csv(REFERENCE, comment="#", dtype={"ibsi_id": str})


def test_the_phantom_is_the_manuals():
    image, roi = phantom_arrays()
    assert image.shape == (5, 4, 4) and roi.sum() == 74
    assert sorted(np.unique(image[roi]).tolist()) == [1, 3, 4, 6]


def test_every_pyradiomics_feature_is_classified(phantom_features, reference):
    computed = set(zip(phantom_features["feature_class"], phantom_features["feature"]))
    listed = set(zip(reference["feature_class"], reference["feature"]))
    assert computed == listed, f"unlisted: {sorted(computed - listed)}; not computed: {sorted(listed - computed)}"
    assert set(reference["status"]) == {"compliant", "deviation", "not_in_ibsi"}


def test_compliant_features_match_the_ibsi_consensus(phantom_features, reference):
    values = phantom_features.set_index(["feature_class", "feature"])["value"]
    off = []
    for ref in reference[reference["status"] == "compliant"].itertuples():
        value = values[(ref.feature_class, ref.feature)]
        if not matches(value, ref.value, tolerance(ref.value, ref.tolerance)):
            off.append(f"{ref.feature_class}.{ref.feature} ({ref.ibsi_id} {ref.ibsi_name}): {value:.6g}, "
                       f"IBSI {ref.value:g} ± {tolerance(ref.value, ref.tolerance):g}")
    assert not off, "drifted from the IBSI consensus:\n" + "\n".join(off)


def test_documented_deviations_hold(phantom_features, reference):
    values = phantom_features.set_index(["feature_class", "feature"])["value"]
    voxels = int(phantom_arrays()[1].sum())
    for ref in reference[reference["status"] == "deviation"].itertuples():
        value = values[(ref.feature_class, ref.feature)]
        mapped = to_ibsi(ref.relation, value, voxels)
        assert matches(mapped, ref.value, tolerance(ref.value, ref.tolerance)), \
            f"{ref.feature}: {value:.6g} -> {mapped:.6g} via {ref.relation}, IBSI {ref.value:g}"
    for ref in reference[reference["status"] == "not_in_ibsi"].itertuples():
        assert np.isfinite(values[(ref.feature_class, ref.feature)]), ref.feature


def test_the_comparison_catches_a_drift(reference):
    ref = reference.set_index("feature").loc["JointEntropy"]
    tol = tolerance(ref.value, ref.tolerance)
    assert matches(ref.value + 0.9 * tol, ref.value, tol)
    assert not matches(ref.value + 1.5 * tol, ref.value, tol)
    assert not matches(to_ibsi("excess_kurtosis", -0.355, 74), -0.355, tolerance(-0.355, float("nan")))


def test_readme_lists_every_deviation_and_pyradiomics_only_feature(reference):
    section = README.read_text().split("### IBSI compliance", 1)[1].split("\n## ", 1)[0]
    for ref in reference[reference["status"] != "compliant"].itertuples():
        assert f"`{ref.feature}`" in section, f"README's IBSI section does not mention {ref.feature}"
