# bratsflow: BraTS-style brain-tumour MRI pipeline. Run: snakemake --cores N [--config samples=SHEET.tsv results=DIR]
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


# The character set of subject ids (workflow/schemas/samples.schema.yaml), one path segment. Not an alternation
# of the cohort's ids: Snakemake copies the constraint into every path pattern, so each file match scanned the
# whole cohort (1.3 times the planning time at 1,000 subjects, bench/dag_scale.py --alternation). An id outside
# the cohort fails in `subject_inputs`.
wildcard_constraints:
    subject=r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}",


include: "workflow/rules/demo.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/coregister.smk"
include: "workflow/rules/skullstrip.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/fuse.smk"
include: "workflow/rules/radiomics.smk"


# Everything a cohort run delivers; the manifest rule checksums them once they all exist.
FINAL_TARGETS = [
    expand(step_outputs("coregister", "{subject}"), subject=SUBJECTS),
    expand(step_outputs("skullstrip", "{subject}"), subject=SUBJECTS),
    expand(
        str(paths.step_image(RESULTS, "{subject}", "deface", "{modality}")),
        subject=SUBJECTS if config["deface"]["enabled"] else [],
        modality=MODALITIES,
    ),
    native_targets(),
    str(paths.cohort_file(RESULTS, "ingest.tsv")),
    # The fused segmentation, its radiomics and the cohort's feature tables once segment.members names an ensemble.
    expand(str(paths.fused_segmentation(RESULTS, "{subject}")), subject=SUBJECTS if FUSE_MEMBERS else []),
    expand(str(paths.radiomics_features(RESULTS, "{subject}")), subject=SUBJECTS if FUSE_MEMBERS else []),
    [str(paths.cohort_features(RESULTS, wide)) for wide in (False, True)] if FUSE_MEMBERS else [],
    expand(str(paths.provenance_file(RESULTS, "{subject}")), subject=SUBJECTS),
]


include: "workflow/rules/provenance.smk"


rule all:
    default_target: True
    input:
        FINAL_TARGETS,
        str(paths.manifest_file(RESULTS)),
