# DICOM out: the fused segmentation, mapped to native T1c space, as a DICOM Segmentation object on the T1c series
# it came from, and its volumes as a DICOM SR (README, DICOM out); for the subjects whose T1c is DICOM, when
# export.enabled.
EXPORT = config["export"]


EXPORT_SUBJECTS = (
    {subject for subject in SUBJECTS if from_dicom(subject, "t1c")} if EXPORT["enabled"] and FUSE_MEMBERS else set()
)


rule export:
    input:
        segmentation=str(paths.native_file(RESULTS, "{subject}", "fuse", "segmentation", "t1c")),
        ingest=str(step_files("ingest").record),
        fuse=str(step_files("fuse").record),
    output:
        segmentation=str(step_files("export").dicom_segmentation),
        measurements=str(step_files("export").dicom_measurements),
        record=str(step_files("export").record),
    params:
        out=lambda wc, output: Path(output.record).parent,
        convention=config["convention"],
        series_number=EXPORT["series_number"],
        series_description=EXPORT["series_description"],
    log:
        step_log("export"),
    benchmark:
        step_benchmark("export")
    threads: config["threads"]["export"]
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=10,
    container:
        config["containers"]["export"]
    shell:
        "bratsflow export --subject {wildcards.subject} --segmentation {input.segmentation}"
        " --ingest-record {input.ingest} --fuse-record {input.fuse} --convention {params.convention}"
        " --series-number {params.series_number} --series-description {params.series_description:q}"
        " --out {params.out} > {log} 2>&1"


if EXPORT_SUBJECTS:

    deliver(
        lambda subject: (
            [
                str(step_files("export", subject).dicom_segmentation),
                str(step_files("export", subject).dicom_measurements),
            ]
            if subject in EXPORT_SUBJECTS
            else []
        ),
        records=[lambda subject: [str(step_files("export", subject).record)] if subject in EXPORT_SUBJECTS else []],
    )
