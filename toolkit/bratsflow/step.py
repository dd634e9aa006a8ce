"""The step contract: what every step's run records and how it writes its files.

A step builds one `StepRun`, reads its inputs through it (checksummed), times its phases with it, writes every
output through it (atomically, checksummed) and ends with `finish(...)`, which writes the step's one record. Every
record has the keys of `RECORD_KEYS`, so provenance, the cohort tables and the report read them without knowing the
step; what only one step knows (a registration's checks, a member's volumes) sits beside them under its own keys.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from .errors import InputError
from .io import atomic_write, save_dicom, save_figure, save_image, save_json, save_probabilities, save_table, sha256_file
from .provenance import Timer, environment

# Raised to 2 when a fixed key changes meaning; readers refuse records of another version.
RECORD_VERSION = 1
RECORD_KEYS = ("step", "record_version", "subject", "parameters", "inputs", "outputs", "models", "atlases",
               "timings_s", "environment")


class StepRun:
    """One run of `step` for one subject, whose record goes to `record` (a `paths.StepFiles` record path; None:
    the outputs are written and checksummed, but no record is kept, as for `bratsflow fuse` without --record).

    inputs / outputs: name -> {"path", "sha256", ...}; an output's path is relative to the record's folder when it
    lies inside it, so a results folder can move. models: name -> what identifies a model (checkpoint or image and
    their checksums). atlases: name -> {"source", "sha256"}."""

    def __init__(self, step: str, subject: str | None, record: str | Path | None, *,
                 parameters: Mapping[str, Any] | None = None) -> None:
        self.step = step
        self.subject = subject
        self.record = None if record is None else Path(record)
        self.parameters = dict(parameters or {})
        self.timer = Timer()
        self.inputs: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}
        self.models: dict[str, dict] = {}
        self.atlases: dict[str, dict] = {}

    def phase(self, name: str) -> AbstractContextManager:
        """Times a named phase (seconds add up under `timings_s`)."""
        return self.timer.phase(name)

    def add_inputs(self, files: Mapping[str, str | Path], **extra: Any) -> None:
        """Record input files with their checksums; `extra` goes into every entry (e.g. format="nifti")."""
        for name, path in files.items():
            path = Path(path)
            if not path.is_file():
                raise InputError(f"{self.step}: input {name} is not a file", subject=self.subject, file=path)
            self.inputs[name] = {"path": str(path), "sha256": sha256_file(path), **extra}

    def add_input(self, name: str, entry: Mapping[str, Any]) -> None:
        """An input described by the step itself (a DICOM folder's checksum, a converted series)."""
        self.inputs[name] = dict(entry)

    def add_model(self, name: str, **identity: Any) -> None:
        self.models[name] = identity

    def add_atlas(self, name: str, *, source: str | None, sha256: str | None) -> None:
        self.atlases[name] = {"source": source, "sha256": sha256}

    def _output(self, name: str, path: Path, **extra: Any) -> Path:
        shown = str(path)
        if self.record is not None and path.resolve().is_relative_to(self.record.parent.resolve()):
            shown = path.resolve().relative_to(self.record.parent.resolve()).as_posix()
        self.outputs[name] = {"path": shown, "sha256": sha256_file(path), **extra}
        return path

    def save_image(self, name: str, img, path: str | Path, **extra: Any) -> Path:
        return self._output(name, save_image(img, path), **extra)

    def save_table(self, name: str, table, path: str | Path) -> Path:
        return self._output(name, save_table(table, path))

    def save_probabilities(self, name: str, probabilities, path: str | Path) -> Path:
        return self._output(name, save_probabilities(probabilities, path))

    def save_figure(self, name: str, figure, path: str | Path, colours=()) -> Path:
        """A matplotlib figure as PNG (bratsflow.io.save_figure: `colours` are kept exactly)."""
        return self._output(name, save_figure(figure, path, colours))

    def save_dicom(self, name: str, dataset, path: str | Path, **extra: Any) -> Path:
        """A pydicom Dataset as a DICOM Part 10 file (bratsflow.io.save_dicom)."""
        return self._output(name, save_dicom(dataset, path), **extra)

    def copy_file(self, name: str, source: str | Path, path: str | Path) -> Path:
        """A file another tool wrote (a transform), copied into place atomically."""
        with atomic_write(path) as tmp:
            shutil.copyfile(source, tmp)
        return self._output(name, Path(path))

    def finish(self, **details: Any) -> dict:
        """Write the record: the fixed keys, then the step's own `details`."""
        if self.record is None:
            raise ValueError(f"{self.step}: this run keeps no record")
        clash = sorted(set(details) & set(RECORD_KEYS))
        if clash:
            raise ValueError(f"{self.step} record: {clash} are fixed keys of every record")
        record = {
            "step": self.step,
            "record_version": RECORD_VERSION,
            "subject": self.subject,
            "parameters": self.parameters,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "models": self.models,
            "atlases": self.atlases,
            **details,
            "timings_s": self.timer.seconds,
            "environment": environment(),
        }
        save_json(record, self.record)
        return record


def check_record(record: Any, file: str | Path, subject: str | None = None) -> dict:
    """A step record as `StepRun.finish` writes it, or an InputError naming what is wrong."""
    if not isinstance(record, dict):
        raise InputError("not a step record (a JSON object is expected)", subject=subject, file=file)
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise InputError(f"not a step record of this bratsflow: keys {missing} are missing (written by an older "
                         f"version? rerun the step)", subject=subject, file=file)
    if record["record_version"] != RECORD_VERSION:
        raise InputError(f"step record version {record['record_version']}, this bratsflow reads version "
                         f"{RECORD_VERSION}: rerun the step", subject=subject, file=file)
    return record


def read_record(path: str | Path, subject: str | None = None) -> dict:
    """A step record from its file (check_record), or an InputError naming the file and what is wrong."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable step record ({exc})", subject=subject, file=path) from None
    return check_record(record, path, subject)
