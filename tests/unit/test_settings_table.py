"""The settings tables in docs/configuration.md are generated from the code and must match."""

from __future__ import annotations

from misc.settings_table import CONFIGURATION, generated_section, markdown
from shared.catalogue import PROGRAMS


def test_configuration_settings_tables_match_the_code() -> None:
    assert generated_section(CONFIGURATION.read_text()) == markdown(), (
        "docs/configuration.md is stale: run `python -m misc.settings_table --write`"
    )


def test_every_setting_of_every_service_is_in_the_tables() -> None:
    text = markdown()
    for settings_class in (program.settings_class() for program in PROGRAMS.values()):
        prefix = settings_class.model_config["env_prefix"]
        for name in settings_class.model_fields:
            assert f"`{prefix}{name.upper()}`" in text
