"""The cohort's HTML report: escaping, relative links, figure order, deterministic bytes, the CLI."""

from __future__ import annotations

import re
import shutil
from html import escape
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote

import pytest

from bratsflow import paths
from bratsflow.cli import main
from bratsflow.cohort_report import FIGURE_CAPTIONS, build, figure_order, probability_html
from report_helpers import write_cohort_tables, write_subject

ODD = "sub-<b>&'x\""


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("cohort_report") / "results"
    write_subject(results, "sub-001", 6, provenance=True)
    write_subject(results, "sub-002", 4, disagree=True)
    write_subject(results, ODD, 2, enhancing=False, figures=("zz_extra", "overview", "brain_mask"))
    write_cohort_tables(results, ["sub-001", "sub-002", ODD])
    build(results)
    return results


def _links(page: Path) -> list[str]:
    return re.findall(r'(?:src|href)="([^"#]+)"', page.read_text())


def test_every_link_and_image_is_relative_and_exists(results):
    pages = [paths.report_index(results), *(paths.report_page(results, s) for s in ("sub-001", "sub-002", ODD))]
    for page in pages:
        links = _links(page)
        assert links
        for link in links:
            assert "://" not in link and not link.startswith("/"), link
            target = (page.parent / unquote(link.replace("&amp;", "&"))).resolve()
            assert target.is_file(), f"{page.name}: {link}"
    assert '"../../sub-001/report/overview.png"' in paths.report_page(results, "sub-001").read_text()


def test_data_is_escaped(results):
    index = paths.report_index(results).read_text()
    page = paths.report_page(results, ODD).read_text()
    for text in (index, page):
        assert ODD not in text and "<b>" not in text
        assert "sub-&lt;b&gt;&amp;&#x27;x&quot;" in text
    assert str(results.parent) not in index + page  # no absolute paths


def test_figures_in_the_preferred_order_with_captions(results):
    page = paths.report_page(results, ODD).read_text()
    shown = re.findall(r'<img src="[^"]*/([a-z_]+)\.png"', page)
    assert shown == ["overview", "brain_mask", "zz_extra"]
    assert f"<figcaption>{escape(FIGURE_CAPTIONS['brain_mask'])}</figcaption>" in page
    assert "<figcaption>zz_extra.png</figcaption>" in page
    assert [p.name for p in figure_order([Path("b.png"), Path("members.png"), Path("a.png"), Path("overview.png")])
            ] == ["overview.png", "members.png", "a.png", "b.png"]


def test_flags_thresholds_agreement_and_provenance_are_shown(results):
    flagged = paths.report_page(results, "sub-002").read_text()
    assert "low_agreement" in flagged and "report.min_agreement" in flagged and "0.481" in flagged
    index = paths.report_index(results).read_text()
    assert index.count("<tr data-subject=") == 3 and 'href="../cohort/qc.tsv"' in index
    assert 'data-flags="tiny_segmentation low_agreement"' in index
    gathered = paths.report_page(results, "sub-001").read_text()
    assert "Container images" in gathered and "bratsflow-fuse:0.1.0" in gathered and "numpy" in gathered
    assert "No provenance.json yet" in flagged


def test_the_ground_truth_metrics_where_a_subject_has_a_truth(results, tmp_path):
    assert "(truth)" not in paths.report_index(results).read_text()
    assert "Against the ground truth" not in paths.report_page(results, "sub-001").read_text()
    scored = tmp_path / "results"
    write_subject(scored, "sub-001", 6, disagree=True, truth=True)
    write_subject(scored, "sub-002", 4)
    write_cohort_tables(scored, ["sub-001", "sub-002"])
    build(scored)
    page = paths.report_page(scored, "sub-001").read_text()
    table = page[page.index("Against the ground truth"):]
    assert "<th>HD95 (mm)</th>" in table
    assert "<td>fused</td><td>WT</td><td>1.000</td><td>0.000</td>" in table
    assert table.count("<td>c</td>") == 3 and "<td>c</td><td>WT</td><td>1.000</td>" not in table
    assert "Against the ground truth" not in paths.report_page(scored, "sub-002").read_text()
    index = paths.report_index(scored).read_text()
    assert '<th data-type="number">WT Dice (truth)</th>' in index
    assert '<td data-value="1.0">1.000</td>' in index and '<td data-value="">–</td>' in index


