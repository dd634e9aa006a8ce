"""The step and image registry (workflow/steps.py) reads the steps' own files: config.yaml's `containers:` block
(steps, pipeline order, images) and containers/*/Dockerfile (parents, GPU variants)."""

import runpy
import subprocess
import sys

import yaml

from conftest import REPO, workflow_steps

steps = workflow_steps()


def test_every_step_has_a_rule_file_and_an_image_with_a_dockerfile():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert [step.name for step in steps.STEPS] == list(config["containers"])
    images = {image.name for image in steps.IMAGES}
    for step in steps.STEPS:
        assert (REPO / "workflow" / "rules" / f"{step.name}.smk").is_file(), step.name
        assert step.image in images, step
        assert (REPO / "containers" / step.image / "Dockerfile").is_file(), step
        assert config["containers"][step.name].split("/")[-1].startswith(f"bratsflow-{step.image}:"), step


def test_images_come_from_the_dockerfiles_parents_first():
    images = {image.name: image for image in steps.IMAGES}
    assert set(images) == {path.parent.name for path in (REPO / "containers").glob("*/Dockerfile")}
    assert images["base"] == steps.Image("base", parent=None)
    assert images["coregister"] == steps.Image("coregister", parent="base")
    assert images["segment"] == steps.Image("segment", parent="base", variants=("cpu", "cuda"))
    assert images["skullstrip"] == steps.Image("skullstrip", parent="segment", variants=("cpu", "cuda"))
    assert steps.STEP_IMAGES["report"] == "coregister"
    order = [image.name for image in steps.IMAGES]
    for image in steps.IMAGES:
        assert image.parent is None or order.index(image.parent) < order.index(image.name), image


def test_a_dockerfile_names_its_parent_in_the_default_of_its_from_arg(tmp_path):
    for name, text in {
        "top": "FROM debian:bookworm-slim AS build\nFROM debian:bookworm-slim\n",
        "child": "# syntax\nARG SEGMENT=example.org/x/bratsflow-segment:0.1.0\nFROM ${SEGMENT}\nARG VARIANT=cuda\n",
        "plain": "ARG BASE=example.org/x/bratsflow-base:0.1.0\nFROM $BASE AS build\nFROM ${BASE}\n",
    }.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "Dockerfile").write_text(text)
    parsed = {path.parent.name: steps.dockerfile_image(path) for path in tmp_path.glob("*/Dockerfile")}
    assert parsed["top"] == steps.Image("top", parent=None)
    assert parsed["child"] == steps.Image("child", parent="segment", variants=("cpu", "cuda"))
    assert parsed["plain"] == steps.Image("plain", parent="base")


def test_steps_come_from_the_containers_block_in_order(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("threads:\n  b: 1\ncontainers:\n  # comment\n  b: docker://r.example/o/bratsflow-x:1\n"
                      "  a: docker://r.example/o/bratsflow-y:1   # note\nafter:\n  c: docker://r/bratsflow-z:1\n")
    assert steps.configured_images(config) == {"b": "x", "a": "y"}


def test_the_command_line_lists_images_and_steps():
    def lines(what):
        result = subprocess.run([sys.executable, str(REPO / "workflow" / "steps.py"), what],
                                capture_output=True, text=True, check=True)
        return result.stdout.splitlines()

    assert "skullstrip segment cpu,cuda" in lines("images")
    assert lines("steps")[-1] == "report coregister -"


def test_locks_resolve_each_image_on_its_parents_lock():
    locks = runpy.run_path(str(REPO / "containers" / "lock"))["LOCKS"]
    assert locks["skullstrip/requirements-cpu.txt"] == (
        "segment/requirements-cpu.txt", ["skullstrip/requirements-cpu.in"])
    assert locks["segment/requirements-cuda.txt"] == ("base/requirements.txt", ["segment/requirements-cuda.in"])
    assert locks["base/requirements.txt"] == (None, ["base/requirements.in"])
    assert "fuse/requirements.txt" not in locks  # no packages of its own
    # Skull stripping installs co-registration's requirements on top of segmentation's.
    for variant in ("cpu", "cuda"):
        lines = (REPO / "containers" / "skullstrip" / f"requirements-{variant}.in").read_text().splitlines()
        assert "-r ../coregister/requirements.in" in lines
