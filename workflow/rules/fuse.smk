# Fusion: the ensemble members' label maps of one subject, fused into one segmentation (README, Fusion).
from bratsflow.fusion import WEIGHTED_METHODS

FUSE = config["fuse"]
FUSE_MEMBERS = [member["name"] for member in config["segment"]["members"]]
if len(set(FUSE_MEMBERS)) != len(FUSE_MEMBERS):
    raise WorkflowError(f"bratsflow: segment.members has repeated names: {FUSE_MEMBERS}")


rule fuse:
    input:
        members=lambda wc: member_files(wc.subject),
        probabilities=lambda wc: member_files(wc.subject, probabilities=True) if FUSE["method"] == "mean" else [],
    output:
        segmentation=str(step_files("fuse").segmentation),
        record=str(step_files("fuse").record),
    params:
        # Only the methods that use member weights get them (majority and staple refuse unequal weights).
        members=lambda wc: fuse_member_args(wc.subject, weighted=FUSE["method"] in WEIGHTED_METHODS),
        method=FUSE["method"],
        mode=FUSE["mode"],
        convention=config["convention"],
        probabilities=lambda wc, input: (
            "--probabilities " + " ".join(input.probabilities) if input.probabilities else ""
        ),
        simple=(
            f"--simple-alpha {FUSE['simple']['alpha']}"
            f" --simple-max-iterations {FUSE['simple']['max_iterations']}"
            f" --simple-min-members {FUSE['simple']['min_members']}"
            f" --simple-weight-power {FUSE['simple']['weight_power']}"
        ),
    log:
        step_log("fuse"),
    benchmark:
        step_benchmark("fuse")
    threads: config["threads"]["fuse"]
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=20,
    container:
        config["containers"]["fuse"]
    shell:
        "bratsflow --threads {threads} fuse {input.members} -o {output.segmentation}"
        " --record {output.record} --subject {wildcards.subject} {params.members}"
        " --method {params.method} --mode {params.mode} --convention {params.convention}"
        " {params.probabilities} {params.simple} > {log} 2>&1"


# A configuration without members runs the pipeline up to skull stripping.
if FUSE_MEMBERS:

    deliver(step_files("fuse").segmentation, records=[step_files("fuse").record])
