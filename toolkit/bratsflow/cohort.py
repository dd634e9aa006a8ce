"""Cohort discovery and validation: a sample sheet or a BIDS tree becomes a list of Subject records.

Sheet-level problems (unreadable or malformed sheet, bad or duplicated ids) stop the run before anything
starts: they are errors in the user's description of the cohort. Per-subject problems (a missing or ambiguous
modality) are recorded on the subject and raised when that subject is ingested, so the rest of the cohort runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jsonschema
import pandas as pd
import yaml

from .availability import check_policy
from .dicom_study import NO_SERIES
from .errors import ConfigError, InputError
from .modalities import MODALITIES, MODALITY_NAMES
from .paths import COHORT, REPORT_SITE, TruthFiles

# Top-level folders of RESULTS beside the subjects'.
RESERVED_IDS = {COHORT, REPORT_SITE}


@dataclass(frozen=True)
class Subject:
    subject_id: str
    images: dict[str, Path]
    # modality -> why it cannot be used (missing, ambiguous); raised at ingest, not at discovery
    problems: dict[str, str] = field(default_factory=dict)
    # The modalities with no image at all (an empty sheet cell, no BIDS file): what `run-available` leaves out.
    # A named file that does not exist, or two candidates, stay problems under every policy.
    missing: frozenset[str] = frozenset()
    # A ground-truth label map on the atlas grid (sheet column `truth`, a BIDS tree's derivatives/truth): the report
    # scores the members and the fused segmentation against it.
    truth: Path | None = None
    # Where the truth was named, for the message when its file is missing.
    truth_source: str = ""
    # A DICOM study folder (sheet column `dicom`): the modalities without an image of their own come from it.
    study: Path | None = None
    # modality -> the study's series to use (SeriesNumber or SeriesInstanceUID; sheet columns `<modality>_series`)
    series: dict[str, str] = field(default_factory=dict)
    # Which of the folder's studies (StudyInstanceUID, AccessionNumber or StudyID; sheet column `dicom_study`).
    study_selector: str = ""

    def from_study(self, modality: str) -> bool:
        """True when the modality's image is to be found in the subject's DICOM study."""
        return self.study is not None and modality not in self.images and modality not in self.problems

    def truth_problem(self) -> str | None:
        """Why the named truth cannot be used, checked when asked: the demo rule writes the demo cohort's truth
        after the sheet is read."""
        if self.truth is None or self.truth.is_file():
            return None
        return f"ground truth {self.truth} ({self.truth_source}) does not exist"

    def image(self, modality: str) -> Path:
        if modality in self.problems:
            raise InputError(self.problems[modality], subject=self.subject_id, modality=modality)
        return self.images[modality]

    def modalities(self, policy: str) -> tuple[str, ...]:
        """The modalities the pipeline runs this subject on: all four under `fail` (ingest reports what is
        missing), those with an image under `run-available`."""
        if check_policy(policy) == "fail":
            return MODALITIES
        return tuple(m for m in MODALITIES if m not in self.missing)


@lru_cache(maxsize=1)
def samples_schema() -> dict:
    return yaml.safe_load(resources.files("bratsflow").joinpath("schemas/samples.schema.yaml").read_text())


def validate_subject_id(subject_id: str, *, where: str = "") -> None:
    pattern = samples_schema()["properties"]["subject_id"]["pattern"]
    if not re.search(pattern, subject_id) or len(subject_id) > 64:
        raise ConfigError(
            f"subject id {subject_id!r}{where} is not allowed: use 1–64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..' or path separators")
    if subject_id in RESERVED_IDS:
        raise ConfigError(f"subject id {subject_id!r}{where} is reserved for cohort-level results")


def read_sheet(path: str | Path) -> pd.DataFrame:
    """Read a tab-separated (or, by extension, comma-separated) sheet with every cell as a string."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("sample sheet does not exist", file=path)
    separator = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        sheet = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False,
                            skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise ConfigError("sample sheet is empty", file=path) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ConfigError(f"sample sheet is malformed ({exc})", file=path) from None
    sheet.columns = [c.strip() for c in sheet.columns]
    required = samples_schema()["required"]
    # With a study column the study supplies every modality, so a sheet may leave out the modality columns.
    if "dicom" in sheet.columns:
        required = [c for c in required if c not in MODALITIES]
    missing = [c for c in required if c not in sheet.columns]
    if missing:
        raise ConfigError(f"sample sheet lacks column(s) {missing}; it needs {required} (tab-separated) and has "
                          f"{list(sheet.columns)}", file=path)
    if sheet.empty:
        raise ConfigError("sample sheet has a header but no subjects", file=path)
    sheet = sheet.apply(lambda column: column.str.strip())
    for modality in MODALITIES:
        if modality not in sheet.columns:
            sheet[modality] = ""
    return sheet


