"""Study-level DICOM input: sort a PACS export's series into T1, T1c, T2 and FLAIR (README, DICOM studies).

A study folder is scanned header by header (pixels unread), its series are classified by ordered rules kept in a
YAML file (config/dicom_rules.yaml; the package holds the same defaults), and one series is chosen per modality by
a fixed preference. Every decision, with its reason, goes into the ingest record, so a reader of the results can
tell which acquisition became which image and why the others did not.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, InputError
from .io import sha256_file
from .modalities import MODALITIES, MODALITY_NAMES

DEFAULT_RULES = Path(str(resources.files("bratsflow") / "params" / "dicom_rules.yaml"))
# fail: two series the preference cannot separate stop the subject; latest: the later one (a repeat) is taken.
TIE_POLICIES = ("fail", "latest")
DEFAULT_TIE = "fail"
# The config keys whose defaults these are (tests/test_defaults.py checks config.yaml and the schema agree).
CONFIG_DEFAULTS = {"dicom.on_tie": DEFAULT_TIE}
CLASSES = (*MODALITIES, "ignore")
# A sheet's `<modality>_series` cell with this value: the study has no usable series of that modality.
NO_SERIES = "none"

TEXT_TAGS = ("SeriesDescription", "ProtocolName", "ContrastBolusAgent", "ScanningSequence", "SequenceVariant",
             "SequenceName", "MRAcquisitionType", "ImageType", "Modality", "SOPClassUID")
NUMBER_TAGS = ("EchoTime", "RepetitionTime", "InversionTime", "FlipAngle", "SliceThickness")
# Read from each file besides the rule tags: grouping, ordering and the choice between candidates.
_OTHER_TAGS = ("StudyDate", "StudyTime", "StudyID", "AccessionNumber", "StudyDescription", "SeriesDate", "SeriesTime",
               "AcquisitionTime")
_CONDITION_KEYS = {"not", "present", "min", "max"}


@dataclass(frozen=True)
class Rule:
    name: str
    target: str
    why: str
    match: dict[str, Any]

    def matches(self, tags: dict[str, Any]) -> bool:
        return all(_holds(condition, tags.get(tag)) for tag, condition in self.match.items())


def _holds(condition: Any, value: Any) -> bool:
    if isinstance(condition, list):
        return all(_holds(c, value) for c in condition)
    if isinstance(condition, str):
        return re.search(condition, value or "", re.IGNORECASE) is not None
    if "present" in condition and bool(value not in (None, "")) != condition["present"]:
        return False
    if "not" in condition and re.search(condition["not"], value or "", re.IGNORECASE):
        return False
    if "min" in condition or "max" in condition:
        if not isinstance(value, float):
            return False
        if value < condition.get("min", value) or value > condition.get("max", value):
            return False
    return True


def load_rules(path: str | Path | None = None) -> list[Rule]:
    """The ordered rules of a rules file (default: bratsflow's), or a ConfigError naming the rule at fault."""
    path = Path(path) if path is not None else DEFAULT_RULES
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"DICOM rules file is not readable YAML ({exc})", file=path) from None
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list) or not data["rules"]:
        raise ConfigError("DICOM rules file needs a non-empty list `rules:`", file=path)
    rules = []
    for number, spec in enumerate(data["rules"], start=1):
        where = f"rule {number}" + (f" ({spec['name']})" if isinstance(spec, dict) and "name" in spec else "")
        if not isinstance(spec, dict) or set(spec) != {"name", "class", "why", "match"}:
            raise ConfigError(f"{where}: a rule has exactly the keys name, class, why and match", file=path)
        if spec["class"] not in CLASSES:
            raise ConfigError(f"{where}: class {spec['class']!r} is not one of {list(CLASSES)}", file=path)
        if not isinstance(spec["match"], dict) or not spec["match"]:
            raise ConfigError(f"{where}: match needs at least one condition", file=path)
        for tag, condition in spec["match"].items():
            _check_condition(tag, condition, f"{where}, {tag}", path)
        rules.append(Rule(str(spec["name"]), spec["class"], str(spec["why"]), spec["match"]))
    return rules


