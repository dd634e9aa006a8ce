"""The pipeline's steps and their container images, read from the steps' own files: the Snakefile (which rule
files it includes), `containers/build`, `containers/lock`, `containers/apptainer-run` and the container tests
read them here.

- Steps, in pipeline order: the keys of `config/config.yaml`'s `containers:` block; a step's image is the
  `bratsflow-<image>` part of its reference (the report runs in the co-registration image). Each step has a rule
  file `workflow/rules/<step>.smk`.
- Images: `containers/<image>/Dockerfile`. Its parent is the image named in the default of the ARG its first
  `FROM ${ARG}` uses (`ARG BASE=…/bratsflow-base:…` → base; a `FROM debian…` has none); it is built as a cpu and
  a cuda variant when the Dockerfile declares `ARG VARIANT`. Build order: parents first, then by name.

Plain Python without imports beyond the standard library: `containers/build` runs it before any environment exists
(`python3 workflow/steps.py images`). The YAML block is read with a regex, as `containers/build` does.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "config.yaml"
CONTAINERS = REPO / "containers"
GPU_VARIANTS = ("cpu", "cuda")


@dataclass(frozen=True)
class Image:
    """A container image, containers/<name>/Dockerfile. parent: the image it builds on (its lock is resolved
    against the parent's); variants: built as cpu or cuda (GPU steps)."""

    name: str
    parent: str | None = "base"
    variants: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """A pipeline step: its results folder RESULTS/<subject>/<name>/, its rule file workflow/rules/<name>.smk
    and the image it runs in."""

    name: str
    image: str


def configured_images(config: Path = CONFIG) -> dict[str, str]:
    """step -> image, in the order of config.yaml's `containers:` block (`  step: docker://…/bratsflow-IMAGE:TAG`)."""
    block = re.search(r"^containers:[^\n]*\n((?:[ \t]+[^\n]*\n?|[ \t]*#[^\n]*\n?|\n)*)", config.read_text(),
                      flags=re.MULTILINE)
    if block is None:
        raise SystemExit(f"steps.py: {config} has no containers: block")
    entries = re.findall(r"^  (\w+):\s*\S*/bratsflow-([A-Za-z0-9_-]+):\S*", block.group(1), flags=re.MULTILINE)
    if not entries:
        raise SystemExit(f"steps.py: {config}'s containers: block names no bratsflow-<image> reference")
    return dict(entries)


def dockerfile_image(dockerfile: Path) -> Image:
    """The image a Dockerfile builds: its parent (the image in the default of the ARG of the first `FROM ${ARG}`,
    None for a FROM without an ARG) and its variants (cpu and cuda when it declares `ARG VARIANT`)."""
    text = dockerfile.read_text()
    first = re.search(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    if first is None:
        raise SystemExit(f"steps.py: {dockerfile} has no FROM")
    parent = None
    arg = re.fullmatch(r"\$\{?(\w+)\}?", first.group(1))
    if arg:
        default = re.search(rf"^ARG\s+{arg.group(1)}=\S*/bratsflow-([A-Za-z0-9_-]+):", text, flags=re.MULTILINE)
        if default is None:
            raise SystemExit(f"steps.py: {dockerfile}: FROM ${{{arg.group(1)}}} without an ARG {arg.group(1)}="
                             "…/bratsflow-<image>:… default")
        parent = default.group(1)
        if arg.group(1) != parent.upper():  # containers/build passes the parent's reference as --build-arg PARENT=
            raise SystemExit(f"steps.py: {dockerfile}: the ARG of its parent {parent} must be named {parent.upper()}")
    variants = GPU_VARIANTS if re.search(r"^ARG\s+VARIANT\b", text, flags=re.MULTILINE) else ()
    return Image(dockerfile.parent.name, parent, variants)


def build_order(images: list[Image]) -> tuple[Image, ...]:
    """Parents before their children; images at the same depth by name."""
    by_name = {entry.name: entry for entry in images}

    def depth(entry: Image, seen: tuple[str, ...] = ()) -> int:
        if entry.parent is None:
            return 0
        if entry.parent not in by_name:
            raise SystemExit(f"steps.py: image {entry.name}: its parent {entry.parent} has no Dockerfile")
        if entry.name in seen:
            raise SystemExit(f"steps.py: the images' parents form a cycle: {' -> '.join((*seen, entry.name))}")
        return 1 + depth(by_name[entry.parent], (*seen, entry.name))

    return tuple(sorted(images, key=lambda entry: (depth(entry), entry.name)))


IMAGES = build_order([dockerfile_image(path) for path in sorted(CONTAINERS.glob("*/Dockerfile"))])
# In pipeline order.
STEPS = tuple(Step(name, image) for name, image in configured_images().items())
STEP_IMAGES = {step.name: step.image for step in STEPS}


def image(name: str) -> Image:
    return next(i for i in IMAGES if i.name == name)


if __name__ == "__main__":
    # images: the build order, one image a line, as "name parent variants" (variants comma-separated or -).
    # steps: the pipeline order, one step a line, as "name image variants" (its image's variants).
    if sys.argv[1:] == ["images"]:
        for entry in IMAGES:
            print(entry.name, entry.parent or "-", ",".join(entry.variants) or "-")
    elif sys.argv[1:] == ["steps"]:
        for step in STEPS:
            print(step.name, step.image, ",".join(image(step.image).variants) or "-")
    else:
        sys.exit("usage: steps.py images|steps")
