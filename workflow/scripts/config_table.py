"""Print the configuration table (config/README.md) from workflow/schemas/config.schema.yaml (one row per option),
or with `--update config/README.md` rewrite the table between that file's markers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


def _rows(properties: dict, prefix: str = ""):
    for name, spec in properties.items():
        key = f"{prefix}{name}"
        if spec.get("type") == "object" and "properties" in spec:
            yield from _rows(spec["properties"], f"{key}.")
            continue
        default = json.dumps(spec.get("default")) if "default" in spec else ""
        allowed = " \\| ".join(map(str, spec["enum"])) if "enum" in spec else spec.get("type", "")
        description = " ".join(spec.get("description", "").split()).replace("|", "\\|")
        yield f"| `{key}` | {allowed} | `{default}` | {description} |"


def table(schema_path: Path = SCHEMA) -> str:
    schema = yaml.safe_load(schema_path.read_text())
    lines = ["| key | type | default | meaning |", "|---|---|---|---|", *_rows(schema["properties"])]
    return "\n".join(lines) + "\n"


def update(readme: Path) -> None:
    """Replace the table between the file's config-table markers."""
    head, rest = readme.read_text().split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}{table()}{END}{tail}")


START, END = "<!-- config-table:start -->\n", "<!-- config-table:end -->"

if __name__ == "__main__":
    if sys.argv[1:2] == ["--update"]:
        update(Path(sys.argv[2]))
    else:
        sys.stdout.write(table())
