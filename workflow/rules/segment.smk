# Segmentation: one rule per ensemble member (segment_<name>), so members run side by side, each on its own GPU
# when it asks for one. Inputs: the skull-stripped atlas-space images.
import json
import shlex

SEGMENT_MEMBERS = config["segment"]["members"]


def member_outputs(member):
    outputs = {
        "labels": str(paths.segment_member(RESULTS, "{subject}", member["name"])),
        "record": str(paths.segment_record(RESULTS, "{subject}", member["name"])),
    }
    # Container members write only a label map; nnU-Net members also their probabilities (for `mean` fusion).
    if member["kind"] == "nnunetv2" and member["probabilities"]:
        outputs["probabilities"] = str(paths.segment_probabilities(RESULTS, "{subject}", member["name"]))
    return outputs


for member in SEGMENT_MEMBERS:

    rule:
        name:
            f"segment_{member['name']}"
        input:
            images=step_outputs("skullstrip"),
        output:
            **member_outputs(member),
        params:
            out=lambda wc, output: Path(output.labels).parent,
            name=member["name"],
            spec=shlex.quote(json.dumps(member)),
            convention=config["convention"],
        log:
            step_log(f"segment-{member['name']}"),
        benchmark:
            step_benchmark(f"segment-{member['name']}")
        threads: config["threads"]["segment"]
        resources:
            mem_mb=16000,
            runtime=60,
            gpu=1 if member["device"] == "cuda" else 0,
        container:
            config["containers"]["segment"]
        shell:
            "bratsflow --threads {threads} segment --subject {wildcards.subject}"
            " --t1 {input.images[0]} --t1c {input.images[1]} --t2 {input.images[2]} --flair {input.images[3]}"
            " --member {params.name} --spec {params.spec} --convention {params.convention}"
            " --out {params.out} > {log} 2>&1"
