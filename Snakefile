# bratsflow: BraTS-style brain-tumour MRI pipeline. Run: snakemake --cores N [--config samples=SHEET.tsv results=DIR]
import re

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    subject="|".join(re.escape(s) for s in SUBJECTS),


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
