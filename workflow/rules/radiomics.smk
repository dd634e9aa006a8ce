# Radiomics: pyradiomics features per tumour region × modality of each subject, and the cohort's tables.
RADIOMICS = config["radiomics"]


rule radiomics:
    input:
        unpack(
            subject_images(
                "skullstrip",
                brain_mask=step_files("skullstrip").brain_mask,
                segmentation=step_files("fuse").segmentation,
                params=RADIOMICS["params"],
            )
        ),
    output:
        table=str(step_files("radiomics").features()),
        csv=str(step_files("radiomics").features(".csv")),
        record=str(step_files("radiomics").record),
    params:
        images=modality_args,
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
        " {params.images} --brain-mask {input.brain_mask} --segmentation {input.segmentation} --convention {params.convention}"
        " --params {input.params} {params.filters} --out {params.out} > {log} 2>&1"


rule cohort_table:
    input:
        expand(str(step_files("radiomics").features()), subject=SUBJECTS),
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


if FUSE_MEMBERS:

    deliver(
        step_files("radiomics").features(),
        [str(paths.cohort_features(RESULTS, wide)) for wide in (False, True)],
        records=[step_files("radiomics").record],
    )
