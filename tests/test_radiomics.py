"""Radiomics tables: layout, units, empty regions, agreement with pyradiomics run directly, the cohort tables."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from bratsflow import paths, synth
from bratsflow.cli import main
from bratsflow.errors import ConfigError, InputError
from bratsflow.io import label_image_like, save_image
from bratsflow.labels import SUMMARY_REGIONS
from bratsflow.radiomics import (COLUMNS, DEFAULT_PARAMS, EMPTY, NO_TUMOUR, cohort_tables, load_params,
                                 radiomics_image, radiomics_subject)

MODALITIES = ("t1", "t1c", "t2", "flair")


@pytest.fixture(scope="module")
def subject(tiny_cohort, tmp_path_factory) -> dict:
    """sub-001 of the tiny cohort in atlas space through its true transforms, skull-stripped with the true brain
    mask, and its true labels: what skull stripping and fusion hand to radiomics."""
    folder = tmp_path_factory.mktemp("radiomics_subject")
    truth = paths.TruthFiles(tiny_cohort, "sub-001")
    labels = nib.load(truth.labels)
    brain = np.asarray(nib.load(truth.brain_mask).dataobj) > 0
    files = {"segmentation": truth.labels, "brain_mask": truth.brain_mask}
    for modality, data in synth.resample_native_to_atlas(tiny_cohort, "sub-001").items():
        files[modality] = save_image(nib.Nifti1Image(np.where(brain, data, 0).astype(np.float32), labels.affine),
                                     folder / f"{modality}.nii.gz")
    return files


def _run(subject, out, segmentation=None, threads=1, **kwargs):
    return radiomics_subject({m: subject[m] for m in MODALITIES}, segmentation or subject["segmentation"], out,
                             brain_mask=subject["brain_mask"], params=load_params(), subject="sub-001",
                             threads=threads, **kwargs)


@pytest.fixture(scope="module")
def features(subject, tmp_path_factory):
    out = tmp_path_factory.mktemp("radiomics_out")
    return _run(subject, out, threads=2), out


def test_table_layout_units_and_record(subject, features):
    table, out = features
    assert tuple(table.columns) == COLUMNS
    assert list(pd.unique(table["region"])) == list(SUMMARY_REGIONS)
    labels = np.asarray(nib.load(subject["segmentation"]).dataobj)
    voxel_ml = 27 / 1000  # the tiny cohort's 3 mm grid
    volumes = table[table["feature_class"] == "volume"].set_index("region")
    assert volumes.loc["ET", "value"] == pytest.approx(np.count_nonzero(labels == 3) * voxel_ml)
    assert volumes.loc["WT", "value"] == pytest.approx(np.count_nonzero(labels) * voxel_ml)
    assert set(volumes["unit"]) == {"mL"} and volumes["modality"].isna().all()

    shape = table[table["feature_class"] == "shape"]
    assert shape["modality"].isna().all(), "shape features belong to the region, not to a modality"
    assert not shape.duplicated(["region", "feature"]).any()
    assert len(shape) == 5 * 14
    intensity = table[~table["feature_class"].isin(["shape", "volume"])]
    per_modality = intensity.groupby(["region", "modality"]).size()
    assert len(per_modality) == 5 * 4 and per_modality.nunique() == 1
    unit = table.set_index(["region", "modality", "feature_class", "feature"])["unit"]
    assert unit[("WT", "t1c", "firstorder", "Mean")] == "SD"
    assert unit[("WT", "t1c", "firstorder", "Variance")] == "SD^2"
    assert unit[("WT", "t1c", "glcm", "JointEntropy")] == "bits"
    assert table.loc[(table["region"] == "WT") & (table["feature"] == "MeshVolume"), "unit"].tolist() == ["mm3"]
    assert table["value"].notna().all() and table["reason"].isna().all()

    # pandas 2 reads the text columns back as objects (their Parquet type is string either way).
    pd.testing.assert_frame_equal(pd.read_parquet(out / "features.parquet").astype(table.dtypes.to_dict()), table)
    from_csv = pd.read_csv(out / "features.csv", keep_default_na=False, na_values=[""])
    np.testing.assert_allclose(from_csv["value"], table["value"], rtol=1e-12)

    record = json.loads((out / "radiomics.json").read_text())
    brain = np.asarray(nib.load(subject["brain_mask"]).dataobj) > 0
    t2 = np.asarray(nib.load(subject["t2"]).dataobj)
    assert record["normalisation"]["inside"] == "brain mask"
    assert record["normalisation"]["per_modality"]["t2"]["mean"] == pytest.approx(t2[brain].mean(), rel=1e-5)
    assert record["normalisation"]["per_modality"]["t2"]["sd"] == pytest.approx(t2[brain].std(ddof=1), rel=1e-5)
    assert record["inputs"]["segmentation"]["sha256"] and record["inputs"]["flair"]["sha256"]
    assert record["pyradiomics"]["Versions_PyRadiomics"].lstrip("v") == "3.0.1"
    assert len(record["diagnostics"]) == 5 * (1 + 4)
    assert all(d["Image-original_Hash"] for d in record["diagnostics"])
    assert record["environment"]["packages"]["pyradiomics"] == "3.0.1"


def test_worker_processes_give_the_same_numbers(subject, features, tmp_path):
    table, _ = features
    pd.testing.assert_frame_equal(_run(subject, tmp_path, threads=1), table)


def test_features_equal_pyradiomics_run_directly(subject, tmp_path):
    """Cropping, normalisation and the NIfTI→SimpleITK conversion change nothing: the one-image mode with LoG and
    wavelet images equals pyradiomics on the whole files with its own normalisation and pre-cropping."""
    import SimpleITK as sitk
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    params_file = tmp_path / "params.yaml"
    params = yaml.safe_load(DEFAULT_PARAMS.read_text())
    params["setting"]["sigma"] = [1.0, 3.0]
    params_file.write_text(yaml.safe_dump(params))
    table = radiomics_image(subject["t1c"], subject["segmentation"], tmp_path / "f.csv", label=2,
                            params=load_params(params_file, filters=["log", "wavelet"]))
    direct_params = {**params, "imageType": {"Original": {}, "LoG": {}, "Wavelet": {}}}
    direct_params["setting"] = {**params["setting"], "preCrop": True}
    direct = RadiomicsFeatureExtractor(direct_params).execute(sitk.ReadImage(str(subject["t1c"])),
                                                              sitk.ReadImage(str(subject["segmentation"])), label=2)
    ours = table[table["feature_class"] != "volume"]
    assert set(pd.unique(ours["image_type"])) >= {"original", "log-sigma-3-0-mm-3D", "wavelet-HLH"}
    assert len(ours) == sum(not key.startswith("diagnostics_") for key in direct)
    for row in ours.itertuples():
        expected = float(direct[f"{row.image_type}_{row.feature_class}_{row.feature}"])
        assert row.value == pytest.approx(expected, rel=1e-6, abs=1e-9), (row.image_type, row.feature)


def test_an_empty_region_gives_nan_rows_with_a_reason(subject, tmp_path):
    seg = nib.load(subject["segmentation"])
    labels = np.asarray(seg.dataobj).copy()
    labels[labels == 3] = 1  # enhancing tumour called necrosis: no ET
    no_et = save_image(label_image_like(labels, seg), tmp_path / "no_et.nii.gz")
    table = _run(subject, tmp_path / "out", segmentation=no_et)
    et = table[table["region"] == "ET"]
    assert et["reason"].eq(EMPTY).all()
    assert et.loc[et["feature_class"] == "volume", "value"].tolist() == [0.0]
    assert et.loc[et["feature_class"] != "volume", "value"].isna().all()
    rows = ["modality", "image_type", "feature_class", "feature"]
    pd.testing.assert_frame_equal(et[rows].reset_index(drop=True),
                                  table.loc[table["region"] == "NETC", rows].reset_index(drop=True))
    for region in ("WT", "TC", "NETC", "SNFH"):
        assert table.loc[table["region"] == region, "value"].notna().all(), region


def test_a_subject_without_tumour_is_reported_as_such(subject, tmp_path):
    seg = nib.load(subject["segmentation"])
    empty = save_image(label_image_like(np.zeros(seg.shape, np.uint8), seg), tmp_path / "empty.nii.gz")
    table = _run(subject, tmp_path / "out", segmentation=empty)
    assert table["reason"].eq(NO_TUMOUR).all()
    assert (table.loc[table["feature_class"] == "volume", "value"] == 0).all()
    assert table.loc[table["feature_class"] != "volume", "value"].isna().all()
    record = json.loads((tmp_path / "out" / "radiomics.json").read_text())
    assert record["tumour"] is False and record["diagnostics"] == []


def test_a_single_voxel_region_is_too_small(subject, tmp_path):
    seg = nib.load(subject["segmentation"])
    labels = np.asarray(seg.dataobj).copy()
    labels[labels == 3] = 1
    labels[tuple(np.argwhere(labels == 1)[0])] = 3
    table = _run(subject, tmp_path / "out", segmentation=save_image(label_image_like(labels, seg),
                                                                    tmp_path / "tiny_et.nii.gz"))
    et = table[table["region"] == "ET"]
    assert et["reason"].str.startswith("region too small for pyradiomics (1 voxel spanning 0").all()
    assert et.loc[et["feature_class"] == "volume", "value"].tolist() == [pytest.approx(0.027)]


def test_bad_inputs_are_refused_with_the_file_named(subject, tmp_path):
    seg = nib.load(subject["segmentation"])
    labels = np.asarray(seg.dataobj).copy()
    labels[labels == 3] = 4
    old_labels = save_image(label_image_like(labels, seg), tmp_path / "brats2021.nii.gz")
    with pytest.raises(InputError, match=r"label values \[4\] are not part of convention brats2023") as err:
        _run(subject, tmp_path / "out", segmentation=old_labels)
    assert str(old_labels) in str(err.value)
    assert not (tmp_path / "out").exists()
    table = _run(subject, tmp_path / "out2021", segmentation=old_labels, convention="brats2021")
    assert table.loc[table["region"] == "ET", "value"].notna().all()

    affine = seg.affine.copy()
    affine[:3, 3] += 3.0
    shifted = save_image(nib.Nifti1Image(np.asarray(nib.load(subject["t1"]).dataobj), affine),
                         tmp_path / "t1_shifted.nii.gz")
    with pytest.raises(InputError, match="not on the grid of the segmentation") as err:
        radiomics_subject({"t1": shifted}, subject["segmentation"], tmp_path / "o", brain_mask=None,
                          params=load_params())
    assert str(shifted) in str(err.value)

    bad = tmp_path / "bad.yaml"
    bad.write_text("setting:\n  binWidth: -1\nfeatureClass:\n  glcm:\n")
    with pytest.raises(ConfigError, match="not a valid pyradiomics parameter file"):
        load_params(bad)
    bad.write_text("setting:\n  binWidth: 1\nfeatureClass:\n  firstorder:\n")
    with pytest.raises(ConfigError, match="sets no `sigma`"):
        load_params(bad, filters=["log"])
    with pytest.raises(ConfigError, match="unknown radiomics filter"):
        load_params(bad, filters=["gabor"])


def test_cohort_tables_load_with_one_call(subject, features, tmp_path):
    _, out = features
    seg = nib.load(subject["segmentation"])
    empty = save_image(label_image_like(np.zeros(seg.shape, np.uint8), seg), tmp_path / "empty.nii.gz")
    radiomics_subject({m: subject[m] for m in MODALITIES}, empty, tmp_path / "s2", brain_mask=subject["brain_mask"],
                      params=load_params(), subject="sub-002")
    tables = [out / "features.parquet", tmp_path / "s2" / "features.parquet"]
    long = cohort_tables(tables, tmp_path / "cohort" / "features.parquet", tmp_path / "cohort" / "features_wide.csv")
    assert len(long) == 2 * len(pd.read_parquet(tables[0]))
    stored = pd.read_parquet(tmp_path / "cohort" / "features.parquet")
    pd.testing.assert_frame_equal(stored.astype(long.dtypes.to_dict()), long)

    wide = pd.read_csv(tmp_path / "cohort" / "features_wide.csv")
    assert wide["subject"].tolist() == ["sub-001", "sub-002"]
    assert wide["tumour"].tolist() == [True, False]
    assert wide.loc[1, "ET_reason"] == NO_TUMOUR and pd.isna(wide.loc[0, "ET_reason"])
    first = pd.read_parquet(tables[0]).set_index(["region", "modality", "feature_class", "feature"])["value"]
    assert wide.loc[0, "ET_t1c_original_glcm_Contrast"] == pytest.approx(first[("ET", "t1c", "glcm", "Contrast")])
    assert wide.loc[0, "WT_original_shape_Sphericity"] > 0 and wide.loc[1, "WT_volume_ml"] == 0
    assert np.isnan(wide.loc[1, "ET_t1c_original_glcm_Contrast"])
    assert wide.shape[1] == 1 + 1 + 5 + len(long) // 2  # subject, tumour, reasons, one column per feature

    with pytest.raises(InputError, match=r"subject\(s\) \['sub-001'\] appear in more than one"):
        cohort_tables([tables[0], tables[0]], tmp_path / "x.parquet", tmp_path / "x.csv")


def test_command_line_one_image_mode(subject, tmp_path, capsys):
    out = tmp_path / "features.csv"
    assert main(["radiomics", "--image", str(subject["flair"]), "--mask", str(subject["segmentation"]),
                 "--label", "2", "--brain-mask", str(subject["brain_mask"]), "--modality", "flair",
                 "--out", str(out), "--record", str(tmp_path / "r.json")]) == 0
    table = pd.read_csv(out)
    assert set(table["region"]) == {"label2"} and set(table["modality"].dropna()) == {"flair"}
    assert json.loads((tmp_path / "r.json").read_text())["normalisation"]["inside"] == "brain mask"

    assert main(["radiomics", "--image", str(subject["flair"]), "--mask", str(subject["segmentation"]),
                 "--t1", str(subject["t1"]), "--out", str(out)]) == 2
    assert "does not combine with --t1" in capsys.readouterr().err
    assert main(["radiomics", "--t1", str(subject["t1"]), "--out", str(tmp_path)]) == 2
    assert "give --segmentation" in capsys.readouterr().err


def test_a_post_treatment_map_gets_its_cavity_as_a_region(subject, tmp_path):
    """brats-gli-post: the resection cavity (4) is a region of its own, outside WT; a map with only a cavity is
    not "no tumour"."""
    labels = nib.load(subject["segmentation"])
    data = np.asarray(labels.dataobj).astype(np.uint8)
    cavity = np.zeros_like(data)
    brain = np.argwhere(np.asarray(nib.load(subject["brain_mask"]).dataobj) > 0)
    centre = brain[len(brain) // 2]
    cavity[tuple(slice(c - 2, c + 2) for c in centre)] = 4
    cavity[data > 0] = 0
    only_cavity = save_image(label_image_like(cavity, labels), tmp_path / "cavity.nii.gz")
    table = _run(subject, tmp_path / "out", segmentation=only_cavity, threads=2, convention="brats-gli-post")
    assert list(pd.unique(table["region"])) == ["WT", "TC", "ET", "NETC", "SNFH", "RC"]
    volumes = table[table["feature_class"] == "volume"].set_index("region")["value"]
    assert volumes["RC"] == pytest.approx(np.count_nonzero(cavity) * 27 / 1000) and volumes["WT"] == 0
    rc = table[(table["region"] == "RC") & (table["feature_class"] != "volume")]
    assert rc["value"].notna().all() and rc["reason"].isna().all()
    assert (table[table["region"] == "WT"]["reason"].dropna() != NO_TUMOUR).all()
