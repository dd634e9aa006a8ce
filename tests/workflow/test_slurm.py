"""The SLURM profile on a real SLURM cluster: the single-node one that .ci/slurm/start runs on this machine.

Skipped where no such cluster answers, unless BRATSFLOW_REQUIRE_SLURM=1 (set by .ci/run), which turns a missing
cluster into a failure so that CI cannot skip it silently.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from bratsflow import paths
from workflow_helpers import snakemake, tiny_ensemble, write_config

pytestmark = pytest.mark.workflow
TEST_CLUSTER = "bratsflow"  # the ClusterName that .ci/slurm/start writes
MODALITIES = ("t1", "t1c", "t2", "flair")


def _cluster_problem() -> str | None:
    """Why the single-node test cluster cannot take jobs, or None when it can."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')"
    missing = [tool for tool in ("sbatch", "sacct", "scontrol") if shutil.which(tool) is None]
    if missing:
        return f"no SLURM commands ({', '.join(missing)}); start a test cluster with .ci/slurm/start"

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    config = run("scontrol", "show", "config")
    if config.returncode != 0:
        return f"slurmctld does not answer: {config.stderr.strip()}"
    cluster = re.search(r"^ClusterName\s*=\s*(\S+)", config.stdout, re.MULTILINE)
    # A real site cluster is never used: its nodes would not see this machine's temporary folders.
    if not cluster or cluster.group(1) != TEST_CLUSTER:
        return f"the SLURM cluster here is not the single-node test cluster '{TEST_CLUSTER}' (.ci/slurm/start)"
    if run("sacct", "-n", "-X", "-S", "now").returncode != 0:
        return "sacct fails (no slurmdbd): the executor plugin would wait forever"
    return None


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    problem = _cluster_problem()
    if problem and os.environ.get("BRATSFLOW_REQUIRE_SLURM") == "1":
        pytest.fail(f"BRATSFLOW_REQUIRE_SLURM=1 but {problem}")
    if problem:
        pytest.skip(problem)


def _sheet(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("\n".join("\t".join(row) for row in [["subject_id", *MODALITIES], *rows]) + "\n")
    return path


def _image_digests(results: Path, subject: str) -> dict[str, str]:
    """SHA-256 of every image and transform of a subject (records hold timings and paths, so they differ)."""
    files = [p for p in (results / subject).rglob("*") if p.suffix == ".mat" or p.name.endswith(".nii.gz")]
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _slurm_jobs(run_id: str, since: datetime, logdir: Path) -> list[tuple[str, set[str]]]:
    """(state, Snakemake target jobs such as 'coregister:subject=sub-001') of every SLURM job of a run."""
    sacct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--name", run_id, "-S", f"{since:%Y-%m-%dT%H:%M:%S}", "-o", "JobIDRaw,State"],
        capture_output=True, text=True, check=True,
    )
    jobs = []
    for line in sacct.stdout.splitlines():
        job_id, state = line.split("|")
        # Each job's SLURM log starts with the Snakemake command it ran, which names its target jobs.
        log = next(logdir.rglob(f"{job_id}.log")).read_text()
        targets = re.search(r"--target-jobs (.+?) --", log).group(1).split()
        jobs.append((state, set(targets)))
    return jobs


def test_cohort_through_slurm_fails_the_bad_subject_and_equals_a_local_run(
    tmp_path, tiny_cohort, tiny_atlas, tiny_members, tiny_ensemble_run, slurm_cluster
):
    # One good subject: a second one would only repeat its jobs, each with the plugin's 5 s wait before sbatch.
    sid = "sub-001"
    good = [sid, *(str(paths.bids_image_path(tiny_cohort, sid, m)) for m in MODALITIES)]
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    bad = ["bad", *good[1:3], str(broken), str(tmp_path / "absent.nii.gz")]
    slurm_config = write_config(tmp_path, tiny_atlas, samples=str(_sheet(tmp_path / "subjects.tsv", [good, bad])),
                                 **tiny_ensemble(tiny_members))
    logdir = tmp_path / "slurm_logs"
    since = datetime.now() - timedelta(minutes=1)
    slurm_run = snakemake(
        "--executor", "slurm", "--workflow-profile", "config/profiles/slurm", "--configfile", str(slurm_config),
        # The test node has 2 CPUs, fewer than the profile gives co-registration and radiomics; outputs do not
        # depend on it.
        "--set-threads", "coregister=1", "skullstrip=1", "radiomics=1",
        "--slurm-init-seconds-before-status-checks", "2",
        "--slurm-logdir", str(logdir), "--slurm-keep-successful-logs",
        check=False, timeout=900,
    )
    out = slurm_run.stdout + slurm_run.stderr
    assert slurm_run.returncode != 0, "the bad subject fails the SLURM run"

    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
    jobs = _slurm_jobs(run_id, since, logdir)
    # One SLURM job each for the profile's groups: ingest with coregister ('prep'), radiomics with the report and
    # the provenance record ('finish'); the other steps have their own.
    assert ("COMPLETED", {f"ingest:subject={sid}", f"coregister:subject={sid}"}) in jobs, jobs
    finish = {f"radiomics:subject={sid}", f"report:subject={sid}", f"provenance:subject={sid}"}
    assert ("COMPLETED", finish) in jobs, jobs
    for rule in ("skullstrip", "segment_tiny_labels", "segment_tiny_regions", "fuse"):
        assert ("COMPLETED", {f"{rule}:subject={sid}"}) in jobs, jobs
    bad_jobs = [state for state, targets in jobs if "ingest:subject=bad" in targets]
    # Tried twice (the profile's restart-times: 1), failed both times, nothing after it submitted.
    assert bad_jobs == ["FAILED", "FAILED"], jobs
    assert len(jobs) == 8, jobs
    assert "Error in group prep" in out

    slurm_results, local_results = tmp_path / "results", tiny_ensemble_run
    digests = _image_digests(slurm_results, sid)
    assert {f"{sid}/skullstrip/brain_mask.nii.gz", f"{sid}/coregister/transforms/flair-to-t1c.mat",
            f"{sid}/fuse/segmentation.nii.gz"} <= set(digests)
    # The local run also makes the optional outputs (defaced and native-space images): here they would be nine
    # SLURM jobs more per subject, of steps that the DAG tests check.
    local = _image_digests(local_results, sid)
    assert digests == {path: digest for path, digest in local.items()
                       if path.split("/")[1] not in ("deface", "native")}
    pd.testing.assert_frame_equal(*(pd.read_parquet(paths.radiomics_features(results, sid))
                                    for results in (slurm_results, local_results)))
    assert (slurm_results / sid / "benchmarks" / "coregister.tsv").is_file()
    assert not (slurm_results / "bad" / "ingest" / "t1.nii.gz").exists()
    assert f"subject bad: T2 {broken}: " in (slurm_results / "bad" / "logs" / "ingest.log").read_text()
