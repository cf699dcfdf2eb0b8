"""The service catalogue: each fact it holds is the one the programs use."""

from __future__ import annotations

import importlib.util

import pytest

from shared.catalogue import PROGRAMS, SERVICES, Program, Service


@pytest.mark.parametrize("program", PROGRAMS.values(), ids=lambda p: p.module)
def test_settings_take_prefix_and_port_from_the_catalogue(program: Program) -> None:
    settings_class = program.settings_class()
    assert settings_class.program is program
    assert settings_class.model_config["env_prefix"] == program.env_prefix
    if isinstance(program, Service):
        assert settings_class.model_fields["port"].default == program.port
        if program.internal_port is not None:
            assert settings_class.model_fields["internal_port"].default == program.internal_port


@pytest.mark.parametrize("program", PROGRAMS.values(), ids=lambda p: p.module)
def test_every_program_runs_with_python_dash_m(program: Program) -> None:
    spec = importlib.util.find_spec(program.module)
    assert spec is not None
    if spec.submodule_search_locations is not None:  # a package needs a __main__
        assert importlib.util.find_spec(f"{program.module}.__main__") is not None


def test_services_have_distinct_ports_and_prefixes() -> None:
    ports = [
        port
        for service in SERVICES.values()
        for port in (service.port, service.internal_port)
        if port is not None
    ]
    assert len(set(ports)) == len(ports)
    prefixes = [program.env_prefix for program in PROGRAMS.values()]
    assert len(set(prefixes)) == len(prefixes)


@pytest.mark.parametrize("service", [s for s in SERVICES.values() if s.role == "websocket"])
def test_a_websocket_server_refuses_one_port_for_both(service: Service) -> None:
    settings_class = service.settings_class()
    with pytest.raises(ValueError, match="internal_port and port are both 9000"):
        settings_class(port=9000, internal_port=9000)


def test_a_program_s_prefix_does_not_leak_into_the_shared_classes() -> None:
    from shared.settings import ServiceSettings

    assert (
        "env_prefix" not in ServiceSettings.model_config
        or not ServiceSettings.model_config["env_prefix"]
    )
    assert ServiceSettings.program is None
