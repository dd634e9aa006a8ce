# Ingest: validate, convert DICOM, reorient; one job per subject.


for modality_set in MODALITY_SETS:

    rule:
        name:
            modality_set.rule("ingest")
        input:
            subject_inputs,
        output:
            **step_images("ingest", modalities=modality_set.modalities),
            record=str(step_files("ingest").record),
        wildcard_constraints:
            subject=modality_set.subject,
        params:
            source=cohort_source_args(),
            out=lambda wc, output: Path(output.record).parent,
            orientation=config["ingest"]["orientation"],
            spacing=config["ingest"]["spacing_range_mm"],
            policy=MISSING_POLICY,
            needs=" ".join(f"--need {need}" for need in NEEDS),
            dicom_rules=config["dicom"]["rules"],
            dicom_tie=config["dicom"]["on_tie"],
        log:
            step_log("ingest"),
        benchmark:
            step_benchmark("ingest")
        threads: config["threads"]["ingest"]
        resources:
            mem_mb=2000,
            runtime=10,
        container:
            config["containers"]["ingest"]
        shell:
            "bratsflow --threads {threads} ingest --subject {wildcards.subject} {params.source}"
            " --out {params.out} --orientation {params.orientation}"
            " --min-spacing {params.spacing[0]} --max-spacing {params.spacing[1]}"
            " --missing-modalities {params.policy} {params.needs}"
            " --dicom-rules {params.dicom_rules} --dicom-tie {params.dicom_tie} > {log} 2>&1"


rule ingest_table:
    input:
        expand(str(step_files("ingest").record), subject=SUBJECTS),
    output:
        str(paths.cohort_file(RESULTS, "ingest.tsv")),
    log:
        str(paths.cohort_file(RESULTS, "logs/ingest_table.log")),
    benchmark:
        str(paths.cohort_file(RESULTS, "benchmarks/ingest_table.tsv"))
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    container:
        config["containers"]["ingest"]
    shell:
        "bratsflow ingest-table --out {output} {input} > {log} 2>&1"


deliver(paths.cohort_file(RESULTS, "ingest.tsv"), records=[step_files("ingest").record])
