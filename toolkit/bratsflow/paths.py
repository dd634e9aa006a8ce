"""The results layout, RESULTS/<subject>/<step>/… and RESULTS/cohort/…, and the synthetic cohort's layout,
ROOT/<subject>/anat/… and ROOT/derivatives/truth/<subject>/…: the only place that spells them."""

from __future__ import annotations

from pathlib import Path

COHORT = "cohort"
# The cohort's HTML report, RESULTS/report/: index.html, the cohort plots, subjects/<subject>.html.
REPORT_SITE = "report"
# Its plots: volumes and agreement per region, and headline radiomic features (with the radiomics table).
REPORT_PLOTS = ("volumes", "agreement", "radiomics")
# Per-subject (and cohort) folders of run-specific files: job logs and Snakemake's timing benchmarks.
LOGS = "logs"
BENCHMARKS = "benchmarks"
MANIFEST = "manifest.tsv"
# The report step's QC figures, RESULTS/<subject>/report/<name>.png (bratsflow.figures draws them).
FIGURES = ("overview", "brain_mask", "registration", "members")


class StepFiles:
    """The files of one step in one folder (RESULTS/<subject>/<step>/): the rules declare them and the step writes
    them through this same object, so a name is spelled once."""

    def __init__(self, folder: str | Path, step: str) -> None:
        self.folder = Path(folder)
        self.step = step

    def __repr__(self) -> str:
        return f"StepFiles({str(self.folder)!r}, {self.step!r})"

    def image(self, modality: str) -> Path:
        return self.folder / f"{modality}.nii.gz"

    @property
    def record(self) -> Path:
        return self.folder / f"{self.step}.json"

    def table(self, suffix: str = ".tsv") -> Path:
        """The step's own table, <step>.tsv (or .csv, .parquet): a step that writes one table needs no name here."""
        return self.folder / f"{self.step}{suffix}"

    @property
    def brain_mask(self) -> Path:
        """Skull stripping's brain mask; the skull-stripped images lie beside it."""
        return self.folder / "brain_mask.nii.gz"

    @property
    def transforms(self) -> Path:
        """Co-registration's transforms folder."""
        return self.folder / "transforms"

    def transform(self, moving: str, fixed: str) -> Path:
        return self.transforms / f"{moving}-to-{fixed}.mat"

    def member(self, name: str) -> Path:
        """One ensemble member's label map."""
        return self.folder / f"{name}.nii.gz"

    def member_record(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def member_probabilities(self, name: str) -> Path:
        """One ensemble member's probability maps (format: bratsflow.io.save_probabilities)."""
        return self.folder / f"{name}_probabilities.npz"

    @property
    def segmentation(self) -> Path:
        """The fused segmentation."""
        return self.folder / "segmentation.nii.gz"

    @property
    def votes(self) -> Path:
        """The report's vote fractions of the ensemble, one volume per region (WT, TC, ET)."""
        return self.folder / "votes.nii.gz"

    @property
    def disagreement(self) -> Path:
        """The report's disagreement map (entropy of the members' votes, bits)."""
        return self.folder / "disagreement.nii.gz"

    @property
    def probability_entropy(self) -> Path:
        """The report's entropy of the members' mean probabilities (bits), where members write probabilities."""
        return self.folder / "probability_entropy.nii.gz"

    @property
    def dicom_segmentation(self) -> Path:
        """The export step's DICOM Segmentation object of the fused segmentation."""
        return self.folder / "segmentation.dcm"

    @property
    def dicom_measurements(self) -> Path:
        """The export step's DICOM SR measurement report: the segmentation's volumes."""
        return self.folder / "measurements.dcm"

    def figure(self, name: str) -> Path:
        """One of the report's QC figures (FIGURES)."""
        if name not in FIGURES:
            raise ValueError(f"unknown figure {name!r}; the report draws {FIGURES}")
        return self.folder / f"{name}.png"

    def features(self, suffix: str = ".parquet") -> Path:
        """A subject's tidy feature table (`.parquet` or `.csv`)."""
        return self.folder / f"features{suffix}"


def step_dir(results: str | Path, subject: str, step: str) -> Path:
    return Path(results) / subject / step


def step_files(results: str | Path, subject: str, step: str) -> StepFiles:
    return StepFiles(step_dir(results, subject, step), step)


def step_image(results: str | Path, subject: str, step: str, modality: str) -> Path:
    return step_files(results, subject, step).image(modality)


def step_record(results: str | Path, subject: str, step: str) -> Path:
    return step_files(results, subject, step).record


def log_file(results: str | Path, subject: str, step: str) -> Path:
    return Path(results) / subject / LOGS / f"{step}.log"


def benchmark_file(results: str | Path, subject: str, step: str) -> Path:
    return Path(results) / subject / BENCHMARKS / f"{step}.tsv"


def cohort_file(results: str | Path, name: str) -> Path:
    return Path(results) / COHORT / name


def segment_member(results: str | Path, subject: str, member: str) -> Path:
    return step_files(results, subject, "segment").member(member)


def segment_record(results: str | Path, subject: str, member: str) -> Path:
    return step_files(results, subject, "segment").member_record(member)


def segment_probabilities(results: str | Path, subject: str, member: str) -> Path:
    return step_files(results, subject, "segment").member_probabilities(member)


def fused_segmentation(results: str | Path, subject: str) -> Path:
    return step_files(results, subject, "fuse").segmentation


def native_file(results: str | Path, subject: str, step: str, name: str, space: str) -> Path:
    """An atlas-space result mapped back into a modality's native space."""
    return Path(results) / subject / "native" / f"{step}-{name}_space-{space}.nii.gz"


def is_label_map(step: str, name: str) -> bool:
    """Segmentations and masks move between spaces with label-aware interpolation."""
    return step in ("segment", "fuse") or name.endswith("mask")


def brain_mask(results: str | Path, subject: str) -> Path:
    """The skull-stripping step's brain mask, in atlas space."""
    return step_files(results, subject, "skullstrip").brain_mask


def radiomics_features(results: str | Path, subject: str, suffix: str = ".parquet") -> Path:
    return step_files(results, subject, "radiomics").features(suffix)


def cohort_features(results: str | Path, wide: bool = False) -> Path:
    """The cohort's radiomics tables: long (Parquet, one row per feature) or wide (CSV, one row per subject)."""
    return cohort_file(results, "features_wide.csv" if wide else "features.parquet")


def cohort_volumes(results: str | Path) -> Path:
    """The report's volume table, one row per subject."""
    return cohort_file(results, "volumes.csv")


def cohort_qc(results: str | Path) -> Path:
    """The report's QC table, one row per subject."""
    return cohort_file(results, "qc.tsv")


def report_index(results: str | Path) -> Path:
    """The cohort report's first page."""
    return Path(results) / REPORT_SITE / "index.html"


def report_page(results: str | Path, subject: str) -> Path:
    """One subject's page of the cohort report."""
    return Path(results) / REPORT_SITE / "subjects" / f"{subject}.html"


def report_plot(results: str | Path, name: str) -> Path:
    """A cohort plot of the cohort report."""
    return Path(results) / REPORT_SITE / f"{name}.png"


def provenance_file(results: str | Path, subject: str) -> Path:
    """Every step's record of one subject, gathered (bratsflow provenance)."""
    return Path(results) / subject / "provenance.json"


def manifest_file(results: str | Path) -> Path:
    """Checksums of the results that must be reproducible (bratsflow manifest / verify)."""
    return Path(results) / MANIFEST


# The BIDS suffix of each modality's image in the synthetic cohort. Reading a BIDS tree accepts more spellings
# (bratsflow.cohort).
BIDS_SUFFIX = {"t1": "T1w", "t1c": "ce-gadolinium_T1w", "t2": "T2w", "flair": "FLAIR"}


def bids_image_path(root: str | Path, subject: str, modality: str) -> Path:
    """A synthetic subject's image of one modality (ROOT/<subject>/anat/)."""
    return Path(root) / subject / "anat" / f"{subject}_{BIDS_SUFFIX[modality]}.nii.gz"


def truth_dataset(root: str | Path) -> Path:
    """The synthetic cohort's ground truth, a BIDS derivative dataset."""
    return Path(root) / "derivatives" / "truth"


class TruthFiles:
    """The ground truth of one synthetic subject (ROOT/derivatives/truth/<subject>/): `bratsflow synth` writes it
    through this object and every reader finds it here, so a name is spelled once."""

    def __init__(self, root: str | Path, subject: str) -> None:
        self.root = Path(root)
        self.subject = subject

    def __repr__(self) -> str:
        return f"TruthFiles({str(self.root)!r}, {self.subject!r})"

    @property
    def folder(self) -> Path:
        return truth_dataset(self.root) / self.subject

    def _file(self, name: str) -> Path:
        return self.folder / f"{self.subject}_{name}"

    @property
    def labels(self) -> Path:
        """The label map on the atlas grid."""
        return self._file("space-atlas_dseg.nii.gz")

    @property
    def brain_mask(self) -> Path:
        """The brain mask on the atlas grid."""
        return self._file("space-atlas_desc-brain_mask.nii.gz")

    @property
    def labels_t1c(self) -> Path:
        """The label map on the native T1c grid."""
        return self._file("space-T1c_dseg.nii.gz")

    @property
    def deformation(self) -> Path:
        """The deformation's B-spline coefficients (NumPy .npz)."""
        return self._file("desc-deformation_coefficients.npz")

    @property
    def record(self) -> Path:
        """Transforms, acquisition protocols and lesion parameters (JSON); written last, so it marks a whole
        subject."""
        return self._file("truth.json")

    def transform(self, modality: str) -> Path:
        """The ITK transform from the atlas to one modality's native space."""
        return self._file(f"from-atlas_to-{BIDS_SUFFIX[modality]}_mode-image_xfm.txt")
