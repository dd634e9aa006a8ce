"""Each default is spelled once in the toolkit (a step's Params dataclass or DEFAULT_* constant, which the command
line reads) and once in the workflow (config/config.yaml and its schema): they must agree, or a step run by hand
computes something other than the pipeline."""

from dataclasses import asdict, fields
from pathlib import Path

import pytest
import yaml

from bratsflow.cli import build_parser
from bratsflow.coregister import CoregisterParams
from bratsflow.deface import DEFAULT_BUFFER_MM
from bratsflow.dicom_study import DEFAULT_TIE
from bratsflow.fusion import DEFAULT_METHOD, DEFAULT_MODE, SimpleParams
from bratsflow.ingest import DEFAULT_ORIENTATION, DEFAULT_SPACING_RANGE_MM
from bratsflow.labels import DEFAULT_CONVENTION
from bratsflow.qc import QCParams
from bratsflow.segment import Member
from bratsflow.skullstrip import SkullstripParams
from bratsflow.synth_params import SynthParams

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def _block(*path):
    """The config block at `path`, and the schema's default of each of its keys."""
    config, schema = CONFIG, SCHEMA
    for key in path:
        config, schema = config[key], schema["properties"][key]
    return config, {key: spec["default"] for key, spec in schema["properties"].items() if "default" in spec}


def _as_param(value):
    # YAML writes a sequence as a list, and no value as "" (the rules then leave the option out).
    if isinstance(value, list):
        return tuple(value)
    return None if value == "" else value


def _parsed(*argv) -> dict:
    return vars(build_parser().parse_args(list(argv)))


@pytest.mark.parametrize("params, path, not_fields", [
    (CoregisterParams, ("coregister",), set()),
    (SkullstripParams, ("skullstrip",), {"hdbet"}),
    (SkullstripParams, ("skullstrip", "hdbet"), set()),
    (SimpleParams, ("fuse", "simple"), set()),
    # root is the rule's output folder; subjects and seed are synth's options outside SynthParams (checked below).
    (SynthParams, ("demo",), {"root", "subjects", "seed"}),
    (QCParams, ("report",), set()),
], ids=["coregister", "skullstrip", "skullstrip.hdbet", "fuse.simple", "demo", "report"])
def test_params_defaults_are_the_config_and_schema_defaults(params, path, not_fields):
    config, schema = _block(*path)
    defaults = {f.name: f.default for f in fields(params)}
    assert set(config) - set(defaults) == not_fields
    for name in set(config) & set(defaults):
        where = ".".join((*path, name))
        assert _as_param(config[name]) == defaults[name], f"config.yaml's {where} differs from {params.__name__}"
        assert _as_param(schema[name]) == defaults[name], f"the schema's {where} differs from {params.__name__}"


@pytest.mark.parametrize("default, path", [
    (DEFAULT_ORIENTATION, ("ingest", "orientation")),
    (DEFAULT_SPACING_RANGE_MM, ("ingest", "spacing_range_mm")),
    (DEFAULT_METHOD, ("fuse", "method")),
    (DEFAULT_MODE, ("fuse", "mode")),
    (DEFAULT_BUFFER_MM, ("deface", "buffer_mm")),
    (DEFAULT_CONVENTION, ("convention",)),
    (DEFAULT_TIE, ("dicom", "on_tie")),
    # The demo rule hands the pipeline's convention to synth.
    (SynthParams().convention, ("convention",)),
], ids=["ingest.orientation", "ingest.spacing_range_mm", "fuse.method", "fuse.mode", "deface.buffer_mm",
        "convention", "dicom.on_tie", "synth.convention"])
def test_constant_defaults_are_the_config_and_schema_defaults(default, path):
    config, schema = _block(*path[:-1])
    assert _as_param(config[path[-1]]) == default
    assert _as_param(schema[path[-1]]) == default


def test_skullstrip_defaults_are_the_coregistration_settings_its_rule_passes():
    config, schema = _block("coregister")
    defaults = SkullstripParams()
    for name, key in (("atlas", "atlas"), ("atlas_mask", "atlas_mask"), ("background", "fill_value")):
        assert getattr(defaults, name) == _as_param(config[key]) == _as_param(schema[key]), name


def test_member_defaults_are_the_schema_defaults():
    items = SCHEMA["properties"]["segment"]["properties"]["members"]["items"]["properties"]
    defaults = {f.name: f.default for f in fields(Member)}
    for name, spec in items.items():
        if "default" in spec:
            assert _as_param(spec["default"]) == defaults[name], f"segment.members[].{name}"


@pytest.mark.parametrize("params, argv", [
    (CoregisterParams, ["coregister", "--out", "o"]),
    (SkullstripParams, ["skullstrip", "--out", "o"]),
    (QCParams, ["report", "--segmentation", "s", "--members", "m", "--brain-mask", "b", "--out", "o"]),
], ids=["coregister", "skullstrip", "report"])
def test_command_line_defaults_are_the_params_defaults(params, argv):
    parsed = _parsed(*argv)
    shared = [f for f in fields(params) if f.name in parsed]
    assert len(shared) == len(fields(params)) or len(shared) > 10
    for field in shared:
        assert parsed[field.name] == field.default, f"--{field.name.replace('_', '-')}"


def test_command_line_defaults_of_the_other_steps():
    fuse = _parsed("fuse", "a.nii.gz", "-o", "fused.nii.gz")
    assert {name: fuse[f"simple_{name}"] for name in asdict(SimpleParams())} == asdict(SimpleParams())
    assert (fuse["method"], fuse["mode"], fuse["convention"]) == (DEFAULT_METHOD, DEFAULT_MODE, DEFAULT_CONVENTION)
    ingest = _parsed("ingest", "--subject", "s", "--out", "o")
    assert ingest["orientation"] == DEFAULT_ORIENTATION
    assert (ingest["min_spacing"], ingest["max_spacing"]) == DEFAULT_SPACING_RANGE_MM
    assert _parsed("deface", "head.nii.gz", "--mask", "m.nii.gz", "--out", "o.nii.gz")["buffer_mm"] == DEFAULT_BUFFER_MM
    for command in (["segment", "--member", "m", "--out", "o"], ["metrics", "p.nii.gz", "g.nii.gz"],
                    ["radiomics", "--out", "o"]):
        assert _parsed(*command)["convention"] == DEFAULT_CONVENTION, command[0]


def test_synth_defaults_are_the_demo_cohort():
    synth = _parsed("synth", "--out", "o")
    assert (synth["resolution"], synth["convention"]) == (SynthParams().resolution_mm, SynthParams().convention)
    config, schema = _block("demo")
    for option, key in (("subjects", "subjects"), ("seed", "seed")):
        assert synth[option] == config[key] == schema[key], key
