"""A program's command line: its settings from flags, env and `.env`, or one line and exit 2.

A misspelt or invalid setting stops the program at start-up with a message
naming the variable, never a traceback and never a default used silently.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TypeVar

from dotenv import dotenv_values
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from shared.settings import ServiceSettings

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def load_settings(settings_class: type[SettingsT], argv: list[str] | None = None) -> SettingsT:
    """Build settings from CLI flags, env and .env; on error print one line and exit 2."""
    args = sys.argv[1:] if argv is None else argv
    unknown = unknown_settings(settings_class)
    if unknown:
        names = ", ".join(unknown)
        print(
            f"error: unknown setting {names} (misspelt? {_prog_name(settings_class)} --help "
            "lists them)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    try:
        return settings_class(_cli_parse_args=args, _cli_prog_name=_prog_name(settings_class))
    except ValidationError as error:
        prefix = settings_class.model_config.get("env_prefix", "")
        problems = "; ".join(
            f"{prefix}{'_'.join(str(p) for p in e['loc']).upper()}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            if e["loc"]
            else e["msg"].removeprefix("Value error, ")
            for e in error.errors()
        )
        print(f"error: invalid setting {problems}", file=sys.stderr)
        raise SystemExit(2) from None


def unknown_settings(settings_class: type[BaseSettings]) -> list[str]:
    """Variables in the environment or `.env` with the class's prefix that name no setting.

    A misspelt setting would otherwise be ignored and its default used silently.
    """
    prefix = str(settings_class.model_config.get("env_prefix") or "").upper()
    if not prefix:
        return []
    known = {prefix + name.upper() for name in settings_class.model_fields}
    env_file = Path(str(settings_class.model_config.get("env_file") or ".env"))
    given = set(os.environ) | set(dotenv_values(env_file) if env_file.is_file() else {})
    return sorted(k for k in given if k.upper().startswith(prefix) and k.upper() not in known)


def _prog_name(settings_class: type[ServiceSettings]) -> str:
    program = settings_class.program
    return f"python -m {program.module if program else settings_class.__module__}"
