"""The cohort's HTML report: RESULTS/report/index.html (a sortable, filterable table of every subject and the
cohort's plots) and one page per subject, RESULTS/report/subjects/<subject>.html (figures, QC flags with reasons
and thresholds, the members' agreement, the BraTS metrics against a ground truth where there is one,
provenance).

Static and self-contained: inline CSS and script, no network; every link and image is relative, so the results
folder can be moved or zipped whole. The pages and plots are results listed in the manifest, so they hold nothing
that changes between identical runs: no dates, timings, absolute paths or host names.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from html import escape
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from . import paths
from .errors import InputError
from .io import atomic_write
from .labels import REGIONS
from .step import read_record

# The subject figures the report step draws, in the order the page shows them; other PNGs follow by name.
FIGURE_CAPTIONS = {
    "overview": "The four skull-stripped atlas-space images through the tumour, the fused segmentation's sub-regions "
                "bordered (NETC red, SNFH green, ET yellow). Radiological convention.",
    "brain_mask": "The brain mask (cyan) on each co-registered image, skull on: it should follow the brain's surface.",
    "registration": "T1c's edges (magenta) over T1, T2 and FLAIR, and the atlas brain (cyan) on T1c: the same "
                    "anatomy should line up in every row.",
    "members": "Each member's segmentation beside the fused one, and the members' disagreement (0 unanimous, "
               "1 bit an even split).",
}
# A few radiomic features worth a glance across the cohort: wide-table column -> axis label.
HEADLINE_FEATURES = {
    "WT_original_shape_Sphericity": "WT sphericity",
    "WT_original_shape_Maximum3DDiameter": "WT largest 3-D diameter (mm)",
    "ET_t1c_original_firstorder_Mean": "ET mean T1c (brain SD)",
    "WT_flair_original_firstorder_Mean": "WT mean FLAIR (brain SD)",
}
# Software versions that can differ between identical runs on different hosts are left off the pages.
HOST_KEYS = ("platform",)
# Record values naming a file (and every absolute path): shown by file name only, so the pages do not depend on
# where the results, models or atlases lie.
PATH_KEYS = ("path", "model", "source", "file")


@dataclass(frozen=True)
class Subject:
    """What the pages show of one subject: its report record, its provenance (None before it is gathered) and
    its figures (paths of PNG files in its report folder, in display order)."""

    id: str
    record: dict
    provenance: dict | None
    figures: tuple[Path, ...]

    @property
    def flags(self) -> list[dict]:
        return self.record["flags"]


@dataclass(frozen=True)
class Plot:
    """A cohort plot: its file in the report folder and its caption."""

    path: Path
    caption: str


# ---------------------------------------------------------------------------------------------------------------
# Reading the results.

def figure_order(files: list[Path]) -> list[Path]:
    """The report step's figures in its order (paths.FIGURES), then any others by name."""
    rank = {name: i for i, name in enumerate(paths.FIGURES)}
    return sorted(files, key=lambda f: (rank.get(f.stem, len(rank)), f.name))


def load_subject(results: str | Path, subject: str) -> Subject:
    record_path = paths.step_record(results, subject, "report")
    if not record_path.is_file():
        raise InputError("no report record (run the report step first)", subject=subject, file=record_path)
    record = read_record(record_path, subject)
    provenance_path = paths.provenance_file(results, subject)
    provenance = json.loads(provenance_path.read_text()) if provenance_path.is_file() else None
    figures = figure_order(list(paths.step_dir(results, subject, "report").glob("*.png")))
    return Subject(subject, record, provenance, tuple(figures))


def report_subjects(results: str | Path) -> list[str]:
    """The subjects under RESULTS with a report record, sorted."""
    return sorted(p.parent.parent.name for p in Path(results).glob(str(paths.step_record("", "*", "report"))))


def load_features(results: str | Path) -> "pd.DataFrame | None":
    import pandas as pd

    wide = paths.cohort_features(results, wide=True)
    return pd.read_csv(wide) if wide.is_file() else None


# ---------------------------------------------------------------------------------------------------------------
# Formatting.

