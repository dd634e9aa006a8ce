# bratsflow: BraTS-style brain-tumour MRI pipeline. Run: snakemake --cores N [--config samples=SHEET.tsv results=DIR]
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


# The character set of subject ids (common.smk: SUBJECT_ID), one path segment. Not an alternation of the cohort's
# ids: Snakemake copies the constraint into every path pattern, so each file match scanned the
# whole cohort (1.3 times the planning time at 1,000 subjects, bench/dag_scale.py --alternation). An id outside
# the cohort fails in `subject_inputs`.
wildcard_constraints:
    subject=SUBJECT_ID,


include: "workflow/rules/demo.smk"


# One rule file per step (workflow/steps.py: the keys of config.yaml's `containers:`, in pipeline order); each
# declares what it delivers (common.smk: deliver).
for step in STEPS:

    include: f"workflow/rules/{step.name}.smk"


include: "workflow/rules/provenance.smk"


rule all:
    default_target: True
    input:
        FINAL_TARGETS,
        str(paths.manifest_file(RESULTS)),
