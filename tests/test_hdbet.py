"""The model store and the HD-BET backend, with the tiny nnU-Net v2 brain-extraction model the tests ship."""

import json
import shutil
import zipfile

import nibabel as nib
import numpy as np
import pytest

from bratsflow import models
from bratsflow.cli import main
from bratsflow.errors import ConfigError, ModelError
from bratsflow.io import sha256_file
from bratsflow.metrics import dice
from bratsflow.skullstrip import SkullstripParams, skullstrip
from conftest import shipped_tiny_model
from nnunet_helpers import atlas_space_t1

TEST_SUBJECT = "sub-002"


@pytest.fixture(scope="session")
def tiny_hdbet(tmp_path_factory):
    """A one-channel brain-extraction model in HD-BET's folder layout, trained on two tiny subjects."""
    # As HD-BET's release, without a checksum record: `models install` writes it.
    return shipped_tiny_model("hdbet", tmp_path_factory, record=False)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv(models.STORE_ENV, str(tmp_path / "store"))
    return tmp_path / "store"


@pytest.fixture
def test_images(tiny_cohort, tmp_path):
    t1, truth = atlas_space_t1(tiny_cohort, TEST_SUBJECT)
    nib.save(t1, tmp_path / "t1.nii.gz")
    return {"t1": tmp_path / "t1.nii.gz"}, truth


@pytest.mark.parametrize("tta", [False, True])
def test_hdbet_backend_runs_the_installed_model_on_cpu(tiny_hdbet, store, test_images, tmp_path, tta):
    models.install("hd-bet", tiny_hdbet)
    images, truth = test_images
    record = skullstrip(images, tmp_path / "out", SkullstripParams(backend="hdbet", device="auto", tta=tta),
                        subject=TEST_SUBJECT, threads=2)
    mask = np.asarray(nib.load(tmp_path / "out" / "brain_mask.nii.gz").dataobj) > 0
    # An unseen subject: the network learnt the brain, and the voxel order came back right.
    assert dice(mask, truth) > 0.9
    method = record["method"]
    assert method["device"] == "cpu" and method["tta"] is tta
    assert method["checkpoint_sha256"] == sha256_file(tiny_hdbet / "fold_all" / "checkpoint_final.pth")


def test_changed_checkpoint_is_never_unpickled(tiny_hdbet, store, test_images, tmp_path, monkeypatch):
    folder = models.install("hd-bet", tiny_hdbet)
    with open(folder / "fold_all" / "checkpoint_final.pth", "ab") as handle:
        handle.write(b"\0")
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called on an unverified checkpoint")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(ModelError, match=r"fold_all/checkpoint_final.pth: SHA-256 differs from the record"):
        skullstrip(test_images[0], tmp_path / "out", SkullstripParams(backend="hdbet"), subject=TEST_SUBJECT)
    assert not (tmp_path / "out").exists()
    assert main(["models", "verify", "hd-bet"]) == 2


def test_model_folder_without_a_record_and_missing_model(tiny_hdbet, store, test_images, tmp_path):
    with pytest.raises(ModelError, match="no checksum record .*bratsflow models install"):
        skullstrip(test_images[0], tmp_path / "a", SkullstripParams(backend="hdbet", model=str(tiny_hdbet)))
    with pytest.raises(ModelError, match="install it with `bratsflow models fetch hd-bet`"):
        skullstrip(test_images[0], tmp_path / "b", SkullstripParams(backend="hdbet"))


def test_cuda_asked_for_without_a_gpu(tiny_hdbet, store, test_images, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    models.install("hd-bet", tiny_hdbet)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        skullstrip(test_images[0], tmp_path / "c", SkullstripParams(backend="hdbet", device="cuda"))


def _zip(folder, archive, prefix=""):
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                handle.write(path, prefix + str(path.relative_to(folder)))
    return archive


def test_install_from_zip_and_url_with_checksums(tiny_hdbet, store, loopback_server, tmp_path):
    served, base = loopback_server
    archive = _zip(tiny_hdbet, served / "release.zip", prefix="release_2.0.0/")
    good = sha256_file(archive)

    with pytest.raises(ModelError, match="expected 0{64}; nothing was installed"):
        models.install("from-zip", archive, sha256="0" * 64)
    assert not models.model_dir("from-zip").exists()
    folder = models.install("from-zip", archive, sha256=good)
    assert (folder / "fold_all" / "checkpoint_final.pth").is_file() and (folder / "plans.json").is_file()
    record = models.verify(folder)
    assert record["source_sha256"] == good
    with pytest.raises(ModelError, match="already installed"):
        models.install("from-zip", archive)

    with pytest.raises(ConfigError, match="never installs an unverified download"):
        models.install("from-url", f"{base}/release.zip")
    models.install("from-url", f"{base}/release.zip", sha256=good)
    assert [name for name, _ in models.installed()] == ["from-url", "from-zip"]

    # The known HD-BET release: no pinned checksum yet, so it must be given; offline, a clear message.
    with pytest.raises(ConfigError, match="no SHA-256 is pinned for model hd-bet"):
        models.fetch("hd-bet", url=f"{base}/release.zip")
    assert models.fetch("hd-bet", url=f"{base}/release.zip", sha256=good) == models.model_dir("hd-bet")
    with pytest.raises(Exception, match="cannot download .*bratsflow models install hd-bet FILE.zip"):
        models.fetch("hd-bet", url="http://127.0.0.1:9/release.zip", sha256=good, force=True)
    assert models.verify(models.model_dir("hd-bet")), "a failed download leaves the installed model alone"


def test_unsafe_or_wrong_archives_are_refused(tiny_hdbet, store, tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as handle:
        handle.writestr("../outside.txt", "x")
    with pytest.raises(ModelError, match="points outside the model folder"):
        models.install("evil", evil)
    assert not (tmp_path / "outside.txt").exists()
    no_model = tmp_path / "empty"
    shutil.copytree(tiny_hdbet, no_model)
    (no_model / "plans.json").unlink()
    with pytest.raises(ModelError, match="no nnU-Net v2 model folders"):
        models.install("empty", no_model)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a readable zip"):
        models.install("junk", tmp_path / "junk.zip")
    with pytest.raises(ConfigError, match="not allowed"):
        models.install("../x", tiny_hdbet)


def test_models_cli(tiny_hdbet, store, capsys):
    assert main(["models", "install", "tiny", str(tiny_hdbet)]) == 0
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "hd-bet" in out
    assert main(["models", "verify", "tiny"]) == 0
    manifest = json.loads((store / "tiny" / models.MANIFEST).read_text())
    assert set(manifest["files"]) == {"plans.json", "dataset.json", "fold_all/checkpoint_final.pth"}
