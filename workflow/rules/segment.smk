# Segmentation: one rule per ensemble member (segment_<name>), so members run side by side, each on its own GPU
# when it asks for one. Inputs: the skull-stripped atlas-space images.
import json
import shlex

from bratsflow.segment import Member

SEGMENT_FILES = step_files("segment")


def member_outputs(member):
    name = member["name"]
    outputs = {"labels": str(SEGMENT_FILES.member(name)), "record": str(SEGMENT_FILES.member_record(name))}
    if Member.from_config(member).writes_probabilities:
        outputs["probabilities"] = str(SEGMENT_FILES.member_probabilities(name))
    return outputs


for member in SEGMENT_MEMBERS:

    rule:
        name:
            f"segment_{member['name']}"
        input:
            unpack(subject_images("skullstrip")),
        output:
            **member_outputs(member),
        params:
            images=modality_args,
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
            " {params.images} --member {params.name} --spec {params.spec} --convention {params.convention}"
            " --out {params.out} > {log} 2>&1"


deliver(
    records=[
        lambda subject: [paths.segment_record(RESULTS, subject, name) for name in subject_members(subject)]
    ]
)
