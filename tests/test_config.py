"""Configuration, schema, README and rule conventions stay in step."""

import re
import runpy
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def _leaves(properties, prefix=""):
    for name, spec in properties.items():
        if spec.get("type") == "object" and "properties" in spec:
            yield from _leaves(spec["properties"], f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", spec


def _lookup(config, dotted):
    for part in dotted.split("."):
        config = config[part]
    return config


def test_config_yaml_follows_the_schema_and_spells_out_every_default():
    jsonschema.Draft202012Validator(SCHEMA).validate(CONFIG)
    for key, spec in _leaves(SCHEMA["properties"]):
        assert "description" in spec, f"{key} has no description"
        assert _lookup(CONFIG, key) == spec["default"], f"config.yaml's {key} differs from the schema default"


def test_config_readme_table_is_generated_from_the_schema():
    table = runpy.run_path(str(REPO / "workflow" / "scripts" / "config_table.py"))["table"]()
    readme = (REPO / "config" / "README.md").read_text()
    block = readme.split("<!-- config-table:start -->\n", 1)[1].split("<!-- config-table:end -->", 1)[0]
    assert block.strip() == table.strip(), "run: python workflow/scripts/config_table.py --update config/README.md"
    assert "(config/README.md)" in (REPO / "README.md").read_text(), "README.md links to the configuration table"


def test_readme_has_exactly_two_setup_commands():
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line for line in quick.splitlines() if line.strip() and not line.startswith("#")]
    assert [c.split("#")[0].strip() for c in commands] == ["make demo", "make test"]


def test_every_rule_declares_container_threads_resources_log_and_benchmark():
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        # Rules made in a loop (one per member or modality set) are indented and named by a `name:` directive.
        parts = re.split(r"^( *)rule\b", smk.read_text(), flags=re.MULTILINE)[1:]
        for indent, block in zip(parts[::2], parts[1::2]):
            named = re.match(r":\s*name:\s*(.+)", block)
            name = named.group(1) if named else block.split(":", 1)[0].strip()
            for directive in ("container:", "threads:", "resources:", "log:", "benchmark:"):
                assert f"\n{indent}    {directive}" in block, f"rule {name} in {smk.name} lacks {directive}"
            assert "mem_mb" in block and "runtime" in block, f"rule {name} lacks mem_mb/runtime"
