"""The service catalogue: each fact it holds is the one the programs use."""

from __future__ import annotations

import importlib.util

import pytest

from shared.catalogue import PROGRAMS, SERVICES, Program, Service


@pytest.mark.parametrize("program", PROGRAMS.values(), ids=lambda p: p.module)
def test_settings_take_prefix_and_port_from_the_catalogue(program: Program) -> None:
    settings_class = program.settings_class()
    assert settings_class.model_config["env_prefix"] == program.env_prefix
    if isinstance(program, Service):
        assert settings_class.model_fields["port"].default == program.port


@pytest.mark.parametrize("program", PROGRAMS.values(), ids=lambda p: p.module)
def test_every_program_runs_with_python_dash_m(program: Program) -> None:
    spec = importlib.util.find_spec(program.module)
    assert spec is not None
    if spec.submodule_search_locations is not None:  # a package needs a __main__
        assert importlib.util.find_spec(f"{program.module}.__main__") is not None


def test_services_have_distinct_ports_and_prefixes() -> None:
    ports = [service.port for service in SERVICES.values()]
    assert len(set(ports)) == len(ports)
    prefixes = [program.env_prefix for program in PROGRAMS.values()]
    assert len(set(prefixes)) == len(prefixes)
