"""Container members: BraTS challenge algorithm images with the MLCube-style folders the BraTS orchestrator uses.

The input folder holds one folder per case with `<case>-{t1n,t1c,t2w,t2f}.nii.gz`, mounted read-only at
/mlcube_io0; the algorithm writes `<case>.nii.gz` into /mlcube_io1. The image runs under the configured runtime
(podman or docker on a workstation, apptainer on HPC) with no network and as the calling user, so its outputs
belong to the user (root-owned results are a common complaint about older BraTS tools).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputError, ModelError
from ..io import load_image, require_same_grid

log = logging.getLogger(__name__)

BRATS_NAMES = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"}
CASE = "BraTS-GLI-00000-000"
INPUT_MOUNT, OUTPUT_MOUNT = "/mlcube_io0", "/mlcube_io1"
RUNTIMES = ("podman", "docker", "apptainer")


def run_command(runtime: str, image: str, input_dir: Path, output_dir: Path, args: tuple[str, ...],
                gpu: bool) -> list[str]:
    if runtime == "apptainer":
        return ["apptainer", "run", "--containall", "--no-home", "--net", "--network", "none", *(["--nv"] if gpu else []),
                "-B", f"{input_dir}:{INPUT_MOUNT}:ro", "-B", f"{output_dir}:{OUTPUT_MOUNT}", image, *args]
    gpus = (["--device", "nvidia.com/gpu=all"] if runtime == "podman" else ["--gpus", "all"]) if gpu else []
    return [runtime, "run", "--rm", "--network", "none", "--user", f"{os.getuid()}:{os.getgid()}", *gpus,
            "-v", f"{input_dir}:{INPUT_MOUNT}:ro", "-v", f"{output_dir}:{OUTPUT_MOUNT}", image, *args]


def image_id(runtime: str, image: str) -> str | None:
    """The local image's content id (sha256), where the runtime can tell (podman, docker)."""
    if runtime == "apptainer":
        return None
    result = subprocess.run([runtime, "image", "inspect", "--format", "{{.Id}}", image], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise ModelError(f"container image {image} is not available to {runtime} ({result.stderr.strip()[-300:]}); "
                         f"pull or load it first (the pipeline never pulls while it runs)")
    return result.stdout.strip().removeprefix("sha256:")


def predict(images: dict[str, Path], member, *, subject: str | None = None, threads: int = 1,
            workdir: Path | None = None) -> tuple[np.ndarray, None, dict]:
    if member.runtime not in RUNTIMES:
        raise ConfigError(f"member {member.name}: runtime must be one of {list(RUNTIMES)}, not {member.runtime!r}")
    if shutil.which(member.runtime) is None:
        raise ConfigError(f"member {member.name}: container runtime {member.runtime} is not installed here")
    missing = [m for m in BRATS_NAMES if m not in images]
    if missing:
        raise InputError(f"container member {member.name} needs all four modalities; missing {missing}",
                         subject=subject)
    identity = image_id(member.runtime, member.model)
    if member.sha256 and identity != member.sha256.lower():
        raise ModelError(f"container image {member.model} has id {identity}, the config pins {member.sha256}")
    reference = load_image(images["t1c"])
    with tempfile.TemporaryDirectory(prefix=f".{member.name}-", dir=workdir) as tmp:
        input_dir, output_dir = Path(tmp) / "input", Path(tmp) / "output"
        (input_dir / CASE).mkdir(parents=True)
        output_dir.mkdir()
        for modality, name in BRATS_NAMES.items():
            shutil.copyfile(images[modality], input_dir / CASE / f"{CASE}-{name}.nii.gz")
        command = run_command(member.runtime, member.model, input_dir, output_dir, member.args,
                              gpu=member.device == "cuda")
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        log.info("%s: %s finished with %d in %.1f s", subject, member.model, result.returncode, seconds)
        if result.returncode != 0:
            raise ModelError(f"container member {member.name} ({member.model}) exited with {result.returncode}: "
                             f"{(result.stderr or result.stdout).strip()[-500:]}")
        written = output_dir / f"{CASE}.nii.gz"
        if not written.is_file():
            found = sorted(p.name for p in output_dir.rglob("*"))
            raise ModelError(f"container member {member.name} wrote no {CASE}.nii.gz (found {found})")
        output = load_image(written)
        require_same_grid(output, reference, "the grid of its input images", error=ModelError,
                          why=f"container member {member.name} must write its label map there", file=written)
        labels = np.asarray(output.dataobj)
        if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
            raise ModelError(f"container member {member.name} wrote non-integer labels")
    details = {"image": member.model, "image_id": identity, "runtime": member.runtime,
               "command": [c.replace(tmp, "<tmp>") for c in command], "seconds": round(seconds, 2)}
    return labels.astype(np.uint8), None, details
