# The report: each subject's ensemble uncertainty maps, QC flags and QC figures, the cohort's volume and QC
# tables, and the cohort's HTML report (RESULTS/report/). The figures go into `snakemake --report` too, one
# caption each (workflow/report/<figure>.rst).
REPORT = config["report"]
REPORT_FILES = step_files("report")


rule report:
    input:
        segmentation=str(step_files("fuse").segmentation),
        members=lambda wc: member_files(wc.subject),
        probabilities=lambda wc: member_files(wc.subject, probabilities=True),
        brain_mask=str(step_files("skullstrip").brain_mask),
        coregister_record=str(step_files("coregister").record),
        skullstrip_record=str(step_files("skullstrip").record),
        # The figures' images: skull-stripped (beside the brain mask) and co-registered (skull on).
        stripped=lambda wc: list(subject_images("skullstrip")(wc).values()),
        coregistered=lambda wc: list(subject_images("coregister")(wc).values()),
        truth=subject_truth,
    output:
        votes=str(REPORT_FILES.votes),
        disagreement=str(REPORT_FILES.disagreement),
        record=str(REPORT_FILES.record),
        **(
            {"probability_entropy": str(REPORT_FILES.probability_entropy)}
            if PROBABILITY_MEMBERS
            else {}
        ),
        **{
            name: report(
                str(REPORT_FILES.figure(name)),
                category="QC figures",
                subcategory="{subject}",
                caption=f"../report/{name}.rst",
                labels={"subject": "{subject}", "figure": name},
            )
            for name in paths.FIGURES
        },
    params:
        out=lambda wc, output: Path(output.record).parent,
        names=lambda wc: " ".join(subject_members(wc.subject)),
        missing=lambda wc: " ".join(absent(subject_modalities(wc.subject))),
        convention=config["convention"],
        truth=lambda wc, input: f"--truth {input.truth}" if input.truth else "",
        probabilities=lambda wc, input: report_probability_args(wc.subject, input.probabilities),
        thresholds=" ".join(f"--{key.replace('_', '-')} {value}" for key, value in REPORT.items()),
        skullstrip_dir=lambda wc, input: Path(input.brain_mask).parent,
        coregister_dir=lambda wc, input: Path(input.coregistered[0]).parent,
        atlas=config["coregister"]["atlas"],
        atlas_mask=(
            f"--atlas-mask {config['coregister']['atlas_mask']}"
            if config["coregister"]["atlas_mask"]
            else ""
        ),
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
        " --members {input.members} --names {params.names} {params.probabilities} --brain-mask {input.brain_mask}"
        " --coregister-record {input.coregister_record} --skullstrip-record {input.skullstrip_record}"
        " --convention {params.convention} {params.thresholds} --missing-modalities {params.missing}"
        " --skullstrip-dir {params.skullstrip_dir}"
        " --coregister-dir {params.coregister_dir} --atlas {params.atlas} {params.atlas_mask} {params.truth}"
        " --out {params.out} > {log} 2>&1"


rule report_cohort:
    input:
        expand(str(REPORT_FILES.record), subject=SUBJECTS),
    output:
        volumes=str(paths.cohort_volumes(RESULTS)),
        qc=str(paths.cohort_qc(RESULTS)),
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


rule report_html:
    input:
        records=expand(str(REPORT_FILES.record), subject=SUBJECTS),
        provenance=expand(str(paths.provenance_file(RESULTS, "{subject}")), subject=SUBJECTS),
        volumes=str(paths.cohort_volumes(RESULTS)),
        qc=str(paths.cohort_qc(RESULTS)),
        features=str(paths.cohort_features(RESULTS, wide=True)),
        figures=expand([str(REPORT_FILES.figure(name)) for name in paths.FIGURES], subject=SUBJECTS),
    output:
        index=str(paths.report_index(RESULTS)),
        pages=expand(str(paths.report_page(RESULTS, "{subject}")), subject=SUBJECTS),
        plots=[str(paths.report_plot(RESULTS, name)) for name in paths.REPORT_PLOTS],
    params:
        results=lambda wc, output: Path(output.index).parent.parent,
        subjects=" ".join(SUBJECTS),
    log:
        step_log("report_html", paths.COHORT),
    benchmark:
        step_benchmark("report_html", paths.COHORT)
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=10,
    container:
        config["containers"]["report"]
    shell:
        "bratsflow report-html {params.results} --subjects {params.subjects} > {log} 2>&1"


if FUSE_MEMBERS:

    deliver(
        REPORT_FILES.votes,
        REPORT_FILES.disagreement,
        [REPORT_FILES.figure(name) for name in paths.FIGURES],
        paths.cohort_volumes(RESULTS),
        paths.cohort_qc(RESULTS),
        paths.report_index(RESULTS),
        paths.report_page(RESULTS, "{subject}"),
        [paths.report_plot(RESULTS, name) for name in paths.REPORT_PLOTS],
        records=[REPORT_FILES.record],
    )

if PROBABILITY_MEMBERS:

    deliver(REPORT_FILES.probability_entropy)
