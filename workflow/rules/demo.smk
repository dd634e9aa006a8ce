# The synthetic demo cohort: one job per subject, so subjects are generated in parallel.


rule synth_demo_subject:
    output:
        images=[str(paths.bids_image_path(DEMO["root"], "{demo_subject}", m)) for m in MODALITIES],
        truth=str(paths.TruthFiles(DEMO["root"], "{demo_subject}").record),
        # The report scores the segmentations against it (the default sheet's truth column).
        truth_labels=str(paths.TruthFiles(DEMO["root"], "{demo_subject}").labels),
    wildcard_constraints:
        demo_subject=r"sub-\d{3}",
    params:
        root=lambda wc, output: Path(output.truth).parents[3],
        subjects=DEMO["subjects"],
        seed=DEMO["seed"],
        resolution=DEMO["resolution_mm"],
        convention=config["convention"],
    log:
        f"{DEMO['root']}/logs/{{demo_subject}}.log",
    benchmark:
        f"{DEMO['root']}/benchmarks/{{demo_subject}}.tsv"
    threads: config["threads"]["synth"]
    resources:
        mem_mb=lambda wc, attempt: 5000 * attempt,
        runtime=15,
    container:
        config["containers"]["ingest"]
    shell:
        "bratsflow --threads {threads} synth --out {params.root} --subjects {params.subjects}"
        " --seed {params.seed} --resolution {params.resolution} --convention {params.convention}"
        " --only {wildcards.demo_subject} > {log} 2>&1"