def test_the_mean_probability_uncertainty_where_members_write_probabilities(results, tmp_path):
    assert "Uncertainty of the mean probability" not in paths.report_page(results, "sub-001").read_text()
    with_probabilities = tmp_path / "results"
    write_subject(with_probabilities, "sub-001", 6, probabilities=True)
    write_cohort_tables(with_probabilities, ["sub-001"])
    build(with_probabilities)
    page = paths.report_page(with_probabilities, "sub-001").read_text()
    section = page[page.index("Uncertainty of the mean probability"):]
    assert "over a (report/probability_entropy.nii.gz" in section and "Without probabilities: b, c." in section
    assert "<td>WT</td><td>1.728</td>" in section  # the 6³ tumour of 8 µL voxels
    skipped = {"members": [], "without_probabilities": ["c"], "uncertain_bits": 0.5, "uncertain_ml": None}
    assert "No member that ran on this subject writes probabilities: the map is unknown (NaN)" in \
        probability_html(skipped)


def test_the_report_moves_with_the_results_and_rebuilds_bit_for_bit(results, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(results, moved)
    shutil.rmtree(moved / paths.REPORT_SITE)
    assert main(["report-html", str(moved)]) == 0
    original = sorted(p.relative_to(results) for p in (results / paths.REPORT_SITE).rglob("*") if p.is_file())
    again = sorted(p.relative_to(moved) for p in (moved / paths.REPORT_SITE).rglob("*") if p.is_file())
    assert original == again and len(original) == 2 + 1 + 3  # two plots, the index, three subject pages
    for relative in original:
        assert (results / relative).read_bytes() == (moved / relative).read_bytes(), relative


def test_a_subject_without_a_report_record_is_a_user_error(results, capsys):
    assert main(["report-html", str(results), "--subjects", "sub-001", "sub-404"]) == 2
    error = capsys.readouterr().err
    assert "sub-404" in error and "run the report step first" in error


def test_radiomics_plot_when_the_cohort_table_exists(results, tmp_path):
    copy = tmp_path / "with_features"
    shutil.copytree(results, copy)
    wide = paths.cohort_features(copy, wide=True)
    wide.parent.mkdir(parents=True, exist_ok=True)
    wide.write_text("subject,tumour,WT_original_shape_Sphericity,ET_t1c_original_firstorder_Mean\n"
                    "sub-001,True,0.6,1.2\nsub-002,True,0.7,\n")
    written = build(copy, ["sub-001", "sub-002"])
    assert [p for p in written if p.suffix == ".png"] == [paths.report_plot(copy, n) for n in paths.REPORT_PLOTS]
    index = paths.report_index(copy).read_text()
    assert 'src="radiomics.png"' in index and index.count("<tr data-subject=") == 2


def test_headline_features_fall_back_to_the_tables_first_features():
    import pandas as pd

    from bratsflow.cohort_report import headline_features

    known = pd.DataFrame({"subject": ["a", "b"], "tumour": [True, True], "WT_original_shape_Sphericity": [0.5, 0.6]})
    assert headline_features(known) == {"WT sphericity": {"": [0.5, 0.6]}}
    other = pd.DataFrame({"subject": ["a"], "tumour": [True], "WT_t2_log_glcm_Contrast": [3.0]})
    assert headline_features(other) == {"WT_t2_log_glcm_Contrast": {"": [3.0]}}
    assert headline_features(other[["subject"]]) == {"no radiomic features": {}}


def test_provenance_shows_files_by_name_only(results):
    from bratsflow.cohort_report import load_subject, subject_page

    subject = load_subject(results, "sub-001")
    record = {**subject.record, "parameters": {"params": {"file": "/site/config/radiomics.yaml", "sha256": "ab"},
                                               "atlas": "/data/atlases/sri24.nii.gz", "inputs": "auto"}}
    provenance = {**subject.provenance,
                  "inputs": {"t1": {"path": "/data/P001/t1.nii.gz", "format": "nifti", "sha256": "c0ffee"}},
                  "models": {"m1": {"model": "/models/m1", "checkpoints": {"0": "beef"}}},
                  "atlases": {"mni152": {"source": "/opt/nilearn/mni.nii.gz", "sha256": "f00d"}},
                  "steps": {"coregister/coregister": record}}
    page = subject_page(replace(subject, provenance=provenance), paths.report_page(results, subject.id),
                        paths.report_index(results))
    for shown in ("t1.nii.gz", "c0ffee", "m1", "beef", "mni.nii.gz", "f00d", "radiomics.yaml", "sri24.nii.gz"):
        assert shown in page
    for folder in ("/data/", "/models/", "/opt/", "/site/"):
        assert folder not in page
