"""Exception types for problems a user can fix; the CLI turns them into one line on stderr."""

from __future__ import annotations

from pathlib import Path


class BratsflowError(Exception):
    """Base class: carries the subject and the file the problem is about, when known."""

    def __init__(self, reason: str, *, subject: str | None = None, file: str | Path | None = None,
                 modality: str | None = None):
        self.reason = reason
        self.subject = subject
        self.file = None if file is None else str(file)
        self.modality = modality
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.subject:
            where.append(f"subject {self.subject}")
        if self.modality:
            where.append(self.modality)
        if self.file:
            where.append(f"file {self.file}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason


class InputError(BratsflowError):
    """An input image, folder or sample sheet is missing, unreadable or implausible."""


class ConfigError(BratsflowError):
    """A configuration value or sample sheet does not follow its schema."""


class RegistrationError(BratsflowError):
    """A registration ran but its result is not trustworthy (similarity too low after registration)."""


class ModelError(BratsflowError):
    """A trained model is missing, incomplete, or its files do not match their recorded checksums."""


class OutputError(BratsflowError):
    """A result cannot be written (disk full, no permission); any earlier file of that name is left as it was."""
