"""The pipeline's steps and their container images: the one table the Snakefile (which rule files it includes),
`containers/build`, `containers/lock`, `containers/apptainer-run` and the container tests read. Adding a step: a
row here, its module, its rule file `workflow/rules/<step>.smk`, its config block and schema, its image
`containers/<image>/`.

Plain Python without imports beyond the standard library: `containers/build` runs it before any environment exists
(`python3 toolkit/bratsflow/steps.py images`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Image:
    """A container image, containers/<name>/Dockerfile. parent: the image it builds on (its lock is resolved
    against the parent's); variants: built as cpu or cuda (GPU steps); adds: other images' requirements it
    installs on top of its parent's (skull stripping = segmentation's nnU-Net + co-registration's ANTs)."""

    name: str
    parent: str | None = "base"
    variants: tuple[str, ...] = ()
    adds: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """A pipeline step: its results folder RESULTS/<subject>/<name>/, its rule file workflow/rules/<name>.smk
    and the image it runs in."""

    name: str
    image: str


GPU_VARIANTS = ("cpu", "cuda")
# In build order: a parent before its children.
IMAGES = (
    Image("base", parent=None),
    Image("ingest"),
    Image("coregister"),
    Image("fuse"),
    Image("radiomics"),
    Image("segment", variants=GPU_VARIANTS),
    Image("skullstrip", parent="segment", variants=GPU_VARIANTS, adds=("coregister",)),
)
# In pipeline order.
STEPS = (
    Step("ingest", "ingest"),
    Step("coregister", "coregister"),
    Step("skullstrip", "skullstrip"),
    Step("segment", "segment"),
    Step("fuse", "fuse"),
    Step("radiomics", "radiomics"),
    Step("report", "coregister"),
)
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