def load_sheet(path: str | Path) -> list[Subject]:
    path = Path(path)
    sheet = read_sheet(path)
    validator = jsonschema.Draft202012Validator(samples_schema())
    for row_number, row in enumerate(sheet.to_dict("records"), start=2):
        validate_subject_id(row["subject_id"], where=f" (row {row_number})")
        for error in validator.iter_errors(row):
            raise ConfigError(f"row {row_number}: {error.message}", file=path)
    duplicated = sorted(set(sheet.loc[sheet["subject_id"].duplicated(), "subject_id"]))
    if duplicated:
        raise ConfigError(f"duplicated subject id(s) {duplicated}", file=path)

    subjects = []
    for row_number, row in enumerate(sheet.to_dict("records"), start=2):
        study = _sheet_path(path, row["dicom"]) if row.get("dicom") else None
        series = {m: row[f"{m}_series"] for m in MODALITIES if row.get(f"{m}_series")}
        images, problems = {}, {}
        for modality in MODALITIES:
            value = row[modality]
            if value:
                images[modality] = _sheet_path(path, value)
            elif series.get(modality) == NO_SERIES:
                problems[modality] = (f"no {MODALITY_NAMES[modality]} image: column {modality}_series of row "
                                      f"{row_number} is {NO_SERIES} in the sample sheet {path}")
            elif study is None:
                problems[modality] = (f"no {MODALITY_NAMES[modality]} image: column {modality} of row {row_number} "
                                      f"is empty in the sample sheet {path}")
        truth = _sheet_path(path, row["truth"]) if row.get("truth") else None
        subjects.append(Subject(row["subject_id"], images, problems, frozenset(problems), truth,
                                f"column truth of row {row_number} of the sample sheet {path}", study,
                                {m: v for m, v in series.items() if m not in problems and m not in images},
                                row.get("dicom_study", "")))
    return subjects


def _sheet_path(sheet: Path, value: str) -> Path:
    """A path named in the sheet; a relative one is resolved against the sheet's folder."""
    named = Path(value).expanduser()
    # normpath keeps "config/../demo/x" spelled "demo/x", as the rule that makes x names it
    return named if named.is_absolute() else Path(os.path.normpath(sheet.parent / named))


# BIDS anat suffixes -> modality. A T1w with a contrast-agent entity (ce-...) is the post-contrast T1.
_BIDS_NAME = re.compile(r"^(?P<stem>sub-[A-Za-z0-9]+(?:_ses-[A-Za-z0-9]+)?(?:_[a-z]+-[A-Za-z0-9]+)*)_"
                        r"(?P<suffix>T1w|T2w|FLAIR)\.nii(?:\.gz)?$")


def _bids_modality(name: str) -> str | None:
    match = _BIDS_NAME.match(name)
    if not match:
        return None
    suffix = match["suffix"]
    if suffix == "T1w":
        return "t1c" if re.search(r"_ce-[A-Za-z0-9]+", match["stem"]) else "t1"
    return {"T2w": "t2", "FLAIR": "flair"}[suffix]


def discover_bids(root: str | Path) -> list[Subject]:
    """Subjects (and sessions, as `sub-X_ses-Y`) of a BIDS raw tree; one file per modality is expected. A
    subject's atlas-space truth in derivatives/truth (the synthetic cohort's, bratsflow.paths.TruthFiles) is used
    when present."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError("BIDS root is not a folder", file=root)
    anat_dirs = sorted(root.glob("sub-*/anat")) + sorted(root.glob("sub-*/ses-*/anat"))
    if not anat_dirs:
        raise ConfigError("no sub-*/anat or sub-*/ses-*/anat folders found: not a BIDS raw tree", file=root)
    subjects = []
    for anat in anat_dirs:
        session = anat.parent.name if anat.parent.name.startswith("ses-") else None
        subject_dir = anat.parent.parent if session else anat.parent
        sid = subject_dir.name + (f"_{session}" if session else "")
        validate_subject_id(sid, where=f" (from {anat})")
        found: dict[str, list[Path]] = {m: [] for m in MODALITIES}
        for file in sorted(anat.iterdir()):
            modality = _bids_modality(file.name)
            if modality:
                found[modality].append(file)
        images, problems, missing = {}, {}, set()
        for modality, files in found.items():
            if len(files) == 1:
                images[modality] = files[0]
            elif not files:
                problems[modality] = f"no {MODALITY_NAMES[modality]} image in {anat}"
                missing.add(modality)
            else:
                names = ", ".join(f.name for f in files)
                problems[modality] = (f"{len(files)} candidate {MODALITY_NAMES[modality]} images in {anat} "
                                      f"({names}); list the one to use in a sample sheet")
        # The synthetic cohort's layout (bratsflow.paths.TruthFiles); only sessionless subjects can match it.
        truth = TruthFiles(root, sid).labels
        subjects.append(Subject(sid, images, problems, frozenset(missing), truth if truth.is_file() else None))
    return subjects


def load_cohort(*, samples: str | Path | None = None, bids: str | Path | None = None) -> list[Subject]:
    if bids:
        return discover_bids(bids)
    if samples:
        return load_sheet(samples)
    raise ConfigError("no cohort given: set a sample sheet (samples=SHEET.tsv) or a BIDS root (bids=ROOT)")


def find_subject(subjects: list[Subject], subject_id: str) -> Subject:
    for subject in subjects:
        if subject.subject_id == subject_id:
            return subject
    raise ConfigError(f"subject {subject_id!r} is not in the cohort")