def _check_condition(tag: str, condition: Any, where: str, path: Path) -> None:
    if tag not in (*TEXT_TAGS, *NUMBER_TAGS, "text"):
        raise ConfigError(f"{where}: unknown tag (use one of {['text', *TEXT_TAGS, *NUMBER_TAGS]})", file=path)
    if isinstance(condition, list) and condition:
        for item in condition:
            _check_condition(tag, item, where, path)
        return
    if isinstance(condition, dict) and condition and set(condition) <= _CONDITION_KEYS:
        patterns = [condition["not"]] if "not" in condition else []
        if any(not isinstance(condition.get(k, 0), (int, float)) for k in ("min", "max")):
            raise ConfigError(f"{where}: min and max are numbers", file=path)
    elif isinstance(condition, str):
        patterns = [condition]
    else:
        raise ConfigError(f"{where}: a condition is a regular expression, {{not: REGEX}}, {{present: BOOL}}, "
                          f"{{min: X, max: Y}} or a list of these", file=path)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise ConfigError(f"{where}: {pattern!r} is not a regular expression ({exc})", file=path) from None


@dataclass
class Series:
    uid: str
    study_uid: str
    number: int | None
    tags: dict[str, Any]
    other: dict[str, str]
    files: list[tuple[int, Path]] = field(default_factory=list)
    target: str = "ignore"
    rule: str = ""
    why: str = ""

    @property
    def description(self) -> str:
        return self.tags["SeriesDescription"] or self.tags["ProtocolName"]

    @property
    def is_3d(self) -> bool:
        return self.tags["MRAcquisitionType"].upper() == "3D"

    @property
    def thickness(self) -> float | None:
        return self.tags["SliceThickness"]

    def sorted_files(self) -> list[Path]:
        return [path for _, path in sorted(self.files, key=lambda item: (item[0], item[1]))]

    def label(self) -> str:
        thickness = "slice thickness unknown" if self.thickness is None else f"{self.thickness:g} mm slices"
        return (f"series {self.number} ({self.description!r}, UID {self.uid}, {thickness}, "
                f"{'3-D' if self.is_3d else '2-D'}, {len(self.files)} images)")

    def summary(self) -> dict[str, Any]:
        return {"uid": self.uid, "number": self.number, "description": self.tags["SeriesDescription"],
                "protocol": self.tags["ProtocolName"], "images": len(self.files),
                "acquisition": "3D" if self.is_3d else "2D", "slice_thickness_mm": self.thickness,
                "class": self.target, "rule": self.rule, "rule_why": self.why}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _number(value: Any) -> float | None:
    try:
        return float(value[0] if type(value).__name__ == "MultiValue" else value)
    except (TypeError, ValueError, IndexError):
        return None


