# Radiomics: pyradiomics features per tumour region × modality of each subject, and the cohort's tables.
RADIOMICS = config["radiomics"]


rule radiomics:
    input:
        images=step_outputs("skullstrip"),
        brain_mask=str(paths.brain_mask(RESULTS, "{subject}")),
        segmentation=str(paths.fused_segmentation(RESULTS, "{subject}")),
        params=RADIOMICS["params"],
    output:
        table=str(paths.radiomics_features(RESULTS, "{subject}")),
        csv=str(paths.radiomics_features(RESULTS, "{subject}", ".csv")),
        record=str(paths.step_record(RESULTS, "{subject}", "radiomics")),
    params:
        out=lambda wc, output: Path(output.record).parent,
        convention=config["convention"],
        filters="--filters " + " ".join(RADIOMICS["filters"]) if RADIOMICS["filters"] else "",
    log:
        step_log("radiomics"),
    benchmark:
        step_benchmark("radiomics")
    threads: config["threads"]["radiomics"]
    resources:
        mem_mb=lambda wc, threads, attempt: (2000 + 1000 * threads) * attempt,
        runtime=30 if RADIOMICS["filters"] else 10,
    container:
        config["containers"]["radiomics"]
    shell:
        "bratsflow --threads {threads} radiomics --subject {wildcards.subject}"
        " --t1 {input.images[0]} --t1c {input.images[1]} --t2 {input.images[2]} --flair {input.images[3]}"
        " --brain-mask {input.brain_mask} --segmentation {input.segmentation} --convention {params.convention}"
        " --params {input.params} {params.filters} --out {params.out} > {log} 2>&1"


rule cohort_table:
    input:
        expand(str(paths.radiomics_features(RESULTS, "{subject}")), subject=SUBJECTS),
    output:
        long=str(paths.cohort_features(RESULTS)),
        wide=str(paths.cohort_features(RESULTS, wide=True)),
    log:
        str(paths.cohort_file(RESULTS, "logs/cohort_table.log")),
    benchmark:
        str(paths.cohort_file(RESULTS, "benchmarks/cohort_table.tsv"))
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=10,
    container:
        config["containers"]["radiomics"]
    shell:
        "bratsflow cohort-table --long {output.long} --wide {output.wide} {input} > {log} 2>&1"
