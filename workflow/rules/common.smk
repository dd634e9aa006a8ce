# Configuration, cohort and path helpers shared by every rule file.
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from bratsflow import paths
from bratsflow.availability import absent, format_skipped, pipeline_needs, skipped_members
from bratsflow.cohort import MODALITIES, load_cohort
from bratsflow.errors import BratsflowError
from bratsflow.labels import nested_convention, require_exact_mapping
from bratsflow.segment import Member, required_modalities


def _load_steps():
    """workflow/steps.py, the step and image registry (plain Python beside the rules, not in the package: it reads
    config/config.yaml's `containers:` block and containers/*/Dockerfile)."""
    path = Path(workflow.basedir, "workflow", "steps.py")
    spec = importlib.util.spec_from_file_location("bratsflow_workflow_steps", path)
    registry = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(registry)
    return registry


STEPS = _load_steps().STEPS


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
# The character set of subject ids (workflow/schemas/samples.schema.yaml), one path segment.
SUBJECT_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"

# README, Missing modalities: under run-available each subject runs on the modalities it has an image for.
MISSING_POLICY = config["missing_modalities"]
NEEDS = pipeline_needs(
    config["coregister"]["centre"],
    config["coregister"]["centre_fallback"],
    config["skullstrip"]["modality"],
    config["skullstrip"]["fallback"],
)


def subject_modalities(subject):
    return SUBJECTS[subject].modalities(MISSING_POLICY)


def from_dicom(subject, modality):
    """Whether the pipeline runs a subject on a DICOM image of `modality`: from its study, or a series folder that
    the sheet names."""
    if modality not in subject_modalities(subject):
        return False
    named = SUBJECTS[subject].images.get(modality)
    return SUBJECTS[subject].from_study(modality) or (named is not None and named.is_dir())


@dataclass(frozen=True)
class ModalitySet:
    """The subjects that share one set of modalities: a rule's outputs cannot vary by subject, so each step with
    one image per modality gets a rule per set found in the cohort (`ingest` for all four, `ingest_without_flair`
    ...), its subject wildcard limited to the set's subjects."""

    modalities: tuple
    subject: str

    def rule(self, step):
        missing = absent(self.modalities)
        return f"{step}_without_{'_'.join(missing)}" if missing else step


def _ids(subjects):
    # An id must not be followed by another id character: "sub-1" must not claim "sub-10".
    return f"(?:{'|'.join(re.escape(s) for s in subjects)})(?![A-Za-z0-9._-])"


def modality_sets():
    by_set = {}
    for subject in SUBJECTS:
        by_set.setdefault(subject_modalities(subject), []).append(subject)
    partial = {modalities: subjects for modalities, subjects in by_set.items() if modalities != MODALITIES}
    others = [s for subjects in partial.values() for s in subjects]
    complete = ModalitySet(MODALITIES, f"(?!{_ids(others)}){SUBJECT_ID}" if others else SUBJECT_ID)
    return [complete, *(ModalitySet(m, _ids(subjects)) for m, subjects in partial.items())]


MODALITY_SETS = modality_sets()


SEGMENT_MEMBERS = config["segment"]["members"]
try:
    # Before any job: the steps after segmentation handle nested label sets only, and a member of another task
    # would be mislabelled, or fail after its prediction.
    nested_convention(config["convention"])
    for spec in SEGMENT_MEMBERS:
        require_exact_mapping(Member.from_config(spec).labels, config["convention"], member=spec["name"])
except BratsflowError as exc:
    raise WorkflowError(f"bratsflow: {exc}") from None


def member_requirements():
    """Member name -> the modalities it reads; read from the models only when some subject lacks a modality."""
    if len(MODALITY_SETS) == 1:
        return {}
    try:
        return {m["name"]: required_modalities(Member.from_config(m)) for m in SEGMENT_MEMBERS}
    except BratsflowError as exc:
        raise WorkflowError(f"bratsflow: which modalities a member needs (missing_modalities: run-available): {exc}")


MEMBER_REQUIREMENTS = member_requirements()


def subject_skipped(subject):
    """The members that cannot run on a subject's modalities -> the missing modalities each needs."""
    return skipped_members(MEMBER_REQUIREMENTS, subject_modalities(subject))


def subject_members(subject):
    """The names of the members that run on a subject, in config order."""
    skipped = subject_skipped(subject)
    return [m["name"] for m in SEGMENT_MEMBERS if m["name"] not in skipped]


# The members that write probability files (bratsflow.segment.Member.writes_probabilities: not containers).
PROBABILITY_MEMBERS = [m["name"] for m in SEGMENT_MEMBERS if Member.from_config(m).writes_probabilities]


def probability_members(subject):
    """The members that run on a subject and write probability files, in config order."""
    return [name for name in subject_members(subject) if name in PROBABILITY_MEMBERS]


