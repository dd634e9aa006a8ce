# Co-registration onto the centre modality and the atlas (ANTsPy); one job per subject.


for modality_set in MODALITY_SETS:

    rule:
        name:
            modality_set.rule("coregister")
        input:
            **step_images("ingest", modalities=modality_set.modalities),
        output:
            **step_images("coregister", modalities=modality_set.modalities),
            record=str(step_files("coregister").record),
            transforms=directory(str(step_files("coregister").transforms)),
        wildcard_constraints:
            subject=modality_set.subject,
        params:
            images=modality_args,
            out=lambda wc, output: Path(output.record).parent,
            atlas=config["coregister"]["atlas"],
            atlas_mask=(
                f"--atlas-mask {config['coregister']['atlas_mask']}"
                if config["coregister"]["atlas_mask"]
                else ""
            ),
            options=config["coregister"],
        log:
            step_log("coregister"),
        benchmark:
            step_benchmark("coregister")
        threads: config["threads"]["coregister"]
        resources:
            mem_mb=6000,
            runtime=30,
        container:
            config["containers"]["coregister"]
        shell:
            "bratsflow --threads {threads} coregister --subject {wildcards.subject}"
            " {params.images} --out {params.out} --atlas {params.atlas} {params.atlas_mask}"
            " --atlas-transform {params.options[atlas_transform]}"
            " --centre {params.options[centre]} --centre-fallback {params.options[centre_fallback]}"
            " --interpolation {params.options[interpolation]} --fill-value {params.options[fill_value]}"
            " --inputs {params.options[inputs]} --min-overlap {params.options[min_overlap]}"
            " --min-coverage {params.options[min_coverage]} --max-offset-mm {params.options[max_offset_mm]}"
            " --max-offset-deg {params.options[max_offset_deg]}"
            " --min-nmi {params.options[min_nmi]} --min-nmi-atlas {params.options[min_nmi_atlas]}"
            " --seed {params.options[seed]} > {log} 2>&1"


rule to_native:
    input:
        image=str(paths.step_dir(RESULTS, "{subject}", "{step}") / "{name}.nii.gz"),
        record=str(step_files("coregister").record),
    output:
        str(paths.native_file(RESULTS, "{subject}", "{step}", "{name}", "{space}")),
    wildcard_constraints:
        step="[a-z_]+",
        name="[A-Za-z0-9_-]+",
        space="t1|t1c|t2|flair",
    params:
        coregister_dir=lambda wc, input: Path(input.record).parent,
        labels=lambda wc: "--labels" if paths.is_label_map(wc.step, wc.name) else "",
    log:
        str(paths.log_file(RESULTS, "{subject}", "to_native-{step}-{name}-{space}")),
    benchmark:
        str(paths.benchmark_file(RESULTS, "{subject}", "to_native-{step}-{name}-{space}"))
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    container:
        config["containers"]["coregister"]
    shell:
        "bratsflow to-native {input.image} --coregister-dir {params.coregister_dir}"
        " --modality {wildcards.space} {params.labels} --out {output} > {log} 2>&1"


deliver(subject_images("coregister"), native_targets, records=[step_files("coregister").record])