def scan(folder: Path, subject: str | None = None) -> tuple[list[Series], int]:
    """The DICOM series under `folder` (every subfolder), and how many files were not DICOM and skipped."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    series: dict[str, Series] = {}
    skipped = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            skipped += 1
            continue
        uid = _text(ds.get("SeriesInstanceUID"))
        if not uid:
            skipped += 1
            continue
        if uid not in series:
            tags: dict[str, Any] = {tag: _text(ds.get(tag)) for tag in TEXT_TAGS}
            tags.update({tag: _number(ds.get(tag)) for tag in NUMBER_TAGS})
            tags["text"] = f"{tags['SeriesDescription']} {tags['ProtocolName']}".strip()
            number = _number(ds.get("SeriesNumber"))
            series[uid] = Series(uid, _text(ds.get("StudyInstanceUID")), None if number is None else int(number),
                                 tags, {tag: _text(ds.get(tag)) for tag in _OTHER_TAGS})
        instance = _number(ds.get("InstanceNumber"))
        series[uid].files.append((0 if instance is None else int(instance), path))
    if not series:
        raise InputError(f"no DICOM series in the study folder ({skipped} files, none DICOM)", subject=subject,
                         file=folder)
    return sorted(series.values(), key=lambda s: (s.study_uid, s.number or 0, s.uid)), skipped


def classify(series: list[Series], rules: list[Rule]) -> None:
    for item in series:
        rule = next((r for r in rules if r.matches(item.tags)), None)
        if rule is None:
            item.target, item.rule, item.why = "ignore", "", "no rule matched"
        else:
            item.target, item.rule, item.why = rule.target, rule.name, rule.why


def _study_key(item: Series) -> str:
    return item.other["StudyDate"] + item.other["StudyTime"].split(".")[0].ljust(6, "0")


@dataclass
class StudyChoice:
    """What a study folder gave: one series per modality it could decide, or why not."""

    folder: Path
    rules_file: Path
    tie: str
    study: dict[str, Any]
    other_studies: list[dict[str, Any]]
    series: list[Series]
    skipped_files: int
    chosen: dict[str, Series] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "rules": {"file": str(self.rules_file),
                                                       "sha256": sha256_file(self.rules_file)},
                "on_tie": self.tie, "files_not_dicom": self.skipped_files, "study": self.study,
                "other_studies": self.other_studies, "modalities": self.decisions,
                "series": [s.summary() for s in self.series]}


def choose_study(folder: Path, *, subject: str | None = None, rules_file: str | Path | None = None,
                 tie: str = DEFAULT_TIE, study: str = "", overrides: dict[str, str] | None = None,
                 modalities: tuple[str, ...] = MODALITIES) -> StudyChoice:
    """Scan `folder`, pick its study (the latest, or the one `study` names by StudyInstanceUID, AccessionNumber or
    StudyID), classify the study's series and choose one per modality in `modalities`. `overrides`: modality ->
    SeriesNumber or SeriesInstanceUID (a sample sheet's `<modality>_series`), which skips the rules for it.
    A study-level problem raises InputError; a modality-level one lands in `problems`."""
    if not folder.is_dir():
        raise InputError("the DICOM study folder does not exist (or is not a folder)", subject=subject, file=folder)
    rules_path = Path(rules_file) if rules_file else DEFAULT_RULES
    rules = load_rules(rules_path)
    everything, skipped = scan(folder, subject)
    studies: dict[str, list[Series]] = {}
    for item in everything:
        studies.setdefault(item.study_uid, []).append(item)
    described = {uid: _describe_study(members) for uid, members in studies.items()}
    if study:
        picked = [uid for uid, d in described.items() if study in (uid, d["accession"], d["study_id"])]
        if len(picked) != 1:
            raise InputError(f"column dicom_study names {study!r}, which {'several' if picked else 'none'} of the "
                             f"folder's studies match: {_list_studies(described)}", subject=subject, file=folder)
        chosen_uid, why = picked[0], "named by column dicom_study of the sample sheet"
    elif len(studies) == 1:
        chosen_uid, why = next(iter(studies)), "the only study in the folder"
    else:
        latest = max(_study_key(s[0]) for s in studies.values())
        tied = [uid for uid, members in studies.items() if _study_key(members[0]) == latest]
        if len(tied) > 1:
            raise InputError(f"{len(tied)} studies share the latest StudyDate/StudyTime ({_list_studies(described)});"
                             f" name one in the sample sheet's column dicom_study (its StudyInstanceUID, "
                             f"AccessionNumber or StudyID)", subject=subject, file=folder)
        chosen_uid, why = tied[0], f"the latest (StudyDate/StudyTime) of {len(studies)} studies in the folder"
    others = [{**d, "why": "not chosen: " + ("another study is named by column dicom_study" if study
                                             else "an earlier study")}
              for uid, d in described.items() if uid != chosen_uid]
    series = studies[chosen_uid]
    classify(series, rules)
    choice = StudyChoice(folder, rules_path, tie, {**described[chosen_uid], "why": why}, others, series, skipped)
    for modality in modalities:
        selector = (overrides or {}).get(modality, "")
        if selector:
            _choose_named(choice, modality, selector)
        else:
            _choose_by_rules(choice, modality)
    return choice


def _describe_study(members: list[Series]) -> dict[str, Any]:
    other = members[0].other
    return {"uid": members[0].study_uid, "date": other["StudyDate"], "time": other["StudyTime"],
            "description": other["StudyDescription"], "accession": other["AccessionNumber"],
            "study_id": other["StudyID"], "series_count": len(members)}


def _list_studies(described: dict[str, dict]) -> str:
    return "; ".join(f"{d['uid']} ({d['date']} {d['time']}, accession {d['accession'] or '-'}, "
                     f"StudyID {d['study_id'] or '-'}, {d['description']!r})" for d in described.values())


def _choose_named(choice: StudyChoice, modality: str, selector: str) -> None:
    column = f"{modality}_series"
    if selector.isdigit():
        found = [s for s in choice.series if s.number == int(selector)]
    else:
        found = [s for s in choice.series if s.uid == selector]
    if len(found) != 1:
        what = "no series" if not found else f"{len(found)} series"
        choice.problems[modality] = (
            f"column {column} names {selector!r}, and {what} of the chosen study match (a SeriesNumber or a "
            f"SeriesInstanceUID); its series: {'; '.join(s.label() for s in choice.series)}")
        return
    chosen = found[0]
    choice.chosen[modality] = chosen
    choice.decisions[modality] = {
        "series": chosen.uid, "number": chosen.number, "description": chosen.description,
        "why": f"named by column {column} of the sample sheet ({selector})",
        "rejected": [{"series": s.uid, "number": s.number, "description": s.description,
                      "why": f"a {MODALITY_NAMES[modality]} candidate by rule {s.rule}; column {column} names "
                             f"another series"}
                     for s in choice.series if s.target == modality and s is not chosen]}


# The preference between candidates, best first: a 3-D acquisition, then thinner slices, then more images.
def _preference(item: Series) -> tuple[bool, float, int]:
    return (not item.is_3d, item.thickness if item.thickness is not None else float("inf"), -len(item.files))


def _lateness(item: Series) -> tuple[int, str]:
    return (item.number or 0, item.other["AcquisitionTime"] or item.other["SeriesTime"])


def _mm(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g} mm"


def _why_not(item: Series, chosen: Series, tie: str) -> str:
    if item.is_3d != chosen.is_3d:
        return "2-D; the chosen series is 3-D"
    if item.thickness != chosen.thickness:
        return f"{_mm(item.thickness)} slices; the chosen series' are {_mm(chosen.thickness)}"
    if len(item.files) != len(chosen.files):
        return f"{len(item.files)} images; the chosen series has {len(chosen.files)}"
    return "ties with the chosen series, which is later (on_tie: latest)" if tie == "latest" else "ties"


def _choose_by_rules(choice: StudyChoice, modality: str) -> None:
    name = MODALITY_NAMES[modality]
    candidates = [s for s in choice.series if s.target == modality]
    if not candidates:
        listing = "; ".join(f"{s.label()}: {s.target} ({s.why})" for s in choice.series)
        choice.problems[modality] = (
            f"no series of the study is classified as {name} by the rules ({choice.rules_file}); its series: "
            f"{listing}. Name one in the sample sheet's column {modality}_series (SeriesNumber or "
            f"SeriesInstanceUID), or write {NO_SERIES} there when the study has none")
        return
    best = min(map(_preference, candidates))
    tied = [s for s in candidates if _preference(s) == best]
    if len(tied) > 1 and choice.tie == "fail":
        choice.problems[modality] = (
            f"{len(tied)} series could be the {name} image and the choice rule (3-D over 2-D, then thinner "
            f"slices, then more images) cannot tell them apart: {'; '.join(s.label() for s in tied)}. Name the "
            f"one to use in the sample sheet's column {modality}_series (its SeriesNumber or SeriesInstanceUID), "
            f"or set dicom.on_tie: latest in the config")
        return
    chosen = max(tied, key=_lateness)
    if len(candidates) == 1:
        why = f"the only {name} candidate"
    elif len(tied) > 1:
        why = f"the latest of {len(tied)} equally preferred {name} candidates (on_tie: latest)"
    else:
        why = f"preferred of {len(candidates)} {name} candidates (3-D over 2-D, then thinner slices, then more " \
              f"images)"
    choice.chosen[modality] = chosen
    choice.decisions[modality] = {
        "series": chosen.uid, "number": chosen.number, "description": chosen.description,
        "why": f"{why}; classified by rule {chosen.rule} ({chosen.why})",
        "rejected": [{"series": s.uid, "number": s.number, "description": s.description,
                      "why": _why_not(s, chosen, choice.tie)} for s in candidates if s is not chosen]}


def files_sha256(files: list[Path], root: Path) -> str:
    """A checksum of exactly these files: their names relative to `root` and their contents, in sorted order."""
    digest = hashlib.sha256()
    for file in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(file.relative_to(root).as_posix().encode())
        digest.update(bytes.fromhex(sha256_file(file)))
    return digest.hexdigest()


def link_series(item: Series, target: Path) -> Path:
    """The series' files, and only those, linked into the fresh folder `target` (the user's folder is never
    written): dcm2niix then sees one series."""
    target.mkdir(parents=True)
    for index, path in enumerate(item.sorted_files()):
        (target / f"{index:05d}_{path.name}").symlink_to(path.resolve())
    return target