def member_files(subject, probabilities=False):
    """The label maps of the members that run on a subject, or the probability files of those that write one."""
    if probabilities:
        return [str(paths.segment_probabilities(RESULTS, subject, name)) for name in probability_members(subject)]
    return [str(paths.segment_member(RESULTS, subject, name)) for name in subject_members(subject)]


def report_probability_args(subject, files):
    """The report's --probabilities NAME=NPZ of the probability files (`member_files`). Its map is an output
    whenever a member of the configuration writes probabilities, so the flag comes even bare for a subject whose
    such members were all skipped (missing_modalities: run-available): the map is then written as NaN."""
    if not PROBABILITY_MEMBERS:
        return ""
    pairs = zip(probability_members(subject), files)
    return " ".join(["--probabilities", *(f"{name}={path}" for name, path in pairs)])


def fuse_member_args(subject, weighted):
    """Fusion's --names (and --weights when `weighted`) of the members that ran, --skipped of the others."""
    members = subject_members(subject)
    weights = {m["name"]: m["weight"] for m in SEGMENT_MEMBERS}
    words = ["--names", *members] if members else []
    if members and weighted:
        words += ["--weights", *(str(weights[m]) for m in members)]
    skipped = format_skipped(subject_skipped(subject))
    return " ".join(words + (["--skipped", *skipped] if skipped else []))


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
    # An edited rules file may sort a study differently, so it is an input of the subjects that have a study.
    study = [subject.study, config["dicom"]["rules"]] if subject.study is not None else []
    return [
        str(path)
        for path in [*subject.images.values(), *study]
        if demo_file(path) or os.path.exists(path)
    ]


def subject_truth(wildcards):
    """The subject's ground truth when it exists or the demo rule can make it; one named but missing fails the
    subject at ingest, naming the sheet's row (bratsflow.cohort.Subject.truth_problem)."""
    truth = SUBJECTS[wildcards.subject].truth
    return [str(truth)] if truth is not None and (demo_file(truth) or truth.is_file()) else []


def step_files(step, subject="{subject}"):
    """A step's files (bratsflow.paths.StepFiles): the names the step itself writes."""
    return paths.step_files(RESULTS, subject, step)


def step_images(step, subject="{subject}", modalities=MODALITIES):
    """A step's images, named by modality (rule inputs and outputs)."""
    return {m: str(step_files(step, subject).image(m)) for m in modalities}


def subject_images(step, **named):
    """A step's images of the modalities a subject has, and `named` "{subject}" patterns (input function, for
    `unpack`; `deliver` target)."""

    def images(wildcards_or_subject):
        subject = getattr(wildcards_or_subject, "subject", wildcards_or_subject)
        more = {name: str(path).replace("{subject}", subject) for name, path in named.items()}
        return {**step_images(step, subject, subject_modalities(subject)), **more}

    return images


def modality_args(wildcards, input):
    """--t1 PATH --t1c PATH --t2 PATH --flair PATH from a rule's named modality inputs (those it has)."""
    names = set(input.keys())
    return " ".join(f"--{m} {getattr(input, m)}" for m in MODALITIES if m in names)


def step_log(step, subject="{subject}"):
    return str(paths.log_file(RESULTS, subject, step))


def step_benchmark(step, subject="{subject}"):
    return str(paths.benchmark_file(RESULTS, subject, step))


def native_targets(subject):
    """The configured atlas-space results (STEP/NAME) mapped into the configured native spaces; of a subject
    without a modality neither its image nor its space."""
    present = subject_modalities(subject)
    return [
        str(paths.native_file(RESULTS, subject, step, name, space))
        for step, name in (PurePosixPath(image).parts for image in config["to_native"]["images"])
        for space in config["to_native"]["spaces"]
        if space in present and (name not in MODALITIES or name in present)
    ]


# What the steps deliver, as each step's rules file declares it with `deliver`. FINAL_TARGETS are the results the
# default target asks for (the manifest checksums them once they all exist); SUBJECT_RECORDS are the records of one
# subject (gathered into its provenance).
FINAL_TARGETS = []
SUBJECT_RECORDS = []


def deliver(*targets, records=()):
    """Declare a step's results: paths or path lists, "{subject}" patterns expanded over the cohort, or functions
    of a subject id giving its paths; `records`: the step's record patterns for one subject, or such functions."""
    for target in targets:
        if callable(target):
            for subject in SUBJECTS:
                found = target(subject)
                FINAL_TARGETS.extend(str(p) for p in (found.values() if isinstance(found, dict) else found))
            continue
        for path in [target] if isinstance(target, (str, Path)) else target:
            path = str(path)
            FINAL_TARGETS.extend(expand(path, subject=SUBJECTS) if "{subject}" in path else [path])
    SUBJECT_RECORDS.extend(record if callable(record) else str(record) for record in records)


def subject_records(wildcards):
    """The records of every step the configuration runs for a subject."""
    subject = wildcards.subject
    return [
        str(path)
        for record in SUBJECT_RECORDS
        for path in (record(subject) if callable(record) else expand(record, subject=subject))
    ]
