"""Print the settings of every service as markdown tables: `python -m misc.settings_table`.

docs/configuration.md holds this output between `<!-- settings:start -->` and
`<!-- settings:end -->`; a test fails when the two disagree, so regenerate
with `python -m misc.settings_table --write` after changing a setting.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from shared.catalogue import PROGRAMS

CONFIGURATION = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def default(field: FieldInfo) -> str:
    """The default as an operator would type it; computed ones say so."""
    if field.default_factory is list:
        return "(empty)"
    if field.default_factory is not None:
        return "(computed)"
    value = field.default
    if value is None or value is PydanticUndefined:
        return "(unset)"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        value = str(value).lower()
    return f"`{value}`"


def table(module: str, settings_class: type[BaseSettings]) -> str:
    prefix = settings_class.model_config.get("env_prefix", "")
    lines = [
        f"## `{module}` (`{prefix}*`)",
        "",
        "| flag | env var | default | description |",
        "|---|---|---|---|",
    ]
    for name, field in settings_class.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        flag = "--" + name.replace("_", "-")
        lines.append(f"| `{flag}` | `{prefix}{name.upper()}` | {default(field)} | {description} |")
    return "\n".join(lines)


def markdown() -> str:
    tables = (table(module, program.settings_class()) for module, program in PROGRAMS.items())
    return "\n\n".join(tables) + "\n"


def generated_section(text: str) -> str:
    """What a document holds between the markers (without them)."""
    start, end = text.index(START) + len(START), text.index(END)
    return text[start:end].strip("\n") + "\n"


def write(path: Path = CONFIGURATION) -> None:
    text = path.read_text()
    start, end = text.index(START) + len(START), text.index(END)
    path.write_text(text[:start] + "\n" + markdown() + text[end:])


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        sys.stdout.write(markdown())
