# Skull stripping of the atlas-space images (one brain mask, applied to all four), and optional defacing.
SKULLSTRIP = config["skullstrip"]
HDBET = SKULLSTRIP["hdbet"]


for modality_set in MODALITY_SETS:

    rule:
        name:
            modality_set.rule("skullstrip")
        input:
            **step_images("coregister", modalities=modality_set.modalities),
        output:
            **step_images("skullstrip", modalities=modality_set.modalities),
            mask=str(step_files("skullstrip").brain_mask),
            record=str(step_files("skullstrip").record),
        wildcard_constraints:
            subject=modality_set.subject,
        params:
            images=modality_args,
            out=lambda wc, output: Path(output.record).parent,
            # The atlas backend carries the atlas' brain mask: the atlas the images were registered to.
            atlas=config["coregister"]["atlas"],
            atlas_mask=(
                f"--atlas-mask {config['coregister']['atlas_mask']}"
                if config["coregister"]["atlas_mask"]
                else ""
            ),
            # Out-of-view voxels of the atlas-space images: how skull stripping tells the field of view.
            background=config["coregister"]["fill_value"],
            options=SKULLSTRIP,
            tta="--tta" if HDBET["tta"] else "--no-tta",
        log:
            step_log("skullstrip"),
        benchmark:
            step_benchmark("skullstrip")
        threads: config["threads"]["skullstrip"]
        resources:
            mem_mb=8000,
            runtime=30,
            # HD-BET on a GPU: the scheduler (local or SLURM) must hand out one.
            gpu=1 if SKULLSTRIP["backend"] == "hdbet" and HDBET["device"] == "cuda" else 0,
        container:
            config["containers"]["skullstrip"]
        shell:
            "bratsflow --threads {threads} skullstrip --subject {wildcards.subject}"
            " {params.images} --out {params.out} --backend {params.options[backend]} --modality {params.options[modality]}"
            " --fallback {params.options[fallback]}"
            " --volume-range-ml {params.options[volume_range_ml][0]} {params.options[volume_range_ml][1]}"
            " --fill-value {params.options[fill_value]} --seed {params.options[seed]}"
            " --input {params.options[input]} --background {params.background}"
            " --atlas {params.atlas} {params.atlas_mask}"
            " --model {params.options[hdbet][model]} --device {params.options[hdbet][device]} {params.tta}"
            " > {log} 2>&1"


rule deface:
    input:
        image=str(step_files("ingest").image("{modality}")),
        mask=str(paths.native_file(RESULTS, "{subject}", "skullstrip", "brain_mask", "{modality}")),
    output:
        str(step_files("deface").image("{modality}")),
    wildcard_constraints:
        modality="t1|t1c|t2|flair",
    params:
        buffer_mm=config["deface"]["buffer_mm"],
    log:
        str(paths.log_file(RESULTS, "{subject}", "deface-{modality}")),
    benchmark:
        str(paths.benchmark_file(RESULTS, "{subject}", "deface-{modality}"))
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    container:
        config["containers"]["skullstrip"]
    shell:
        "bratsflow deface {input.image} --mask {input.mask} --out {output}"
        " --buffer-mm {params.buffer_mm} --subject {wildcards.subject} > {log} 2>&1"


deliver(
    subject_images("skullstrip"),
    *([subject_images("deface")] if config["deface"]["enabled"] else []),
    records=[step_files("skullstrip").record],
)
