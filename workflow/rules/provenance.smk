# Provenance per subject (every step's record gathered) and the results manifest, the last step of `rule all`.
import json
import shlex

from snakemake.settings.types import DeploymentMethod

CONTAINERS_USED = DeploymentMethod.APPTAINER in workflow.deployment_settings.deployment_method


deliver(paths.provenance_file(RESULTS, "{subject}"))


rule provenance:
    input:
        subject_records,
    output:
        str(paths.provenance_file(RESULTS, "{subject}")),
    params:
        containers=shlex.quote(json.dumps(config["containers"], sort_keys=True)),
        used="--containers-used" if CONTAINERS_USED else "",
    log:
        step_log("provenance"),
    benchmark:
        step_benchmark("provenance")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    container:
        config["containers"]["ingest"]
    shell:
        "bratsflow provenance --subject {wildcards.subject} --out {output}"
        " --containers {params.containers} {params.used} {input} > {log} 2>&1"


rule manifest:
    input:
        FINAL_TARGETS,
    output:
        str(paths.manifest_file(RESULTS)),
    params:
        results=lambda wc, output: Path(output[0]).parent,
    log:
        step_log("manifest", paths.COHORT),
    benchmark:
        step_benchmark("manifest", paths.COHORT)
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    container:
        config["containers"]["ingest"]
    shell:
        "bratsflow manifest {params.results} > {log} 2>&1"
