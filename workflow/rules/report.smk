# The report: each subject's ensemble uncertainty maps and QC flags, and the cohort's volume and QC tables.
REPORT = config["report"]
REPORT_FILES = step_files("report")


rule report:
    input:
        segmentation=str(step_files("fuse").segmentation),
        members=lambda wc: member_files(wc.subject),
        brain_mask=str(step_files("skullstrip").brain_mask),
    output:
        votes=str(REPORT_FILES.votes),
        disagreement=str(REPORT_FILES.disagreement),
        record=str(REPORT_FILES.record),
    params:
        out=lambda wc, output: Path(output.record).parent,
        names=lambda wc: " ".join(subject_members(wc.subject)),
        missing=lambda wc: " ".join(absent(subject_modalities(wc.subject))),
        convention=config["convention"],
        thresholds=" ".join(f"--{key.replace('_', '-')} {value}" for key, value in REPORT.items()),
    log:
        step_log("report"),
    benchmark:
        step_benchmark("report")
    threads: config["threads"]["report"]
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=10,
    container:
        config["containers"]["report"]
    shell:
        "bratsflow report --subject {wildcards.subject} --segmentation {input.segmentation}"
        " --members {input.members} --names {params.names} --brain-mask {input.brain_mask}"
        " --convention {params.convention} {params.thresholds} --missing-modalities {params.missing}"
        " --out {params.out} > {log} 2>&1"


rule report_cohort:
    input:
        expand(str(REPORT_FILES.record), subject=SUBJECTS),
    output:
        volumes=str(paths.cohort_file(RESULTS, "volumes.csv")),
        qc=str(paths.cohort_file(RESULTS, "qc.tsv")),
    log:
        step_log("report_cohort", paths.COHORT),
    benchmark:
        step_benchmark("report_cohort", paths.COHORT)
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    container:
        config["containers"]["report"]
    shell:
        "bratsflow report-cohort --volumes {output.volumes} --qc {output.qc} {input} > {log} 2>&1"


if FUSE_MEMBERS:

    deliver(
        REPORT_FILES.votes,
        REPORT_FILES.disagreement,
        paths.cohort_file(RESULTS, "volumes.csv"),
        paths.cohort_file(RESULTS, "qc.tsv"),
        records=[REPORT_FILES.record],
    )
