"""The results manifest, RESULTS/manifest.tsv: path (relative to RESULTS), SHA-256 and size of every result that
must be reproducible, so two runs can be compared and a results folder re-checked later (`bratsflow verify`).

Listed: every file a step writes (images, label maps, masks, probability maps, transforms, tables, and whatever a
new step adds: pictures, pages, DICOM), so a step's results must be byte-for-byte reproducible. Left out on
purpose, because they differ between identical runs: job logs and Snakemake's benchmarks (timings), the JSON
records (timings, absolute paths, host), and hidden files (a killed writer's temporary file, Snakemake's markers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from . import paths
from .errors import InputError
from .io import atomic_write, sha256_file

RECORD_SUFFIX = ".json"
RUN_SPECIFIC_FOLDERS = (paths.LOGS, paths.BENCHMARKS)
HEADER = ("path", "sha256", "bytes")


def is_result(relative: PurePosixPath) -> bool:
    """Whether a file (path relative to RESULTS) belongs in the manifest."""
    if any(part.startswith(".") for part in relative.parts):
        return False
    # RESULTS/<subject or cohort>/logs/… and …/benchmarks/…
    if len(relative.parts) > 2 and relative.parts[1] in RUN_SPECIFIC_FOLDERS:
        return False
    if relative == PurePosixPath(paths.MANIFEST):
        return False
    return not relative.name.endswith(RECORD_SUFFIX)


def result_files(results: str | Path) -> list[str]:
    """The manifest's files under RESULTS as sorted relative POSIX paths."""
    results = Path(results)
    found = []
    for folder, subfolders, files in os.walk(results):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        for name in files:
            relative = PurePosixPath((Path(folder) / name).relative_to(results).as_posix())
            if is_result(relative):
                found.append(str(relative))
    return sorted(found)


def compute(results: str | Path) -> dict[str, tuple[str, int]]:
    results = Path(results)
    if not results.is_dir():
        raise InputError("results folder does not exist", file=results)
    return {rel: (sha256_file(results / rel), (results / rel).stat().st_size) for rel in result_files(results)}


def write(results: str | Path) -> tuple[Path, int]:
    """Write RESULTS/manifest.tsv; return its path and the number of files listed."""
    entries = compute(results)
    out = paths.manifest_file(results)
    lines = ["\t".join(HEADER)] + [f"{rel}\t{sha}\t{size}" for rel, (sha, size) in entries.items()]
    with atomic_write(out) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return out, len(entries)


def read(manifest: str | Path) -> dict[str, tuple[str, int]]:
    manifest = Path(manifest)
    if not manifest.is_file():
        raise InputError("no manifest: write one with `bratsflow manifest RESULTS` (rule all does at its end)",
                         file=manifest)
    lines = manifest.read_text().splitlines()
    if not lines or tuple(lines[0].split("\t")) != HEADER:
        raise InputError(f"not a bratsflow manifest (the first line must be {chr(9).join(HEADER)!r})", file=manifest)
    entries = {}
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != 3 or len(cells[1]) != 64 or not cells[2].isdigit():
            raise InputError(f"line {number} is not 'path, SHA-256, bytes': {line!r}", file=manifest)
        entries[cells[0]] = (cells[1], int(cells[2]))
    return entries


@dataclass
class Verification:
    manifest: Path
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.unlisted)

    def lines(self) -> list[str]:
        report = [f"missing: {p}" for p in self.missing] + [f"changed: {p}" for p in self.changed]
        report += [f"unlisted: {p}" for p in self.unlisted]
        verdict = "all match" if self.ok else (f"{len(self.missing)} missing, {len(self.changed)} changed, "
                                               f"{len(self.unlisted)} unlisted")
        return report + [f"{self.checked} files checked against {self.manifest}: {verdict}"]


def verify(results: str | Path, manifest: str | Path | None = None) -> Verification:
    """Re-check RESULTS against its manifest (or another run's, to compare two runs): files missing, files whose
    content differs, and result files the manifest does not list."""
    results = Path(results)
    manifest = Path(manifest) if manifest else paths.manifest_file(results)
    expected = read(manifest)
    present = set(result_files(results))
    report = Verification(manifest)
    for rel, (sha, size) in expected.items():
        if rel not in present:
            report.missing.append(rel)
            continue
        report.checked += 1
        file = results / rel
        if file.stat().st_size != size or sha256_file(file) != sha:
            report.changed.append(rel)
    report.unlisted = sorted(present - set(expected))
    return report
