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


rule all:
    default_target: True
    input:
        expand(step_outputs("ingest", "{subject}"), subject=SUBJECTS),
        str(paths.cohort_file(RESULTS, "ingest.tsv")),
