"""The missing-modality policy (config `missing_modalities`): what a subject without all four modalities runs on.

`fail` (default): every subject needs T1, T1c, T2 and FLAIR; one without fails at ingest, the rest of the cohort
goes on. `run-available`: a modality with no image at all (an empty sample-sheet cell, no file in the BIDS anat
folder) is left out; the steps run on the modalities present, ensemble members that need a missing one are
skipped, and every record says what was missing. A subject still needs what the steps cannot do without: a
centre to co-register onto and a modality to compute the brain mask on (each with its configured fallback).

Plain Python (no pandas, no images): the workflow imports it while it builds the DAG.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import ConfigError
from .modalities import MODALITIES, MODALITY_NAMES

POLICIES = ("fail", "run-available")
DEFAULT_POLICY = "fail"
# The config keys whose defaults these are (tests/test_defaults.py checks config.yaml and the schema agree).
CONFIG_DEFAULTS = {"missing_modalities": DEFAULT_POLICY}
# Appended to a missing modality's error under `fail`, so the message says how to go on without it.
FAIL_HINT = "missing_modalities is fail; run-available runs the subject on the modalities it has"


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ConfigError(f"missing_modalities must be one of {list(POLICIES)}, not {policy!r}")
    return policy


def _name_and_modalities(text: str, what: str) -> tuple[str, tuple[str, ...]]:
    """`NAME=MOD[,MOD]` as given on the command line."""
    name, _, listed = text.partition("=")
    modalities = tuple(m for m in listed.split(",") if m)
    if not name or not modalities or any(m not in MODALITIES for m in modalities):
        raise ConfigError(f"expected {what}=MODALITY[,MODALITY] with modalities {list(MODALITIES)}, not {text!r}")
    return name, modalities


@dataclass(frozen=True)
class Need:
    """A step that needs any one of `modalities` (its modality, then its fallbacks), as `step=MOD[,MOD]`."""

    step: str
    modalities: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> "Need":
        return cls(*_name_and_modalities(text, "STEP"))

    def __str__(self) -> str:
        return f"{self.step}={','.join(self.modalities)}"

    def met_by(self, present: Iterable[str]) -> bool:
        return any(m in present for m in self.modalities)

    def describe(self) -> str:
        return f"{self.step} needs {' or '.join(MODALITY_NAMES[m] for m in self.modalities)}"


def pipeline_needs(centre: str, centre_fallback: str, mask_modality: str, mask_fallback: str) -> tuple[Need, ...]:
    """What every subject needs at least: co-registration's centre (or its fallback) and the modality the brain
    mask is computed on (or its fallback)."""
    return (Need("coregister", tuple(dict.fromkeys((centre, centre_fallback)))),
            Need("skullstrip", tuple(dict.fromkeys((mask_modality, mask_fallback)))))


def unmet(present: Iterable[str], needs: Iterable[Need]) -> list[Need]:
    present = set(present)
    return [need for need in needs if not need.met_by(present)]


def absent(present: Iterable[str]) -> list[str]:
    """The modalities not among `present`, in pipeline order (what a record lists as missing)."""
    present = set(present)
    return [m for m in MODALITIES if m not in present]


def lacking(required: Iterable[str], present: Iterable[str]) -> list[str]:
    """The modalities of `required` (an ensemble member's inputs) not among `present` (empty: it runs)."""
    present = set(present)
    return [m for m in required if m not in present]


def skipped_members(requirements: Mapping[str, Iterable[str]], present: Iterable[str]) -> dict[str, list[str]]:
    """Member name -> the missing modalities that keep it from running, for the members that cannot run."""
    present = list(present)
    lacking_by_name = {name: lacking(required, present) for name, required in requirements.items()}
    return {name: missing for name, missing in lacking_by_name.items() if missing}


def format_skipped(skipped: Mapping[str, Iterable[str]]) -> list[str]:
    """`member=MOD[,MOD]` words for the command line (parse_skipped reads them back)."""
    return [f"{name}={','.join(missing)}" for name, missing in skipped.items()]


def parse_skipped(words: Iterable[str]) -> dict[str, list[str]]:
    return {name: list(missing) for name, missing in (_name_and_modalities(w, "MEMBER") for w in words)}


def no_member_message(skipped: Mapping[str, Iterable[str]]) -> str:
    reasons = "; ".join(f"{name} needs {', '.join(MODALITY_NAMES[m] for m in missing)}"
                        for name, missing in skipped.items())
    return f"no ensemble member can run on the modalities present ({reasons}): nothing to segment"
