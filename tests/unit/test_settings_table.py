"""The README's settings tables are generated from the settings classes and must match."""

from __future__ import annotations

from misc.settings_table import README, markdown, readme_section
from shared.catalogue import PROGRAMS


def test_readme_settings_tables_match_the_code() -> None:
    assert readme_section(README.read_text()) == markdown(), (
        "README settings are stale: run `python -m misc.settings_table --write`"
    )


def test_every_setting_of_every_service_is_in_the_tables() -> None:
    text = markdown()
    for settings_class in (program.settings_class() for program in PROGRAMS.values()):
        prefix = settings_class.model_config["env_prefix"]
        for name in settings_class.model_fields:
            assert f"`{prefix}{name.upper()}`" in text
