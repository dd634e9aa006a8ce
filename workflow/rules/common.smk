# Configuration, cohort and path helpers shared by every rule file.
import os
from pathlib import Path, PurePosixPath

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from bratsflow import paths
from bratsflow.cohort import MODALITIES, load_cohort
from bratsflow.errors import BratsflowError
from bratsflow.steps import STEPS


validate(config, "../schemas/config.schema.yaml", set_default=True)

RESULTS = config["results"]
DEMO = config["demo"]

try:
    # Validates the sheet against workflow/schemas/samples.schema.yaml (the package's copy, so the CLI and
    # the containers check sheets identically) with row-specific messages.
    COHORT = load_cohort(samples=config["samples"], bids=config["bids"] or None)
except BratsflowError as exc:
    raise WorkflowError(f"bratsflow: {exc}") from None

SUBJECTS = {subject.subject_id: subject for subject in COHORT}


def cohort_source_args():
    """How the CLI finds a subject: the same sheet or BIDS root the workflow read."""
    return f"--bids {config['bids']}" if config["bids"] else f"--samples {config['samples']}"


def demo_file(path):
    """True for paths inside the demo root, which the demo synthesis makes."""
    root = os.path.normpath(DEMO["root"]) + os.sep
    return os.path.normpath(path).startswith(root)


def subject_inputs(wildcards):
    """The subject's raw images that exist or that the demo rule can make. A missing image is left out of the
    DAG on purpose: its ingest job then fails with a message naming the file, and the rest of the cohort runs."""
    if wildcards.subject not in SUBJECTS:
        raise WorkflowError(f"bratsflow: subject {wildcards.subject!r} is not in the cohort ({cohort_source_args()})")
    subject = SUBJECTS[wildcards.subject]
    return [
        str(path)
        for path in subject.images.values()
        if demo_file(path) or os.path.exists(path)
    ]


def step_files(step, subject="{subject}"):
    """A step's files (bratsflow.paths.StepFiles): the names the step itself writes."""
    return paths.step_files(RESULTS, subject, step)


def step_images(step, subject="{subject}"):
    """A step's four images, named by modality (rule inputs and outputs)."""
    return {m: str(step_files(step, subject).image(m)) for m in MODALITIES}


def modality_args(wildcards, input):
    """--t1 PATH --t1c PATH --t2 PATH --flair PATH from a rule's named modality inputs."""
    return " ".join(f"--{m} {getattr(input, m)}" for m in MODALITIES)


def step_log(step, subject="{subject}"):
    return str(paths.log_file(RESULTS, subject, step))


def step_benchmark(step, subject="{subject}"):
    return str(paths.benchmark_file(RESULTS, subject, step))


def native_targets():
    """The configured atlas-space results (STEP/NAME) mapped into the configured native spaces."""
    return [
        str(paths.native_file(RESULTS, subject, *PurePosixPath(image).parts, space))
        for subject in SUBJECTS
        for image in config["to_native"]["images"]
        for space in config["to_native"]["spaces"]
    ]


# What the steps deliver, as each step's rules file declares it with `deliver`. FINAL_TARGETS are the results the
# default target asks for (the manifest checksums them once they all exist); SUBJECT_RECORDS are the records of one
# subject (gathered into its provenance).
FINAL_TARGETS = []
SUBJECT_RECORDS = []


def deliver(*targets, records=()):
    """Declare a step's results: paths or path lists, "{subject}" patterns expanded over the cohort; `records`:
    the step's record patterns for one subject."""
    for target in targets:
        for path in [target] if isinstance(target, (str, Path)) else target:
            path = str(path)
            FINAL_TARGETS.extend(expand(path, subject=SUBJECTS) if "{subject}" in path else [path])
    SUBJECT_RECORDS.extend(str(record) for record in records)


def subject_records(wildcards):
    """The records of every step the configuration runs for a subject."""
    return expand(SUBJECT_RECORDS, subject=wildcards.subject)