def _number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _href(path: Path, start: Path) -> str:
    """A relative, URL-quoted link from a page's folder to a file, both under RESULTS."""
    return escape(quote(PurePosixPath(os.path.relpath(path, start)).as_posix()))


def _shown(key: str, value) -> str:
    """A record value as text: files by name only (also inside nested values), JSON for nested values."""
    value = _without_folders(key, value)
    if value is None:
        return "–"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def _without_folders(key: str, value):
    if isinstance(value, dict):
        return {k: _without_folders(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_folders(key, v) for v in value]
    if isinstance(value, str) and "://" not in value:
        path = PurePosixPath(value)
        if key in PATH_KEYS or path.is_absolute():
            return path.name
    return value


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _page(title: str, body: str, script: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
            + (f"<script>{script}</script>\n" if script else "") + "</body>\n</html>\n")


def _flag_badges(flags: list[dict]) -> str:
    if not flags:
        return '<span class="ok">none</span>'
    return " ".join(f'<span class="flag" title="{escape(f["reason"])}">{escape(f["flag"])}</span>' for f in flags)


# ---------------------------------------------------------------------------------------------------------------
# The index page.

def volume_columns(subjects: list[Subject]) -> list[str]:
    """The volume keys of the records (regions then the brain), in the first record's order."""
    seen: dict[str, None] = {}
    for subject in subjects:
        seen.update(dict.fromkeys(subject.record["volumes_ml"]))
    return list(seen)


def index_page(subjects: list[Subject], plots: list[Plot], tables: list[Path], site: Path) -> str:
    """index.html: the subject table (click a header to sort, type to filter), links to the cohort `tables` and
    the cohort plots."""
    volumes = volume_columns(subjects)
    scored = any(s.record.get("metrics") for s in subjects)
    header = (['<th data-type="text">subject</th>']
              + [f'<th data-type="number">{escape(v)} (mL)</th>' for v in volumes]
              + [f'<th data-type="number">{escape(r)} Dice</th>' for r in REGIONS]
              + (['<th data-type="number">WT Dice (truth)</th>'] if scored else [])
              + ['<th data-type="number">flags</th>'])
    rows = [_index_row(s, volumes, site, scored) for s in subjects]
    flagged = sum(1 for s in subjects if s.flags)
    links = ", ".join(f'<a href="{_href(t, site)}">{escape(t.name)}</a>' for t in tables)
    figures = "".join(f'<figure><img src="{_href(p.path, site)}" alt="{escape(p.caption)}">'
                      f"<figcaption>{escape(p.caption)}</figcaption></figure>" for p in plots)
    body = (f"<header><h1>Cohort report</h1><p>{len(subjects)} subjects, {flagged} flagged by QC. "
            "Agreement: the ensemble members' mean pairwise Dice per region."
            + (f" Tables: {links}." if links else "") + "</p></header>\n"
            '<section><div class="controls">'
            '<label>Filter <input id="filter" type="search" placeholder="subject or flag"></label>'
            '<label><input id="flagged" type="checkbox"> flagged only</label>'
            f'<span id="count">{len(subjects)} of {len(subjects)} shown</span></div>\n'
            f'<div class="scroll"><table id="subjects" class="data"><thead><tr>{"".join(header)}</tr></thead>\n'
            f'<tbody>\n{"".join(rows)}</tbody></table></div></section>\n'
            f'<section><h2>Cohort</h2><div class="plots">{figures}</div></section>')
    return _page("bratsflow cohort report", body, INDEX_SCRIPT)


def _index_row(subject: Subject, volumes: list[str], site: Path, scored: bool) -> str:
    record = subject.record
    link = _href(paths.report_page(site.parent, subject.id), site)
    cells = [f'<td data-value="{escape(subject.id)}"><a href="{link}">{escape(subject.id)}</a></td>']
    for key in volumes:
        value = record["volumes_ml"].get(key)
        cells.append(_number_cell(value))
    for region in REGIONS:
        dice = record["agreement"][region]["mean_pairwise_dice"]
        cells.append(_number_cell(dice, 3))
    if scored:
        truth_dice = subject.record.get("metrics", {}).get("fused", {}).get("WT", {}).get("dice")
        cells.append(_number_cell(truth_dice, 3))
    names = " ".join(f["flag"] for f in subject.flags)
    cells.append(f'<td data-value="{len(subject.flags)}">{_flag_badges(subject.flags)}</td>')
    return (f'<tr data-subject="{escape(subject.id)}" data-flags="{escape(names)}">'
            + "".join(cells) + "</tr>\n")


def _number_cell(value: float | None, digits: int = 2) -> str:
    """A cell the index's script sorts by `value`: an empty data-value when there is none, as the script expects."""
    return f'<td data-value="{"" if value is None else repr(value)}">{_number(value, digits)}</td>'


# ---------------------------------------------------------------------------------------------------------------
# The subject pages.

def subject_page(subject: Subject, page: Path, index: Path) -> str:
    """subjects/<subject>.html (at `page`, linking back to `index`): figures, flags with their reasons and
    thresholds, agreement, provenance."""
    record = subject.record
    here = page.parent
    figures = "".join(
        f'<figure><img src="{_href(f, here)}" alt="{escape(FIGURE_CAPTIONS.get(f.stem, f.stem))}">'
        f"<figcaption>{escape(FIGURE_CAPTIONS.get(f.stem, f.name))}</figcaption></figure>"
        for f in subject.figures) or "<p>No figures in this subject's report folder.</p>"
    flags = (_table(["flag", "reason"], [[f'<span class="flag">{escape(f["flag"])}</span>', escape(f["reason"])]
                                         for f in subject.flags])
             if subject.flags else '<p class="ok">No QC flag fired.</p>')
    thresholds = _table(["threshold", "value"], [[escape(f"report.{k}"), escape(_shown(k, v))]
                                                 for k, v in record["parameters"].items() if k != "convention"])
    volumes = _table(["region", "volume (mL)"], [[escape(k), _number(v)] for k, v in record["volumes_ml"].items()])
    agreement = _table(["region", "mean pairwise Dice", "disputed (mL)"],
                       [[escape(r), _number(a["mean_pairwise_dice"], 3), _number(a["disputed_ml"], 3)]
                        for r, a in record["agreement"].items()])
    members = ", ".join(escape(m) for m in record["members"])
    checks = (f"Tumour outside the brain mask: {100 * record['tumour_outside_brain']:.1f} %. "
              f"Brain mask at the grid's border: {record['mask_border_contact_cm2']:.2f} cm².")
    body = (f'<header><p><a href="{_href(index, here)}">← cohort</a></p><h1>{escape(subject.id)}</h1>'
            f'<p>Label convention {escape(str(record["parameters"].get("convention", "–")))}; '
            f"{len(record['members'])} ensemble members: {members}.</p></header>\n"
            f'<section class="columns"><div><h2>QC flags</h2>{flags}<p>{checks}</p><h3>Thresholds</h3>{thresholds}'
            f'</div><div><h2>Volumes</h2>{volumes}</div><div><h2>Members\' agreement</h2>{agreement}</div></section>\n'
            + metrics_html(record.get("metrics", {})) + probability_html(record.get("probability_entropy")) +
            f'<section><h2>Figures</h2><div class="figures">{figures}</div></section>\n'
            f"<section><h2>Provenance</h2>{provenance_html(subject)}</section>")
    return _page(f"{subject.id} – bratsflow report", body)


# The metrics the subject page shows of each segmentation and region (bratsflow.metrics): record key -> header.
METRIC_COLUMNS = {"dice": "Dice", "hd95": "HD95 (mm)", "lesion_dice": "lesion-wise Dice",
                  "lesion_hd95": "lesion-wise HD95 (mm)", "sensitivity": "sensitivity", "specificity": "specificity"}


def metrics_html(metrics: dict) -> str:
    """The BraTS metrics of the fused segmentation and each member against the ground truth, or nothing without
    a truth."""
    if not metrics:
        return ""
    rows = [[escape(name), escape(region), *(_number(scores[k], 3) for k in METRIC_COLUMNS)]
            for name, by_region in metrics.items() for region, scores in by_region.items()]
    return ("<section><h2>Against the ground truth</h2><p>BraTS metrics per region (bratsflow metrics); 'fused' is "
            "the ensemble's segmentation.</p>"
            + _table(["segmentation", "region", *METRIC_COLUMNS.values()], rows, "data") + "</section>\n")


def probability_html(entropy: dict | None) -> str:
    """Per region the volume where the members' mean probability is uncertain, or nothing where no member of the
    configuration writes probabilities."""
    if entropy is None:
        return ""
    without = (f" Without probabilities: {', '.join(escape(m) for m in entropy['without_probabilities'])}."
               if entropy["without_probabilities"] else "")
    if entropy["uncertain_ml"] is None:
        return ("<section><h2>Uncertainty of the mean probability</h2><p>No member that ran on this subject writes "
                f"probabilities: the map is unknown (NaN).{without}</p></section>\n")
    rows = [[escape(region), _number(volume, 3)] for region, volume in entropy["uncertain_ml"].items()]
    return ("<section><h2>Uncertainty of the mean probability</h2><p>The binary entropy of each region's mean "
            f"probability over {', '.join(escape(m) for m in entropy['members'])} (report/probability_entropy.nii.gz: "
            f"the largest of the three); uncertain where it reaches {entropy['uncertain_bits']:g} bit, a mean "
            f"probability between about 0.11 and 0.89.{without}</p>"
            + _table(["region", "uncertain (mL)"], rows) + "</section>\n")


def provenance_html(subject: Subject) -> str:
    """Software versions, parameters of each step, models and atlases with checksums, input checksums."""
    provenance = subject.provenance
    if provenance is None:
        steps = {"report/report": subject.record}
        software = {k: v for k, v in subject.record["environment"].items() if k != "packages"}
        software.update(subject.record["environment"].get("packages", {}))
        note = "<p>No provenance.json yet: the report step's own record.</p>"
        inputs, models, atlases, containers = {}, {}, {}, {}
    else:
        steps, software, note = provenance["steps"], provenance["software"], ""
        inputs, models, atlases = provenance["inputs"], provenance["models"], provenance["atlases"]
        containers = provenance.get("containers", {}).get("images", {})
    parts = [note, "<h3>Software</h3>",
             _table(["package", "version"], [[escape(k), escape(_shown(k, v))] for k, v in software.items()
                                             if k not in HOST_KEYS], "compact")]
    if inputs:
        parts += ["<h3>Inputs</h3>", _table(["modality", "file", "format", "SHA-256"], [
            [escape(m), escape(_shown("path", e.get("path"))), escape(_shown("format", e.get("format"))),
             f'<code>{escape(_shown("sha256", e.get("sha256")))}</code>'] for m, e in inputs.items()])]
    if models:
        parts += ["<h3>Models</h3>", _table(["model", "identity"], [
            [escape(name), _key_values(identity)] for name, identity in models.items()])]
    if atlases:
        parts += ["<h3>Atlases</h3>", _table(["atlas", "source", "SHA-256"], [
            [escape(name), escape(_shown("source", a.get("source"))),
             f'<code>{escape(_shown("sha256", a.get("sha256")))}</code>'] for name, a in atlases.items()])]
    if containers:
        parts += ["<h3>Container images</h3>", _table(["rule", "image"], [
            [escape(k), f"<code>{escape(str(v))}</code>"] for k, v in containers.items()], "compact")]
    parts += ["<h3>Parameters per step</h3>", _table(["step", "parameters"], [
        [escape(key), _key_values(record.get("parameters", {}))] for key, record in steps.items()])]
    return "".join(parts)


def _key_values(mapping: dict) -> str:
    if not mapping:
        return "–"
    return "<dl>" + "".join(f"<dt>{escape(str(k))}</dt><dd><code>{escape(_shown(k, v))}</code></dd>"
                            for k, v in mapping.items()) + "</dl>"


# ---------------------------------------------------------------------------------------------------------------
# The cohort plots.

def cohort_plots(subjects: list[Subject], features: "pd.DataFrame | None", site: Path) -> list[Plot]:
    """Volumes per region, agreement per region and (with the radiomics table) headline features, as PNG."""
    volumes = {key: [s.record["volumes_ml"][key] for s in subjects if key in s.record["volumes_ml"]]
               for key in volume_columns(subjects)}
    brain = {"brain": volumes.pop("brain", [])}
    dice = {r: [s.record["agreement"][r]["mean_pairwise_dice"] for s in subjects] for r in REGIONS}
    min_agreement = subjects[0].record["parameters"].get("min_agreement") if subjects else None
    plots = [Plot(_strip_plot({"tumour volume (mL)": volumes, "brain volume (mL)": brain},
                              paths.report_plot(site.parent, "volumes")),
                  "Volume of each tumour region and of the brain mask, one dot per subject."),
             Plot(_strip_plot({"members' mean pairwise Dice": dice}, paths.report_plot(site.parent, "agreement"),
                              limits=(0, 1.02), line=min_agreement),
                  "The ensemble members' agreement per region, one dot per subject"
                  + ("; dashed: report.min_agreement (applies to WT)." if min_agreement is not None else "."))]
    if features is not None:
        plots.append(Plot(_strip_plot(headline_features(features), paths.report_plot(site.parent, "radiomics")),
                          "Headline radiomic features (cohort/features_wide.csv), one dot per subject."))
    return plots


def headline_features(features: "pd.DataFrame") -> dict[str, dict[str, list[float]]]:
    """HEADLINE_FEATURES that the wide table has, else its first few feature columns (other radiomics
    parameters), as plot panels."""
    chosen = {label: column for column, label in HEADLINE_FEATURES.items() if column in features.columns}
    if not chosen:
        numeric = [c for c in features.select_dtypes("number").columns if c != "tumour"]
        chosen = {c: c for c in numeric[:len(HEADLINE_FEATURES)]}
    return {label: {"": features[column].dropna().tolist()} for label, column in chosen.items()} or {
        "no radiomic features": {}}


def _strip_plot(panels: dict[str, dict[str, list[float]]], out: Path, *, limits=None, line=None) -> Path:
    """Side by side panels (y label -> groups), each group a box plot with every value drawn as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    widths = [max(len(groups), 1) for groups in panels.values()]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(3.2, 1.0 * sum(widths) + 1.3 * len(panels)), 3.2),
                             squeeze=False, gridspec_kw={"width_ratios": widths})
    for ax, (ylabel, groups) in zip(axes[0], panels.items()):
        for position, values in enumerate(groups.values()):
            if values:
                ax.boxplot([values], positions=[position], widths=0.5, showfliers=False)
                # Evenly spread offsets, not random jitter: the same values draw the same picture.
                offsets = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
                ax.plot(position + offsets, values, "o", color="#2b6cb0", alpha=0.6, markersize=4)
        ax.set_xticks(range(len(groups)), list(groups))
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_ylabel(ylabel)
        if limits:
            ax.set_ylim(*limits)
        if line is not None:
            ax.axhline(line, color="#c53030", linestyle="--", linewidth=1)
    fig.tight_layout()
    with atomic_write(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Writing.

def build(results: str | Path, subjects: list[str] | None = None) -> list[Path]:
    """Write the cohort report under RESULTS/report/ for `subjects` (default: every subject with a report
    record); return the files written."""
    results = Path(results)
    loaded = [load_subject(results, s) for s in (subjects if subjects is not None else report_subjects(results))]
    index = paths.report_index(results)
    plots = cohort_plots(loaded, load_features(results), index.parent)
    # The report step's cohort tables are linked when they exist (the rule asks for them; by hand they may not).
    tables = [t for t in (paths.cohort_volumes(results), paths.cohort_qc(results)) if t.is_file()]
    pages = {index: index_page(loaded, plots, tables, index.parent)}
    for subject in loaded:
        page = paths.report_page(results, subject.id)
        pages[page] = subject_page(subject, page, index)
    for path, text in pages.items():
        with atomic_write(path) as tmp:
            tmp.write_bytes(text.encode("utf-8"))
    return [p.path for p in plots] + list(pages)


STYLE = """
:root { --fg: #1a202c; --muted: #4a5568; --line: #e2e8f0; --accent: #2b6cb0; --warn: #c53030; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg);
       margin: 0 auto; padding: 1rem 1.5rem 3rem; max-width: 1280px; }
h1 { font-size: 1.6rem; margin: .2rem 0; } h2 { font-size: 1.2rem; margin: 1.6rem 0 .5rem; }
h3 { font-size: 1rem; margin: 1rem 0 .4rem; }
a { color: var(--accent); }
table { border-collapse: collapse; margin: .3rem 0; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .6rem; text-align: left; vertical-align: top; }
table.data td:not(:first-child):not(:last-child), table.data th:not(:first-child):not(:last-child)
  { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { max-height: 70vh; overflow: auto; border-bottom: 1px solid var(--line); }
table.data { width: 100%; margin: 0; }
table.data td:not(:last-child) { white-space: nowrap; }
table.data th { cursor: pointer; user-select: none; white-space: nowrap; background: #f7fafc; position: sticky;
                top: 0; }
table.data th[aria-sort=ascending]::after { content: " ▲"; }
table.data th[aria-sort=descending]::after { content: " ▼"; }
table.data tbody tr:hover { background: #ebf8ff; }
.controls { display: flex; gap: 1.5rem; align-items: center; margin: .5rem 0; flex-wrap: wrap; }
.controls input[type=search] { padding: .25rem .4rem; width: 16rem; }
#count { color: var(--muted); }
.flag { display: inline-block; background: #fed7d7; color: var(--warn); border-radius: 3px; padding: 0 .35rem;
        margin: 1px 0; font-size: .85em; }
.ok { color: #2f855a; }
.plots, .figures { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
figure { margin: 0; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
.figures figure { flex: 1 1 560px; }
.figures img { width: 100%; }
figcaption { color: var(--muted); font-size: .9em; max-width: 60ch; }
.columns { display: flex; gap: 3rem; flex-wrap: wrap; }
.columns > div { flex: 0 1 auto; max-width: 34rem; }
.columns p { max-width: 34rem; }
dl { margin: 0; display: grid; grid-template-columns: max-content 1fr; gap: 0 .8rem; }
dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
code { font-size: .85em; overflow-wrap: anywhere; }
table.compact td { padding: .1rem .6rem; }
"""

INDEX_SCRIPT = """
(function () {
  var table = document.getElementById("subjects");
  var body = table.tBodies[0];
  var filter = document.getElementById("filter");
  var flagged = document.getElementById("flagged");
  var count = document.getElementById("count");
  var rows = Array.prototype.slice.call(body.rows);
  function key(row, column, type) {
    var value = row.cells[column].getAttribute("data-value");
    if (type !== "number") return value.toLowerCase();
    return value === "" ? null : parseFloat(value);
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      var type = th.getAttribute("data-type");
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (o) { o.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var sorted = rows.slice().sort(function (a, b) {
        var x = key(a, column, type), y = key(b, column, type);
        if (x === y) return 0;
        if (x === null) return 1;  // missing values last either way
        if (y === null) return -1;
        return (x < y ? -1 : 1) * (ascending ? 1 : -1);
      });
      sorted.forEach(function (row) { body.appendChild(row); });
    });
  });
  function apply() {
    var text = filter.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (row) {
      var haystack = (row.getAttribute("data-subject") + " " + row.getAttribute("data-flags")).toLowerCase();
      var visible = haystack.indexOf(text) !== -1 && (!flagged.checked || row.getAttribute("data-flags") !== "");
      row.hidden = !visible;
      if (visible) shown += 1;
    });
    count.textContent = shown + " of " + rows.length + " shown";
  }
  filter.addEventListener("input", apply);
  flagged.addEventListener("change", apply);
  apply();
})();
"""
