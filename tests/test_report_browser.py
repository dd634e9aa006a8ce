"""The cohort HTML report in a real browser: Debian's chromium, headless, driven by Selenium through Debian's
chromedriver (never a downloaded browser). Loads the pages from file:// as a user opens a copied results folder,
sorts and filters the subject table, follows a subject's link and checks that every image on its page decoded.

Without chromium the test skips, except in CI (CI set), where it fails: `.ci/run` installs chromium and
chromium-driver with apt."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bratsflow import paths
from bratsflow.cohort_report import build
from report_helpers import write_cohort_tables, write_subject

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless as root without a sandbox or GPU; no background networking, updates or sync, which on a closed network
# only produce refused connections.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1000")
# subject -> whole tumour cube size (voxels a side) and whether the members disagree.
COHORT = {"sub-001": (6, False), "sub-002": (3, True), "sub-003": (8, False), "sub-004": (5, False),
          "sub-005": (2, False)}


def _require(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI needs the browser test: {reason} (.ci/run installs chromium and chromium-driver)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        _require(f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
    except ImportError:
        _require("selenium is not installed (the test extra)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("browser") / "results"
    for subject, (size, disagree) in COHORT.items():
        write_subject(results, subject, size, disagree=disagree, figures=("overview", "brain_mask", "members"))
    write_cohort_tables(results, list(COHORT))
    build(results)
    return results


def _rows(driver) -> list[dict]:
    """The table's rows in display order: subject, WT volume, shown or hidden."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#subjects tbody tr')).map(r => ({"
        "subject: r.dataset.subject, wt: parseFloat(r.cells[1].dataset.value), shown: !r.hidden}));")


def _broken_images(driver) -> list[str]:
    """The page's images that did not load and decode (a missing or corrupt file has no natural width). Waits for
    each image's decoding to settle: `complete` alone can be read before the browser has decoded the file."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const images = Array.from(document.images);"
        "Promise.allSettled(images.map(i => i.decode())).then(() => done("
        "images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'))));")


def _header(driver, text: str):
    from selenium.webdriver.common.by import By

    return next(th for th in driver.find_elements(By.CSS_SELECTOR, "#subjects thead th") if th.text.startswith(text))


def test_the_cohort_report_works_in_chromium(browser, results, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(paths.report_index(results).as_uri())
    assert browser.title == "bratsflow cohort report"
    rows = _rows(browser)
    assert sorted(r["subject"] for r in rows) == sorted(COHORT) and all(r["shown"] for r in rows)
    assert _broken_images(browser) == []  # the cohort plots

    _header(browser, "WT (mL)").click()
    volumes = [r["wt"] for r in _rows(browser)]
    assert volumes == sorted(volumes) and len(set(volumes)) == len(COHORT)
    assert [r["subject"] for r in _rows(browser)] == sorted(COHORT, key=lambda s: COHORT[s][0])
    _header(browser, "WT (mL)").click()
    assert [r["wt"] for r in _rows(browser)] == sorted(volumes, reverse=True)

    search = browser.find_element(By.ID, "filter")
    search.send_keys("sub-00")
    assert sum(r["shown"] for r in _rows(browser)) == len(COHORT)
    search.send_keys("3")
    assert [r["subject"] for r in _rows(browser) if r["shown"]] == ["sub-003"]
    assert browser.find_element(By.ID, "count").text == f"1 of {len(COHORT)} shown"
    search.clear()
    search.send_keys("low_agreement")  # flags are searchable too
    assert [r["subject"] for r in _rows(browser) if r["shown"]] == ["sub-002"]
    search.clear()
    browser.find_element(By.ID, "flagged").click()
    # Whole tumours under 1 mL (2³ mL voxels: cubes of 3 and 2 voxels) are flagged tiny.
    assert sorted(r["subject"] for r in _rows(browser) if r["shown"]) == ["sub-002", "sub-005"]
    browser.save_screenshot(str(tmp_path / "index.png"))

    browser.find_element(By.LINK_TEXT, "sub-002").click()
    assert browser.current_url == paths.report_page(results, "sub-002").as_uri()
    assert browser.find_element(By.TAG_NAME, "h1").text == "sub-002"
    assert len(browser.find_elements(By.CSS_SELECTOR, ".figures img")) == 3
    assert _broken_images(browser) == []
    assert "low_agreement" in browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(tmp_path / "subject.png"))
    assert (tmp_path / "index.png").stat().st_size > 0 and (tmp_path / "subject.png").stat().st_size > 0


def test_a_broken_figure_is_caught(browser, results, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    (paths.step_dir(copy, "sub-001", "report") / "brain_mask.png").write_bytes(b"not a PNG")
    (paths.step_dir(copy, "sub-001", "report") / "members.png").unlink()
    browser.get(paths.report_page(copy, "sub-001").as_uri())
    assert sorted(_broken_images(browser)) == ["../../sub-001/report/brain_mask.png",
                                               "../../sub-001/report/members.png"]
